"""A record that keeps failing goes to `<topic>.dlq` with its error, and consumption goes on."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings.kafka import KafkaMessage

from shared.bus import ConsumerRunner, Producer, RetryPolicy, dlq_topic, ensure_topics
from shared.consumers import EventContext, EventHandlers
from shared.events import Envelope
from shared.events.merchants import MerchantSuspended
from shared.outbox import Outbox

TOPIC = "merchants.events"


async def consume(infra, topic: str, expected: int, timeout: float = 20.0) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest",
                                group_id=None)
    await consumer.start()
    found: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(batch)
    finally:
        await consumer.stop()
    return found


async def test_poison_and_failing_records_are_dead_lettered_and_the_rest_applied(infra, mongo, unique, topic_prefix):
    topic = topic_prefix + TOPIC
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=1)
    db = mongo[f"c_{unique}"]
    outbox = Outbox(mongo, db, source="/tests/consumer")
    await outbox.ensure_indexes()
    attempts: dict[str, int] = {}
    handlers = EventHandlers()

    @handlers.on
    async def suspend(event: MerchantSuspended, ctx: EventContext) -> None:
        attempts[event.merchant_id] = attempts.get(event.merchant_id, 0) + 1
        if event.reason == "explode":
            raise RuntimeError("cannot suspend: ledger unavailable")
        await ctx.tx.db.suspensions.insert_one({"_id": event.merchant_id}, session=ctx.tx.session)

    producer = Producer(infra.kafka_bootstrap)
    await producer.start()
    try:
        good1 = Envelope.wrap(MerchantSuspended(merchant_id="mch_a", reason="fraud"), source="/t").to_kafka()
        bad = Envelope.wrap(MerchantSuspended(merchant_id="mch_b", reason="explode"), source="/t").to_kafka()
        garbage = KafkaMessage(headers={"ce_type": MerchantSuspended.event_type.encode(), "ce_id": b"x"},
                               key=b"mch_c", value=b"{not json")
        good2 = Envelope.wrap(MerchantSuspended(merchant_id="mch_d", reason="fraud"), source="/t").to_kafka()
        await producer.publish(topic, [good1, bad, garbage, good2])

        runner = ConsumerRunner(bootstrap=infra.kafka_bootstrap, group_id=f"g_{unique}", topics=[topic],
                                producer=producer, retry=RetryPolicy(max_attempts=3, backoff_seconds=0.01),
                                handle=lambda r: handlers.dispatch(outbox, r))
        await runner.start()
        try:
            dead = await consume(infra, dlq_topic(topic), 2)
        finally:
            await runner.stop()
        assert runner.dead_lettered == 2
        assert sorted(d["_id"] for d in await db.suspensions.find().to_list(None)) == ["mch_a", "mch_d"]
        assert attempts["mch_b"] == 3, "retried up to the limit"

        by_key = {r.key: dict(r.headers) for r in dead}
        assert by_key[b"mch_b"][b"dlq_error".decode()].startswith(b"RuntimeError: cannot suspend")
        assert by_key[b"mch_b"]["dlq_attempts"] == b"3"
        assert by_key[b"mch_b"]["ce_type"] == MerchantSuspended.event_type.encode(), "original headers kept"
        assert by_key[b"mch_c"]["dlq_error_type"] == b"UndecodableEvent"
        assert by_key[b"mch_c"]["dlq_attempts"] == b"1", "a record no retry can fix is not retried"
        assert by_key[b"mch_b"]["dlq_topic"] == topic.encode()
    finally:
        await producer.stop()


async def test_offsets_are_committed_only_after_handling(infra, mongo, unique, topic_prefix):
    """A consumer that stops and restarts continues after what it finished, and loses nothing."""
    topic = topic_prefix + TOPIC
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=2)
    db = mongo[f"c_{unique}"]
    outbox = Outbox(mongo, db, source="/tests/consumer")
    await outbox.ensure_indexes()
    handlers = EventHandlers()

    @handlers.on
    async def suspend(event: MerchantSuspended, ctx: EventContext) -> None:
        await ctx.tx.db.suspensions.update_one({"_id": event.merchant_id}, {"$inc": {"n": 1}}, upsert=True,
                                               session=ctx.tx.session)

    producer = Producer(infra.kafka_bootstrap)
    await producer.start()
    try:
        def batch(start):
            return [Envelope.wrap(MerchantSuspended(merchant_id=f"mch_{i}", reason="r"), source="/t").to_kafka()
                    for i in range(start, start + 40)]
        await producer.publish(topic, batch(0))

        def runner():
            return ConsumerRunner(bootstrap=infra.kafka_bootstrap, group_id=f"g_{unique}", topics=[topic],
                                  producer=producer, handle=lambda r: handlers.dispatch(outbox, r))
        first = runner()
        await first.start()
        for _ in range(200):
            if await db.suspensions.count_documents({}) == 40:
                break
            await asyncio.sleep(0.1)
        await first.stop()
        await producer.publish(topic, batch(40))
        second = runner()
        await second.start()
        for _ in range(200):
            if await db.suspensions.count_documents({}) == 80:
                break
            await asyncio.sleep(0.1)
        await second.stop()
        docs = await db.suspensions.find().to_list(None)
        assert len(docs) == 80 and all(d["n"] == 1 for d in docs)
    finally:
        await producer.stop()
