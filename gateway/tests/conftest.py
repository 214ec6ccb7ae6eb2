"""Fixtures for the gateway's tests: keys, small upstream apps, and a gateway on a free port.

Servers run in-process (uvicorn in a thread, its own event loop), so a test can start, stop and
restart an upstream on a chosen port and watch how the gateway behaves.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from deploy.processes import free_port
from shared.auth import TokenIssuer, new_signing_key


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(*new_signing_key())

    def issuer(self) -> TokenIssuer:
        return TokenIssuer(self.private_pem)


@pytest.fixture(scope="session")
def keys() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture(scope="session")
def other_keys() -> KeyPair:
    return KeyPair.generate()


class ServerThread:
    """One ASGI app served by uvicorn on 127.0.0.1:`port` in a background thread."""

    def __init__(self, app, port: int | None = None):
        self.app = app
        self.port = port or free_port()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", access_log=False, timeout_graceful_shutdown=2,
                                # The gateway decides itself whether to trust X-Forwarded-* (its
                                # TRUST_FORWARDED_HEADERS); uvicorn must not rewrite them first.
                                proxy_headers=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn:{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} failed to start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start in {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.server and self.thread and self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(10)


@dataclass
class EchoUpstream:
    """A stand-in service: answers what it received, and counts calls per path."""

    name: str
    hits: Counter = field(default_factory=Counter)

    def app(self) -> FastAPI:
        app = FastAPI(title=f"fake {self.name}")

        @app.get("/readyz")
        async def readyz():
            return {"status": "ready"}

        @app.get("/v1/{resource}/slow/{seconds}")
        async def slow(resource: str, seconds: float):
            self.hits["slow"] += 1
            await asyncio.sleep(seconds)
            return {"slept": seconds}

        @app.get("/v1/{resource}/stream/{chunks}")
        async def stream(resource: str, chunks: int):
            async def body():
                for i in range(chunks):
                    yield f"chunk-{i};".encode()
                    await asyncio.sleep(0.2)
            return StreamingResponse(body(), media_type="text/plain")

        @app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        async def echo(path: str, request: Request):
            self.hits[f"/v1/{path}"] += 1
            body = await request.body()
            return JSONResponse(
                {"service": self.name, "method": request.method, "path": request.url.path,
                 "raw_path": request.scope["raw_path"].decode(), "query": request.scope["query_string"].decode(),
                 "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
                 "body_length": len(body), "body_head": body[:64].decode(errors="replace")},
                headers={"x-upstream-name": self.name, "set-cookie": "session=upstream; Path=/"})

        return app


def header_values(echo: dict, name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k == name]


@pytest.fixture
def echo_upstream():
    echo = EchoUpstream("echo")
    server = ServerThread(echo.app()).start()
    yield echo, server
    server.stop()


@pytest.fixture
def start_gateway(infra, keys, unique):
    """Starts a gateway with these settings over the session's database; stopped after the test."""
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    started: list[ServerThread] = []

    def start(**overrides) -> ServerThread:
        values = dict(app_env="test", mongodb_uri=infra.mongodb_uri, mongodb_database=f"qt_gateway_{unique}",
                      auth_private_key_pem=keys.private_pem, password_hash_memory_kib=1024,
                      password_hash_time_cost=1, password_hash_parallelism=1, demo_users_seed=True,
                      upstream_timeout_seconds=5.0, rate_limit_per_second=1000.0, rate_limit_burst=1000,
                      signin_attempts_per_minute=600.0, signin_burst=100)
        values.update(overrides)
        server = ServerThread(create_app(GatewaySettings(**values))).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def all_upstreams(url: str) -> dict[str, str]:
    return {f"{name}_url": url for name in ("merchants", "payments", "tourism", "insights")}


Factory = Callable[..., ServerThread]
