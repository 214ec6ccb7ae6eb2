"""The broker may stop at any moment: the outbox holds what could not be published, and a broker
that restarted empty is refilled from the outbox, without a single event lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiokafka import AIOKafkaConsumer

from deploy.infra import kafka_process
from deploy.processes import free_port
from shared.bus import Producer, ensure_topics
from shared.clock import utcnow
from shared.events import Envelope
from shared.events.merchants import MerchantSuspended
from shared.outbox import Outbox, OutboxRelay, Transaction

TOPIC = "merchants.events"


async def suspend(outbox: Outbox, merchant_ids: list[str]) -> None:
    for merchant_id in merchant_ids:
        async def change(tx: Transaction, merchant_id=merchant_id):
            await tx.db.merchants.insert_one({"_id": merchant_id, "status": "suspended"}, session=tx.session)
            tx.emit(MerchantSuspended(merchant_id=merchant_id, reason="test"))
        await outbox.transaction(change)


async def subjects_on(bootstrap: str, expected: int, timeout: float = 20.0) -> set[str]:
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    seen: set[str] = set()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(seen) < expected and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                seen.update(Envelope.from_kafka(r.headers, r.key, r.value).subject for r in batch)
    finally:
        await consumer.stop()
    return seen


async def test_events_survive_a_broker_that_stops_and_restarts_empty(mongo, unique, tmp_path):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = kafka_process(port, tmp_path).start()
    broker.wait_for_port(port)
    outbox = Outbox(mongo, mongo[f"p_{unique}"], source="/tests")
    await outbox.ensure_indexes()
    producer = Producer(bootstrap)
    relay = OutboxRelay(outbox, producer, poll_seconds=0.05)
    try:
        await ensure_topics(bootstrap, [TOPIC])
        await producer.start()
        await relay.start()
        before = [f"mch_before_{i}" for i in range(10)]
        await suspend(outbox, before)
        assert await subjects_on(bootstrap, 10) == set(before)

        started_at = utcnow() - timedelta(minutes=1)
        broker.kill()  # as a crash: memory-only, so its log is gone
        during = [f"mch_during_{i}" for i in range(10)]
        await suspend(outbox, during)  # writes keep being accepted while the broker is away
        await asyncio.sleep(0.5)
        assert await outbox.records.count_documents({"sent_at": None}) == 10

        broker = kafka_process(port, tmp_path).start()
        broker.wait_for_port(port)
        await ensure_topics(bootstrap, [TOPIC])
        await outbox.requeue_since(started_at)  # what a service does on start against a fresh broker
        assert await subjects_on(bootstrap, 20, timeout=40) == set(before) | set(during)
    finally:
        await relay.stop()
        await producer.stop()
        broker.stop()
