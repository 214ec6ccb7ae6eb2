"""Wires the gateway: one HTTP client pool to the upstream services, health that reports each of them."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.settings import GatewaySettings
from shared.errors import install_error_handlers
from shared.logging import RequestIdMiddleware, configure_logging


async def _upstream_ready(client: httpx.AsyncClient, base_url: str) -> str:
    try:
        response = await client.get(f"{base_url}/readyz", timeout=2.0)
    except httpx.HTTPError as exc:
        return f"error: {type(exc).__name__}"
    return "ok" if response.status_code == 200 else f"error: HTTP {response.status_code}"


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging("gateway", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(limits=limits, timeout=settings.upstream_timeout_seconds) as client:
            app.state.http = client
            yield

    app = FastAPI(title="Quảng Trị Digital Economy Platform", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request):
        client: httpx.AsyncClient = request.app.state.http
        names = list(settings.upstreams())
        results = await asyncio.gather(*(_upstream_ready(client, url) for url in settings.upstreams().values()))
        checks = dict(zip(names, results))
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                            status_code=200 if ok else 503)

    return app
