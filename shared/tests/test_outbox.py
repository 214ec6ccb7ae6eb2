"""The outbox and idempotent consumers give an exactly-once effect over the real broker and database."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from shared.bus import ConsumerRunner, Producer, RetryPolicy, ensure_topics
from shared.consumers import EventContext, EventHandlers
from shared.events import Envelope
from shared.events.merchants import MerchantApproved
from shared.outbox import Outbox, OutboxRelay, Transaction

TOPIC = "merchants.events"


def approved(merchant_id: str) -> MerchantApproved:
    return MerchantApproved(merchant_id=merchant_id, display_name="Cà phê Đồng Hới", commune_code=19189,
                            sector="food_beverage", bank_bin="970436", bank_account_no="0011001234567",
                            bank_account_name="NGUYEN VAN A")


async def approve_merchants(outbox: Outbox, ids: list[str]) -> None:
    for merchant_id in ids:
        async def change(tx: Transaction, merchant_id=merchant_id):
            await tx.db.merchants.insert_one({"_id": merchant_id, "status": "approved"}, session=tx.session)
            tx.emit(approved(merchant_id))
        await outbox.transaction(change)


def counting_handlers() -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on
    async def open_account(event: MerchantApproved, ctx: EventContext) -> None:
        await ctx.tx.db.accounts.update_one({"_id": event.merchant_id}, {"$inc": {"opened": 1}}, upsert=True,
                                            session=ctx.tx.session)

    return handlers


async def read_all(infra, topic: str, expected: int, timeout: float = 15.0) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < expected and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def wait_until(predicate, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


class RelayCrashed(Exception):
    pass


async def test_a_failed_state_change_writes_neither_state_nor_events(infra, mongo, unique):
    outbox = Outbox(mongo, mongo[f"o_{unique}"], source="/tests")
    await outbox.ensure_indexes()

    async def change(tx: Transaction):
        await tx.db.merchants.insert_one({"_id": "mch_1"}, session=tx.session)
        tx.emit(approved("mch_1"))
        raise ValueError("refused after writing")

    with pytest.raises(ValueError):
        await outbox.transaction(change)
    assert await outbox.db.merchants.count_documents({}) == 0
    assert await outbox.records.count_documents({}) == 0


async def test_relay_killed_between_publish_and_mark_resends_and_consumer_applies_once(
        infra, mongo, unique, topic_prefix):
    producer_db, consumer_db = mongo[f"p_{unique}"], mongo[f"c_{unique}"]
    outbox = Outbox(mongo, producer_db, source="/tests/producer")
    await outbox.ensure_indexes()
    ids = [f"mch_{unique}_{i}" for i in range(30)]
    await approve_merchants(outbox, ids)
    assert await outbox.records.count_documents({"sent_at": None}) == 30

    await ensure_topics(infra.kafka_bootstrap, [topic_prefix + TOPIC])
    producer = Producer(infra.kafka_bootstrap)
    await producer.start()
    try:
        # The first relay publishes, then dies before it can mark the batch sent.
        crashing = OutboxRelay(outbox, producer, topic_prefix=topic_prefix)

        async def crash(_ids):
            raise RelayCrashed

        crashing.outbox.mark_sent = crash
        with pytest.raises(RelayCrashed):
            await crashing.relay_once()
        del crashing.outbox.mark_sent
        assert await outbox.records.count_documents({"sent_at": None}) == 30

        # Its replacement finds the same records unsent and publishes them again.
        restarted = OutboxRelay(outbox, producer, topic_prefix=topic_prefix)
        assert await restarted.relay_once() == 30
        assert await outbox.records.count_documents({"sent_at": None}) == 0
        assert await restarted.relay_once() == 0

        records = await read_all(infra, topic_prefix + TOPIC, 60)
        assert len(records) == 60, "every event is on the broker twice"
        # Per-key order and the envelope survive the trip.
        first = Envelope.from_kafka(records[0].headers, records[0].key, records[0].value)
        assert first.type == MerchantApproved.event_type and first.key == first.data.merchant_id

        consumer_outbox = Outbox(mongo, consumer_db, source="/tests/consumer")
        await consumer_outbox.ensure_indexes()
        handlers = counting_handlers()
        runner = ConsumerRunner(bootstrap=infra.kafka_bootstrap, group_id=f"g_{unique}",
                                topics=[topic_prefix + TOPIC], producer=producer,
                                handle=lambda r: handlers.dispatch(consumer_outbox, r))
        await runner.start()
        try:
            async def all_applied():
                return await consumer_db.processed_events.count_documents({}) == 30
            assert await wait_until(all_applied)
            await asyncio.sleep(1.0)  # give the duplicates time to arrive, and be skipped
        finally:
            await runner.stop()
        accounts = await consumer_db.accounts.find().to_list(None)
        assert sorted(a["_id"] for a in accounts) == sorted(ids)
        assert all(a["opened"] == 1 for a in accounts), "each event's effect applied exactly once"
        assert runner.dead_lettered == 0
    finally:
        await producer.stop()


async def test_concurrent_redeliveries_of_one_event_apply_once(infra, mongo, unique, topic_prefix):
    producer_db, consumer_db = mongo[f"p_{unique}"], mongo[f"c_{unique}"]
    outbox = Outbox(mongo, producer_db, source="/tests/producer")
    await outbox.ensure_indexes()
    await approve_merchants(outbox, [f"mch_{unique}"])
    await ensure_topics(infra.kafka_bootstrap, [topic_prefix + TOPIC])
    producer = Producer(infra.kafka_bootstrap)
    await producer.start()
    try:
        await OutboxRelay(outbox, producer, topic_prefix=topic_prefix).relay_once()
        [record] = await read_all(infra, topic_prefix + TOPIC, 1)
    finally:
        await producer.stop()

    consumer_outbox = Outbox(mongo, consumer_db, source="/tests/consumer")
    await consumer_outbox.ensure_indexes()
    handlers = counting_handlers()
    results = await asyncio.gather(*(handlers.dispatch(consumer_outbox, record) for _ in range(16)),
                                   return_exceptions=True)
    assert [r for r in results if isinstance(r, Exception)] == []
    assert results.count(True) == 1
    account = await consumer_db.accounts.find_one({"_id": f"mch_{unique}"})
    assert account["opened"] == 1


async def test_events_of_one_aggregate_arrive_in_the_order_they_were_written(infra, mongo, unique, topic_prefix):
    db = mongo[f"p_{unique}"]
    outbox = Outbox(mongo, db, source="/tests/producer")
    await outbox.ensure_indexes()

    async def many(tx: Transaction):
        for i in range(50):
            tx.emit(MerchantApproved(**{**approved("mch_same").model_dump(), "display_name": f"v{i}"}))
    await outbox.transaction(many)
    await ensure_topics(infra.kafka_bootstrap, [topic_prefix + TOPIC])
    producer = Producer(infra.kafka_bootstrap)
    await producer.start()
    try:
        await OutboxRelay(outbox, producer, topic_prefix=topic_prefix).relay_once()
    finally:
        await producer.stop()
    records = await read_all(infra, topic_prefix + TOPIC, 50)
    names = [Envelope.from_kafka(r.headers, r.key, r.value).data.display_name for r in records]
    assert names == [f"v{i}" for i in range(50)]
    assert len({r.partition for r in records}) == 1


async def test_running_relay_publishes_promptly_and_replicas_share_one_lease(infra, mongo, unique, topic_prefix):
    db = mongo[f"p_{unique}"]
    outbox = Outbox(mongo, db, source="/tests/producer")
    await outbox.ensure_indexes()
    await ensure_topics(infra.kafka_bootstrap, [topic_prefix + TOPIC])
    producer = Producer(infra.kafka_bootstrap)
    await producer.start()
    relays = [OutboxRelay(outbox, producer, topic_prefix=topic_prefix, poll_seconds=0.05) for _ in range(2)]
    for relay in relays:
        await relay.start()
    try:
        await approve_merchants(outbox, [f"mch_{unique}_{i}" for i in range(20)])

        async def drained():
            return await outbox.records.count_documents({"sent_at": None}) == 0
        assert await wait_until(drained, 10)
        records = await read_all(infra, topic_prefix + TOPIC, 20, timeout=3)
        assert len(records) == 20, "two replicas, one lease: nothing published twice in normal running"
        assert sorted(r.published for r in relays) == [0, 20]
    finally:
        for relay in relays:
            await relay.stop()
        await producer.stop()


async def test_requeue_refills_a_broker_that_lost_its_log(infra, mongo, unique, topic_prefix):
    db = mongo[f"p_{unique}"]
    outbox = Outbox(mongo, db, source="/tests/producer")
    await outbox.ensure_indexes()
    await approve_merchants(outbox, [f"mch_{unique}_{i}" for i in range(5)])
    producer = Producer(infra.kafka_bootstrap)
    await producer.start()
    try:
        from shared.clock import utcnow
        from datetime import timedelta
        relay = OutboxRelay(outbox, producer, topic_prefix=topic_prefix)
        assert await relay.relay_once() == 5
        assert await outbox.requeue_since(utcnow() - timedelta(minutes=5)) == 5
        assert await relay.relay_once() == 5
    finally:
        await producer.stop()
