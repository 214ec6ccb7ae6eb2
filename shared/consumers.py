"""Idempotent event handlers: plain typed functions, applied once per event id.

    handlers = EventHandlers()

    @handlers.on
    async def open_account(event: MerchantApproved, ctx: EventContext) -> None:
        await ctx.tx.db.accounts.insert_one({...}, session=ctx.tx.session)
        ctx.tx.emit(MerchantAccountActivated(...))

The event id is recorded in `processed_events` in the same transaction as the handler's changes
and its emitted events, so a redelivered event changes nothing the second time.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiokafka import ConsumerRecord
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.events import Envelope, EventData, event_type_of
from shared.outbox import Outbox, Transaction

log = structlog.get_logger(__name__)

PROCESSED = "processed_events"


@dataclass(frozen=True)
class EventContext:
    envelope: Envelope
    tx: Transaction


Handler = Callable[[EventData, EventContext], Awaitable[None]]


class EventHandlers:
    """The event types a service consumes, one handler function each."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def on(self, fn: Handler) -> Handler:
        params = list(inspect.signature(fn).parameters)
        model = typing.get_type_hints(fn).get(params[0]) if params else None
        if not (isinstance(model, type) and issubclass(model, EventData) and model.event_type):
            raise TypeError(f"{fn.__name__}: first parameter must be annotated with an event model")
        if model.event_type in self._handlers:
            raise TypeError(f"two handlers for {model.event_type}")
        self._handlers[model.event_type] = fn
        return fn

    @property
    def event_types(self) -> set[str]:
        return set(self._handlers)

    @property
    def topics(self) -> list[str]:
        from shared.events import topic_of
        return sorted({topic_of(t) for t in self._handlers})

    async def dispatch(self, outbox: Outbox, record: ConsumerRecord) -> bool:
        """Apply one record. Returns False when it was skipped (not ours, or already applied)."""
        event_type = event_type_of(list(record.headers or []))
        if event_type not in self._handlers:
            return False  # other consumers' events share the topic
        envelope = Envelope.from_kafka(list(record.headers or []), record.key, record.value)
        processed = outbox.db[PROCESSED]
        if await processed.find_one({"_id": envelope.id}, projection={"_id": 1}):
            log.info("event_already_applied", event_id=envelope.id, type=envelope.type)
            return False
        handler = self._handlers[event_type]

        async def apply(tx: Transaction) -> None:
            await processed.insert_one({"_id": envelope.id, "type": envelope.type, "subject": envelope.subject,
                                        "applied_at": utcnow()}, session=tx.session)
            await handler(envelope.data, EventContext(envelope=envelope, tx=tx))

        try:
            await outbox.transaction(apply)
        except DuplicateKeyError:
            if await processed.find_one({"_id": envelope.id}, projection={"_id": 1}):
                log.info("event_already_applied", event_id=envelope.id, type=envelope.type)
                return False  # a concurrent delivery applied it first
            raise
        log.info("event_applied", event_id=envelope.id, type=envelope.type, subject=envelope.subject)
        return True
