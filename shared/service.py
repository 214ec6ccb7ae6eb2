"""The one shape of every service: settings, Mongo, outbox relay, consumers and health, wired once.

A service's `app.py` describes itself with a `ServiceDefinition` and calls `create_service_app`;
everything a reader needs to know about start-up and shutdown lives here, the same for all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pymongo.asynchronous.database import AsyncDatabase

from shared.auth import TokenVerifier
from shared.bus import ConsumerRunner, Producer, RetryPolicy, ensure_topics
from shared.clock import utcnow
from shared.consumers import PROCESSED, EventHandlers
from shared.errors import install_error_handlers
from shared.logging import RequestIdMiddleware, configure_logging
from shared.mongo import IndexSetup, connect, readiness
from shared.outbox import Outbox, OutboxRelay
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)

Job = Callable[["Runtime"], Awaitable[None]]


@dataclass(frozen=True)
class PeriodicJob:
    """A job a service runs every `every_seconds` (hold expiry, reconciliation); it must be safe
    to run on several replicas at once."""

    name: str
    every_seconds: float
    run: Job


@dataclass
class ServiceDefinition:
    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    produces: Sequence[str] = ()
    handlers: EventHandlers | None = None
    ensure_indexes: IndexSetup | None = None
    jobs: Sequence[PeriodicJob] = ()
    # Clients the service made for outside systems (VNPay, webhooks), closed after the jobs stop.
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = ()
    version: str = "1.0.0"
    openapi_tags: list[dict] = field(default_factory=list)


class Runtime:
    """Everything a running service holds: its settings, database, outbox, producer and consumers."""

    def __init__(self, definition: ServiceDefinition, settings: ServiceSettings):
        self.definition = definition
        self.settings = settings
        self.client = connect(settings.mongodb_uri)
        self.db: AsyncDatabase = self.client[settings.mongodb_database]
        self.outbox = Outbox(self.client, self.db, source=f"/services/{definition.name}")
        self.producer = Producer(settings.kafka_bootstrap_servers)
        self.relay = OutboxRelay(self.outbox, self.producer, poll_seconds=settings.outbox_poll_seconds,
                                 topic_prefix=settings.kafka_topic_prefix)
        self.consumer: ConsumerRunner | None = None
        self._jobs: list[asyncio.Task] = []

    async def start(self) -> None:
        await self.outbox.ensure_indexes()
        await self.db[PROCESSED].create_index("applied_at")
        if self.definition.ensure_indexes:
            await self.definition.ensure_indexes(self.db)
        handlers = self.definition.handlers
        prefix = self.settings.kafka_topic_prefix
        consumed = [prefix + t for t in handlers.topics] if handlers else []
        topics = [prefix + t for t in self.definition.produces] + consumed
        await wait_for_dependency("kafka", lambda: ensure_topics(self.settings.kafka_bootstrap_servers, topics,
                                                    self.settings.kafka_topic_partitions))
        await wait_for_dependency("kafka", self.producer.start)
        if self.settings.outbox_replay_on_start_seconds:
            since = utcnow() - timedelta(seconds=self.settings.outbox_replay_on_start_seconds)
            replayed = await self.outbox.requeue_since(since)
            log.info("outbox_replayed", events=replayed)
        await self.relay.start()
        if handlers and consumed:
            self.consumer = ConsumerRunner(
                bootstrap=self.settings.kafka_bootstrap_servers, group_id=self.definition.name,
                topics=consumed, producer=self.producer,
                handle=lambda record: handlers.dispatch(self.outbox, record),
                retry=RetryPolicy(self.settings.consumer_max_attempts, self.settings.consumer_backoff_seconds))
            await wait_for_dependency("kafka", self.consumer.start)
        for job in self.definition.jobs:
            self._jobs.append(asyncio.create_task(self._every(job), name=f"job:{job.name}"))

    async def stop(self) -> None:
        for task in self._jobs:
            task.cancel()
        for task in self._jobs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.consumer:
            await self.consumer.stop()
        await self.relay.stop()
        await self.producer.stop()
        await self.client.close()
        for close in self.definition.on_shutdown:
            await close()

    async def _every(self, job: PeriodicJob) -> None:
        while True:
            await asyncio.sleep(job.every_seconds)
            try:
                await job.run(self)
            except Exception as exc:  # noqa: BLE001 - a failed run is retried at the next tick
                log.warning("job_failed", job=job.name, error=repr(exc))

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        checks["mongodb"] = await readiness(self.client)
        checks["kafka"] = "ok" if await self.producer.ping() else "error: unreachable"
        return checks


async def wait_for_dependency(what: str, start: Callable[[], Awaitable[object]], seconds: float = 30.0) -> None:
    """Wait for a dependency that is still starting, up to a bound, then fail loudly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            await start()
            return
        except Exception as exc:  # noqa: BLE001
            if loop.time() > deadline:
                raise
            log.warning("dependency_not_ready", dependency=what, error=repr(exc))
            await asyncio.sleep(1)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: MongoDB and Kafka connections work")
    async def readyz(runtime: RuntimeDep):
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                            status_code=200 if ok else 503)

    return router


def create_service_app(definition: ServiceDefinition, settings: ServiceSettings) -> FastAPI:
    configure_logging(definition.name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime = Runtime(definition, settings)
        app.state.runtime = runtime
        await runtime.start()
        log.info("service_started", service=definition.name)
        try:
            yield
        finally:
            await runtime.stop()
            log.info("service_stopped", service=definition.name)

    app = FastAPI(title=definition.title, description=definition.description, version=definition.version,
                  lifespan=lifespan, openapi_tags=definition.openapi_tags or None)
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings.auth_public_key_pem.get_secret_value())
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router())
    for router in definition.routers:
        app.include_router(router)
    return app
