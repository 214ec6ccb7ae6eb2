"""Wires the gateway: the upstream pool and proxy, identity, limits, browser protections, one OpenAPI.

Request path, outermost first: request id → security headers → CORS → body size limit → rate limit
→ routes (`/v1/auth/…` here, every other `/v1/…` proxied by the routing table). `/` is left free
for the web pages.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from shared.auth import TokenVerifier
from shared.errors import NotFound, install_error_handlers
from shared.logging import RequestIdMiddleware, configure_logging
from shared.mongo import connect, readiness
from shared.service import wait_for_dependency

from gateway.access import check_access, identify
from gateway.auth_routes import router as auth_router
from gateway.identity import build_identity
from gateway.limits import BodySizeLimitMiddleware, RateLimitMiddleware, TokenBuckets
from gateway.openapi import MergedOpenAPI
from gateway.proxy import Proxy, build_upstreams
from gateway.routing import RoutingTable
from gateway.security import SecurityHeadersMiddleware, install_cors
from gateway.settings import GatewaySettings

log = structlog.get_logger("gateway")

TITLE = "Quảng Trị Digital Economy Platform"
DESCRIPTION = ("Một địa chỉ cho mọi dịch vụ / one origin for every service: merchants, "
               "payments (Stripe-compatible), tourism, insights. Đăng nhập tại / sign in at "
               "`POST /v1/auth/token`; merchants' servers use secret keys `sk_test_…` on the payments "
               "routes.")
PROXY_METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
# Below uvicorn's 5 s keep-alive: a pooled connection is dropped by us before the service drops it,
# so a write never goes out on a connection the service is closing.
KEEPALIVE_EXPIRY_SECONDS = 4.0


async def _upstream_ready(client: httpx.AsyncClient, base_url: str) -> str:
    try:
        response = await client.get(f"{base_url}/readyz", timeout=2.0)
    except httpx.HTTPError as exc:
        return f"error: {type(exc).__name__}"
    return "ok" if response.status_code == 200 else f"error: HTTP {response.status_code}"


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging("gateway", settings.log_level)
    if not settings.auth_private_key_pem.get_secret_value():
        raise RuntimeError("AUTH_PRIVATE_KEY_PEM is required: the gateway signs people's tokens with it")
    table = RoutingTable()
    verifier = TokenVerifier(settings.auth_public_key_pem)
    upstreams = build_upstreams(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        limits = httpx.Limits(max_connections=settings.upstream_max_connections,
                              max_keepalive_connections=settings.upstream_max_keepalive,
                              keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS)
        # One pool per upstream: a service that hangs fills its own pool, never the others'.
        for upstream in upstreams.values():
            upstream.transport = httpx.AsyncHTTPTransport(limits=limits, retries=0)
        # Health checks and OpenAPI fetches have a small pool of their own.
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=20, max_keepalive_connections=8,
                                                                 keepalive_expiry=KEEPALIVE_EXPIRY_SECONDS),
                                             retries=0)
        mongo = connect(settings.mongodb_uri)
        client = httpx.AsyncClient(transport=transport, timeout=settings.upstream_timeout_seconds)
        async with AsyncExitStack() as pools:
            for upstream in upstreams.values():
                pools.push_async_callback(upstream.transport.aclose)
            await pools.enter_async_context(client)
            app.state.http = client
            app.state.proxy = Proxy(transport, upstreams, retries=settings.upstream_retries,
                                    backoff_seconds=settings.upstream_retry_backoff_seconds,
                                    trust_forwarded=settings.trust_forwarded_headers)
            app.state.mongo = mongo
            identity = build_identity(mongo[settings.mongodb_database], settings)
            app.state.identity = identity
            app.state.openapi = MergedOpenAPI(client, settings.upstreams(), table, lambda: own_openapi(app),
                                              cache_seconds=settings.openapi_cache_seconds,
                                              fetch_timeout=settings.openapi_fetch_timeout_seconds)
            try:
                await wait_for_dependency("mongodb", identity.store.ensure_indexes)
                if settings.demo_users_seed:
                    created = await identity.seed_demo_users()
                    log.info("demo_users_seeded", created=created)
                log.info("gateway_started", upstreams=settings.upstreams())
                yield
            finally:
                await mongo.close()

    app = FastAPI(title=TITLE, description=DESCRIPTION, version="1.0.0", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.routing = table
    app.state.token_verifier = verifier
    app.state.signin_buckets = TokenBuckets(settings.signin_attempts_per_minute / 60.0, settings.signin_burst,
                                            settings.rate_limit_max_clients)
    install_error_handlers(app)
    app.add_middleware(RateLimitMiddleware,
                       buckets=TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst,
                                            settings.rate_limit_max_clients),
                       verifier=verifier, trust_forwarded=settings.trust_forwarded_headers)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_cors(app, settings.cors_origins())
    app.add_middleware(SecurityHeadersMiddleware, trust_forwarded=settings.trust_forwarded_headers)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: every upstream service and the user database")
    async def readyz(request: Request):
        client: httpx.AsyncClient = request.app.state.http
        names = list(settings.upstreams())
        results = await asyncio.gather(*(_upstream_ready(client, u) for u in settings.upstreams().values()),
                                       readiness(request.app.state.mongo))
        checks = dict(zip([*names, "mongodb"], results))
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                            status_code=200 if ok else 503)

    app.include_router(auth_router)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request):
        return JSONResponse(await request.app.state.openapi.document())

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{TITLE} — API",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   init_oauth={"usePkceWithAuthorizationCodeGrant": False})

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def docs_oauth2_redirect():
        return get_swagger_ui_oauth2_redirect_html()

    async def proxied(request: Request):
        route = table.match(request.scope["path"])
        if route is None:
            raise NotFound(f"Không có tài nguyên này / unrecognized request URL "
                           f"({request.method}: {request.scope['path']})", code="resource_missing")
        caller = request.scope.get("state", {}).get("caller") or identify(
            request.scope, verifier, settings.trust_forwarded_headers)
        check_access(route, request.method, caller)
        return await request.app.state.proxy.forward(request, route)

    # A plain Starlette route: the proxy needs no parameter parsing, and FastAPI's would cost time
    # on every call. Registered after /v1/auth so that the gateway's own routes win.
    app.add_route("/v1/{path:path}", proxied, methods=PROXY_METHODS, include_in_schema=False)
    return app


def own_openapi(app: FastAPI) -> dict:
    """The gateway's own part of the document (auth and health), built once."""
    if not getattr(app.state, "own_openapi", None):
        app.state.own_openapi = get_openapi(title=app.title, version=app.version, description=app.description,
                                            routes=app.routes)
    return app.state.own_openapi
