"""The transactional outbox: a state change and its events commit together; a relay publishes them.

    async def approve(tx: Transaction):
        await tx.db.merchants.update_one({...}, {...}, session=tx.session)
        tx.emit(MerchantApproved(...))
    await outbox.transaction(approve)

`transaction` runs the function inside one MongoDB transaction and inserts the emitted events
into the service's `outbox` collection in that same transaction (retrying on transient write
conflicts, which re-runs the function and so re-creates its events). The relay reads unsent
records in id order, publishes a batch together, waits for the broker's acknowledgements, and
only then marks them sent: a crash between the two re-sends the batch, never loses it.
Sent records stay for `retention` so that a broker that lost its log can be refilled
(`requeue_since`); consumers are idempotent, so re-sending is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from shared.bus import Producer
from shared.clock import utcnow
from shared.events import Envelope, EventData

log = structlog.get_logger(__name__)
R = TypeVar("R")

OUTBOX = "outbox"
LEASES = "outbox_leases"


class Transaction:
    """What a state change sees: the database, the session to pass to every write, and `emit`."""

    def __init__(self, db: AsyncDatabase, session: AsyncClientSession, source: str):
        self.db = db
        self.session = session
        self._source = source
        self.events: list[Envelope] = []

    def emit(self, data: EventData) -> Envelope:
        envelope = Envelope.wrap(data, source=self._source)
        self.events.append(envelope)
        return envelope


class Outbox:
    """A service's outbox: transactional writes plus the relay that publishes them."""

    def __init__(self, client: AsyncMongoClient, db: AsyncDatabase, *, source: str,
                 retention: timedelta = timedelta(days=7)):
        self.client = client
        self.db = db
        self.source = source
        self.retention = retention
        self.records = db[OUTBOX]
        self._wake = asyncio.Event()

    async def ensure_indexes(self) -> None:
        await self.records.create_index([("sent_at", ASCENDING), ("_id", ASCENDING)], name="unsent_in_order")
        await self.records.create_index("sent_at", name="sent_ttl",
                                        expireAfterSeconds=int(self.retention.total_seconds()),
                                        partialFilterExpression={"sent_at": {"$type": "date"}})

    async def transaction(self, fn: Callable[[Transaction], Awaitable[R]]) -> R:
        """Run `fn` and write its emitted events atomically with its changes."""
        async with self.client.start_session() as session:
            async def attempt(s: AsyncClientSession) -> R:
                tx = Transaction(self.db, s, self.source)
                result = await fn(tx)
                if tx.events:
                    await self.records.insert_many(
                        [{**e.to_document(), "sent_at": None, "created_at": utcnow()} for e in tx.events],
                        ordered=True, session=s)
                return result

            result = await session.with_transaction(
                attempt, read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority"))
        self._wake.set()
        return result

    def wake(self) -> None:
        self._wake.set()

    async def wait_for_work(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def pending(self, limit: int) -> list[dict[str, Any]]:
        cursor = self.records.find({"sent_at": None}).sort("_id", ASCENDING).limit(limit)
        return await cursor.to_list(length=limit)

    async def mark_sent(self, ids: list[str]) -> None:
        await self.records.update_many({"_id": {"$in": ids}, "sent_at": None}, {"$set": {"sent_at": utcnow()}})

    async def requeue_since(self, since) -> int:
        """Mark records sent after `since` as unsent again, to refill a broker that lost them."""
        result = await self.records.update_many({"sent_at": {"$gte": since}}, {"$set": {"sent_at": None}})
        self._wake.set()
        return result.modified_count


class OutboxRelay:
    """Publishes a service's outbox to Kafka. One relay per service holds a lease at a time, so
    replicas do not interleave batches (order per aggregate key is kept)."""

    def __init__(self, outbox: Outbox, producer: Producer, *, poll_seconds: float = 0.2, batch_size: int = 500,
                 lease_seconds: float = 10.0, name: str = "relay", topic_prefix: str = ""):
        self.outbox = outbox
        self.topic_prefix = topic_prefix
        self.producer = producer
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.lease_id = name
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self.published = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping.set()
        self.outbox.wake()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._task, 15)
        with contextlib.suppress(PyMongoError):
            await self.outbox.db[LEASES].delete_one({"_id": self.lease_id, "owner": self.owner})

    async def _acquire_lease(self) -> bool:
        now = utcnow()
        try:
            doc = await self.outbox.db[LEASES].find_one_and_update(
                {"_id": self.lease_id, "$or": [{"owner": self.owner}, {"expires_at": {"$lt": now}}]},
                {"$set": {"owner": self.owner, "expires_at": now + timedelta(seconds=self.lease_seconds)}},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return False  # someone else holds a live lease
        return doc is not None and doc["owner"] == self.owner

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if not await self._acquire_lease():
                    await self.outbox.wait_for_work(self.lease_seconds / 2)
                    continue
                sent = await self.relay_once()
                if sent < self.batch_size:
                    await self.outbox.wait_for_work(self.poll_seconds)
            except Exception as exc:  # noqa: BLE001 - a broker or database outage: wait and retry
                log.warning("outbox_relay_failed", error=repr(exc))
                await self.outbox.wait_for_work(1.0)

    async def relay_once(self) -> int:
        """Publish one batch of unsent records in order; mark them sent once the broker acked all."""
        batch = await self.outbox.pending(self.batch_size)
        if not batch:
            return 0
        await self.producer.publish_many([(self.topic_prefix + doc["topic"], Envelope.message_from_document(doc)) for doc in batch])
        await self.outbox.mark_sent([doc["_id"] for doc in batch])
        self.published += len(batch)
        return len(batch)
