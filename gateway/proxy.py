"""Forwarding a `/v1/…` call to the service that owns it, bodies streamed both ways.

Each upstream has its own pooled keep-alive transport (so a slow service that holds all of its
connections cannot starve the others of theirs), its own timeouts and its own circuit breaker. Only GET/HEAD/OPTIONS are retried, and only when the connection could not be made
(the request never reached the service); a write with an Idempotency-Key is the client's to retry,
because the gateway cannot know whether the service applied it. An upstream that is down answers
503 and one that is too slow 504, both in the common error shape, within the configured timeouts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx
import structlog
from starlette.requests import Request
from starlette.responses import Response

from shared.errors import DomainError, UpstreamUnavailable
from shared.logging import current_request_id

from gateway.circuit import CircuitBreaker
from gateway.routing import SAFE_METHODS, Route

log = structlog.get_logger("gateway.proxy")

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                        b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding",
                        b"upgrade"})
# Set by the gateway itself: a client must not choose its own forwarding trail or request id.
REQUEST_REPLACED = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                              b"x-request-id"})
# The gateway's server adds its own; two Date headers would confuse caches.
RESPONSE_REPLACED = frozenset({b"date", b"server", b"x-request-id"})


class UpstreamTimeout(DomainError):
    status_code = 504
    error_type = "api_error"
    code = "upstream_timeout"


class BadGateway(DomainError):
    status_code = 502
    error_type = "api_error"
    code = "bad_gateway"


def unavailable(name: str) -> UpstreamUnavailable:
    return UpstreamUnavailable(f"Dịch vụ {name} tạm thời không khả dụng / the {name} service is unavailable",
                               code="service_unavailable", upstream=name)


@dataclass
class Upstream:
    name: str
    base_url: httpx.URL
    timeout: httpx.Timeout
    breaker: CircuitBreaker
    # Its own connection pool; None shares the proxy's transport (tests with a scripted transport).
    transport: httpx.AsyncBaseTransport | None = None


def _connection_tokens(headers) -> set[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    return named


def upstream_request_headers(scope, trust_forwarded: bool) -> list[tuple[bytes, bytes]]:
    headers = scope["headers"]
    drop = HOP_BY_HOP | REQUEST_REPLACED | _connection_tokens(headers)
    out = [(k, v) for k, v in headers if k not in drop]
    previous = b""
    proto = scope.get("scheme", "http").encode()
    host = b""
    for key, value in headers:
        if key == b"host":
            host = value
        elif trust_forwarded and key == b"x-forwarded-for":
            previous = value
        elif trust_forwarded and key == b"x-forwarded-proto":
            proto = value
    client = scope.get("client")
    peer = (client[0] if client else "unknown").encode()
    out.append((b"x-forwarded-for", previous + b", " + peer if previous else peer))
    out.append((b"x-forwarded-proto", proto))
    if host:
        out.append((b"x-forwarded-host", host))
    rid = current_request_id()
    if rid:
        out.append((b"x-request-id", rid.encode()))
    return out


class UpstreamResponse(Response):
    """The upstream's answer, streamed to the client as it arrives, its connection released after.

    Starlette's StreamingResponse would also start a task per response to watch for a client
    disconnect; an upstream answer is bounded by the read timeout, so this plain loop is enough
    and keeps the gateway's added latency down.
    """

    def __init__(self, upstream: httpx.Response, name: str):
        self._upstream = upstream
        self._name = name
        self.status_code = upstream.status_code
        drop = HOP_BY_HOP | RESPONSE_REPLACED | _connection_tokens(upstream.headers.raw)
        self.raw_headers = [(k.lower(), v) for k, v in upstream.headers.raw if k.lower() not in drop]
        self.background = None

    async def __call__(self, scope, receive, send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            async for chunk in self._upstream.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as exc:
            # Headers are gone already: all that is left is to cut the connection, so the client
            # sees a truncated answer rather than a complete-looking wrong one.
            log.warning("upstream_body_failed", upstream=self._name, error=type(exc).__name__)
        finally:
            await self._upstream.aclose()


class Proxy:
    def __init__(self, transport: httpx.AsyncBaseTransport, upstreams: dict[str, Upstream], *,
                 retries: int, backoff_seconds: float, trust_forwarded: bool):
        self.transport = transport
        self.upstreams = upstreams
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.trust_forwarded = trust_forwarded

    async def forward(self, request: Request, route: Route) -> Response:
        upstream = self.upstreams[route.upstream]
        breaker = upstream.breaker
        if not breaker.allow():
            exc = unavailable(upstream.name)
            exc.headers = {"Retry-After": str(max(1, round(breaker.retry_after())))}
            raise exc
        scope = request.scope
        method = scope["method"]
        idempotent = method in SAFE_METHODS
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        url = upstream.base_url.copy_with(raw_path=upstream.base_url.raw_path.rstrip(b"/") + target)
        headers = upstream_request_headers(scope, self.trust_forwarded)
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
        if idempotent:
            # Small or empty; read once so that a retry can send it again.
            content: bytes | object | None = await request.body() if has_body else None
        else:
            content = request.stream() if has_body else None
        attempts = 1 + (self.retries if idempotent else 0)
        timeout = upstream.timeout.as_dict()
        settled = False
        try:
            for attempt in range(attempts):
                outgoing = httpx.Request(method, url, headers=headers, content=content,
                                         extensions={"timeout": timeout})
                try:
                    response = await (upstream.transport or self.transport).handle_async_request(outgoing)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    # Never reached the service: safe to try again for a read.
                    if attempt + 1 < attempts:
                        await asyncio.sleep(self.backoff_seconds * (attempt + 1))
                        continue
                    breaker.record_failure()
                    settled = True
                    log.warning("upstream_unreachable", upstream=upstream.name, error=type(exc).__name__,
                                attempts=attempt + 1)
                    raise unavailable(upstream.name) from None
                except httpx.PoolTimeout:
                    # This upstream's connection budget is spent (its calls are all in flight); the
                    # other upstreams have their own.
                    raise UpstreamUnavailable("Cổng API đang quá tải / the gateway is overloaded",
                                              code="gateway_overloaded", upstream=upstream.name) from None
                except httpx.TimeoutException as exc:
                    breaker.record_failure()
                    settled = True
                    log.warning("upstream_timeout", upstream=upstream.name, error=type(exc).__name__)
                    raise UpstreamTimeout(f"Dịch vụ {upstream.name} không trả lời kịp / the {upstream.name} "
                                          "service timed out", upstream=upstream.name) from None
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                    # A keep-alive connection the service closed as we reused it: a read may go again.
                    if attempt + 1 < attempts:
                        continue
                    breaker.record_failure()
                    settled = True
                    log.warning("upstream_protocol_error", upstream=upstream.name, error=type(exc).__name__)
                    raise BadGateway(f"Dịch vụ {upstream.name} trả lời không hợp lệ / bad answer from the "
                                     f"{upstream.name} service", upstream=upstream.name) from None
                response.request = outgoing
                if response.status_code in (502, 503, 504):
                    breaker.record_failure()
                else:
                    breaker.record_success()
                settled = True
                return UpstreamResponse(response, upstream.name)
            raise AssertionError("unreachable: every attempt returns or raises")
        finally:
            if not settled:
                breaker.release()


def build_upstreams(settings) -> dict[str, Upstream]:
    upstreams = {}
    for name, base in settings.upstreams().items():
        read = settings.read_timeout(name)
        timeout = httpx.Timeout(connect=settings.upstream_connect_timeout_seconds, read=read, write=read,
                                pool=settings.upstream_connect_timeout_seconds)
        breaker = CircuitBreaker(settings.circuit_failure_threshold, settings.circuit_cooldown_seconds)
        upstreams[name] = Upstream(name, httpx.URL(base), timeout, breaker)
    return upstreams
