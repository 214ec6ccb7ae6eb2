"""Browser-facing protections on every answer: security headers, and CORS for the web pages.

Answers that already carry one of these headers (a web page with its own Content-Security-Policy,
say) keep their own value.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class SecurityHeadersMiddleware:
    def __init__(self, app, *, trust_forwarded: bool):
        self.app = app
        self.trust_forwarded = trust_forwarded

    def _is_https(self, scope) -> bool:
        if scope.get("scheme") == "https":
            return True
        if self.trust_forwarded:
            for key, value in scope["headers"]:
                if key == b"x-forwarded-proto":
                    return value.split(b",")[0].strip().lower() == b"https"
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # HSTS over plain http would be ignored by browsers and only confuse local development.
        extra = BASE_HEADERS + ((HSTS,) if self._is_https(scope) else ())

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


CORS_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Stripe-Version", "X-Request-Id"]


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """Lets the listed origins call the API from a browser. Tokens travel in the Authorization
    header, never in cookies, so credentials mode stays off."""
    if not origins:
        return
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=False,
                       allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                       allow_headers=CORS_HEADERS, expose_headers=["X-Request-Id", "Retry-After"],
                       max_age=600)
