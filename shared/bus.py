"""The Kafka side: topics, a producer that sends batches, and a consumer-group runner.

The runner keeps per-partition order (one partition's records are handled one after another,
partitions side by side), commits an offset only after its record was handled or dead-lettered,
retries a failing handler with backoff, and sends a record that keeps failing to `<topic>.dlq`
with the error, so that consumption goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from cloudevents.core.bindings.kafka import KafkaMessage

from shared.clock import utcnow
from shared.events import UndecodableEvent

log = structlog.get_logger(__name__)

DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 3) -> None:
    """Create missing topics (with their dead-letter topics). Idempotent, safe on many replicas."""
    wanted = set()
    for topic in topics:
        wanted.add(topic)
        if not topic.endswith(DLQ_SUFFIX):
            wanted.add(dlq_topic(topic))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = sorted(wanted - existing)
        if missing:
            try:
                await admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            except TopicAlreadyExistsError:
                pass  # another replica won the race
    finally:
        await admin.close()


class Producer:
    """An aiokafka producer that publishes a batch together and awaits it once.

    Idempotent producers are off: the local broker does not support them, and the platform's
    exactly-once effect comes from the outbox plus idempotent consumers, on any broker.
    """

    def __init__(self, bootstrap: str):
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                          linger_ms=2, request_timeout_ms=15000, max_batch_size=1 << 20)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, messages: list[KafkaMessage]) -> None:
        await self.publish_many([(topic, m) for m in messages])

    async def publish_many(self, items: list[tuple[str, KafkaMessage]]) -> None:
        """Send every record, then wait for all acknowledgements; raises if any was not acked."""
        futures = []
        for topic, msg in items:
            key = msg.key.encode() if isinstance(msg.key, str) else msg.key
            futures.append(await self._producer.send(topic, value=msg.value, key=key,
                                                     headers=list(msg.headers.items())))
        if futures:
            await asyncio.gather(*futures)

    async def ping(self, timeout: float = 2.0) -> bool:
        try:
            return bool(await asyncio.wait_for(self._producer.client.force_metadata_update(), timeout))
        except (asyncio.TimeoutError, KafkaError, OSError):
            return False


RecordHandler = Callable[[ConsumerRecord], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff_seconds * (2 ** (attempt - 1)), self.max_backoff_seconds)


class ConsumerRunner:
    """Runs one consumer group over some topics, calling `handle` for every record."""

    def __init__(self, *, bootstrap: str, group_id: str, topics: list[str], handle: RecordHandler,
                 producer: Producer, retry: RetryPolicy = RetryPolicy(), max_records: int = 200,
                 session_timeout_ms: int = 6000):
        self.group_id = group_id
        self.topics = topics
        self._handle = handle
        self._producer = producer
        self._retry = retry
        self._max_records = max_records
        self._consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
            # 6 s is Apache Kafka's smallest allowed session; Tansu makes a joining member wait about
            # half of it, so a short session also makes start-up and failover quick.
            auto_offset_reset="earliest", session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=min(1000, session_timeout_ms // 3),
            max_poll_interval_ms=300000, metadata_max_age_ms=5000,
        )
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.dead_lettered = 0

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.group_id}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stopping.set()
        if self._task:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout)
        await self._consumer.stop()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._max_records)
            except KafkaError as exc:
                log.warning("consumer_poll_failed", group=self.group_id, error=repr(exc))
                await asyncio.sleep(1)
                continue
            if not batches:
                continue
            done = await asyncio.gather(*(self._run_partition(records) for records in batches.values()))
            offsets = {tp: last + 1 for tp, last in zip(batches, done) if last is not None}
            if offsets:
                try:
                    await self._consumer.commit(offsets)
                except (CommitFailedError, KafkaError) as exc:
                    # A rebalance took the partitions: their records come again, and the handlers'
                    # idempotency makes that harmless.
                    log.warning("consumer_commit_failed", group=self.group_id, error=repr(exc))

    async def _run_partition(self, records: list[ConsumerRecord]) -> int | None:
        last = None
        for record in records:
            if self._stopping.is_set() and last is not None:
                break  # commit what is done; the rest is redelivered
            await self._run_record(record)
            last = record.offset
        return last

    async def _run_record(self, record: ConsumerRecord) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._handle(record)
                return
            except UndecodableEvent as exc:
                await self._dead_letter(record, exc, attempt)  # no retry can fix it
                return
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                if attempt >= self._retry.max_attempts:
                    await self._dead_letter(record, exc, attempt)
                    return
                log.warning("handler_failed", group=self.group_id, topic=record.topic, offset=record.offset,
                            attempt=attempt, error=repr(exc))
                await asyncio.sleep(self._retry.delay(attempt))

    async def _dead_letter(self, record: ConsumerRecord, exc: Exception, attempts: int) -> None:
        headers = dict(record.headers or [])
        headers.update({
            "dlq_error": f"{type(exc).__name__}: {exc}"[:4000].encode(),
            "dlq_error_type": type(exc).__name__.encode(),
            "dlq_topic": record.topic.encode(),
            "dlq_partition": str(record.partition).encode(),
            "dlq_offset": str(record.offset).encode(),
            "dlq_group": self.group_id.encode(),
            "dlq_attempts": str(attempts).encode(),
            "dlq_failed_at": utcnow().isoformat().encode(),
        })
        message = KafkaMessage(headers=headers, key=record.key, value=record.value or b"")
        # Retry the DLQ write itself until it lands: committing past a record that reached neither
        # its handler nor the DLQ would lose it.
        while True:
            try:
                await self._producer.publish(dlq_topic(record.topic), [message])
                break
            except KafkaError as err:
                log.error("dlq_publish_failed", error=repr(err))
                await asyncio.sleep(1)
        self.dead_lettered += 1
        log.error("dead_lettered", group=self.group_id, topic=record.topic, partition=record.partition,
                  offset=record.offset, attempts=attempts, error=repr(exc))
