"""Test helpers: a webhook receiver on a free port, Kafka reading, polling."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from urllib.parse import quote_plus

import uvicorn
from aiokafka import AIOKafkaConsumer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.processes import free_port
from shared.events import Envelope


class WebhookReceiver:
    """A merchant's webhook server: records every delivery; answers 500 to the first `fail_first` ones."""

    def __init__(self, fail_first: int = 0):
        self.fail_first = fail_first
        self.received: list[tuple[bytes, str]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"

        async def hook(request: Request) -> Response:
            self.received.append((await request.body(), request.headers.get("stripe-signature", "")))
            return Response(status_code=500 if len(self.received) <= self.fail_first else 200)

        app = Starlette(routes=[Route("/hooks", hook, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     lifespan="off"))
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> WebhookReceiver:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.should_exit = True
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def wait_for(check, timeout: float = 20.0, every: float = 0.2):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


async def kafka_events(bootstrap: str, topic: str, wanted: set[str], timeout: float = 20.0) -> dict[str, Envelope]:
    """Reads `topic` from the start until every wanted CloudEvent id has been seen."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: dict[str, Envelope] = {}
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not wanted <= set(found) and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                for record in batch:
                    headers = dict(record.headers or [])
                    if headers.get("ce_id", b"").decode() in wanted:
                        envelope = Envelope.from_kafka(list(record.headers), record.key, record.value)
                        found[envelope.id] = envelope
    finally:
        await consumer.stop()
    return found


# -- an independent VNPay signer (not the service's code), written from VNPay's documentation ------------------

def vnpay_sign(params: dict[str, str], secret: str) -> str:
    text = "&".join(f"{quote_plus(k)}={quote_plus(str(v))}" for k, v in sorted(params.items())
                    if k.startswith("vnp_") and k not in ("vnp_SecureHash", "vnp_SecureHashType") and v != "")
    return hmac.new(secret.encode(), text.encode(), hashlib.sha512).hexdigest()


def signed(params: dict[str, str], secret: str) -> dict[str, str]:
    return {**params, "vnp_SecureHash": vnpay_sign(params, secret)}
