"""Per-client rate limits (token buckets) and the request body size limit, as ASGI middleware.

The buckets live in this process' memory: with several gateway instances behind a load balancer
each enforces its own budget, so a client gets up to instances × the configured rate. That is the
price of needing no shared store on the hot path; a shared limiter (e.g. Redis) would replace
`TokenBuckets` without changing the middleware.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from shared.auth import TokenVerifier
from shared.errors import RateLimited, error_response

from gateway.access import identify

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})


class TokenBuckets:
    """One bucket per client key: `burst` tokens, refilled at `rate` per second, one per request.

    Only the most recently seen `max_clients` buckets are kept; a client forgotten after being idle
    would have had a full bucket anyway.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Takes one token. Returns 0 when allowed, else the seconds until a token is available."""
        now = self._clock()
        tokens, updated = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
        if tokens >= 1.0:
            wait = 0.0
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def rate_limited(wait: float, message: str) -> RateLimited:
    exc = RateLimited(message, code="rate_limit")
    exc.headers = {"Retry-After": str(max(1, math.ceil(wait)))}
    return exc


class RateLimitMiddleware:
    """Identifies the caller once (see gateway.access), keeps it on the request, and spends a token."""

    def __init__(self, app, *, buckets: TokenBuckets, verifier: TokenVerifier, trust_forwarded: bool):
        self.app = app
        self.buckets = buckets
        self.verifier = verifier
        self.trust_forwarded = trust_forwarded

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            return await self.app(scope, receive, send)
        caller = identify(scope, self.verifier, self.trust_forwarded)
        scope.setdefault("state", {})["caller"] = caller
        wait = self.buckets.take(caller.client_key)
        if wait > 0:
            exc = rate_limited(wait, "Quá nhiều yêu cầu, vui lòng thử lại sau / "
                                     "too many requests, retry later")
            response = error_response(exc.status_code, exc.body(), exc.headers)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class RequestBodyTooLarge(Exception):
    """Raised from `receive` when a body outgrows the limit; the middleware answers 413."""


def _too_large(limit: int):
    return error_response(413, {"type": "invalid_request_error", "code": "request_too_large",
                                "message": f"Nội dung yêu cầu quá lớn (tối đa {limit} byte) / "
                                           f"request body too large (at most {limit} bytes)"})


class BodySizeLimitMiddleware:
    """413 for a declared Content-Length over the limit at once; for a chunked body, as soon as
    the bytes read pass it (whatever the inner app was doing with them)."""

    def __init__(self, app, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    return await _too_large(self.max_bytes)(scope, receive, send)
                break
        received = 0
        exceeded = False
        started = False
        replaced = False

        async def limited_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise RequestBodyTooLarge()
            return message

        async def guarded_send(message):
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                if exceeded:
                    # The inner app saw the exception and answered something (a 400 from form
                    # parsing, a 502 from the proxy): the client must see why, in one shape.
                    replaced = True
                    return await _too_large(self.max_bytes)(scope, receive, send)
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except RequestBodyTooLarge:
            if started or replaced:
                raise
            await _too_large(self.max_bytes)(scope, receive, send)
