"""One error shape for every service (Stripe's error object), raised as domain exceptions.

    {"error": {"type": "invalid_request_error", "code": "parameter_missing",
               "param": "amount", "message": "…", "request_id": "req_…"}}

Clients never see a stack trace: anything unexpected becomes an `api_error` 500 that carries the
request id, and the trace goes to the log.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.logging import current_request_id

log = structlog.get_logger(__name__)


class DomainError(Exception):
    """A refusal that a client can act on. Subclasses fix the HTTP status and Stripe error type."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        self.param = param
        if code:
            self.code = code
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.error_type, "code": self.code, "message": self.message}
        if self.param:
            err["param"] = self.param
        err.update(self.extra)
        return err


class InvalidRequest(DomainError):
    code = "parameter_invalid"


class NotFound(DomainError):
    status_code = 404
    code = "resource_missing"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Unauthenticated(DomainError):
    status_code = 401
    error_type = "authentication_error"
    code = "unauthenticated"


class Forbidden(DomainError):
    status_code = 403
    error_type = "invalid_request_error"
    code = "forbidden"


class RateLimited(DomainError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit"


class UpstreamUnavailable(DomainError):
    status_code = 503
    error_type = "api_error"
    code = "service_unavailable"


def error_response(status_code: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    rid = current_request_id()
    if rid:
        error = {**error, "request_id": rid}
    return JSONResponse({"error": error}, status_code=status_code, headers=headers)


def param_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """A validation location as a client wrote it: ("body", "metadata", "order_id") → metadata[order_id]."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    if not parts:
        return ""
    return parts[0] + "".join(f"[{p}]" for p in parts[1:])


def validation_error_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    details = [{"param": param_name(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in errors]
    first = details[0] if details else {"param": "", "message": "invalid request"}
    missing = any(e.get("type") == "missing" for e in errors[:1])
    return {
        "type": "invalid_request_error",
        "code": "parameter_missing" if missing else "parameter_invalid",
        "param": first["param"],
        "message": f"{first['param'] or 'request'}: {first['message']}",
        "errors": details,
    }


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError):
        return error_response(exc.status_code, exc.body(), exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return error_response(400, validation_error_body(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        code = {404: "resource_missing", 405: "method_not_allowed", 401: "unauthenticated"}.get(
            exc.status_code, "http_error"
        )
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        return error_response(exc.status_code, {"type": kind, "code": code, "message": str(exc.detail)},
                              getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        log.exception("unhandled_error", error=repr(exc))
        return error_response(500, {"type": "api_error", "code": "internal_error",
                                    "message": "Lỗi hệ thống / Internal error"})
