"""Who may call payments: merchants (a person's token or a secret key `sk_test_…`) and admins; nobody else."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import Depends, Request

from shared.auth import Principal
from shared.errors import Forbidden, InvalidRequest, Unauthenticated
from shared.service import RuntimeDep

from services.payments import store


def _credential(request: Request) -> str | None:
    header = request.headers.get("authorization", "").strip()
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        # curl -u sk_test_…: sends the key as Basic auth's user name, as Stripe accepts.
        try:
            return base64.b64decode(value).decode().split(":", 1)[0] or None
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def _unauthenticated(message: str, code: str) -> Unauthenticated:
    exc = Unauthenticated(message, code=code)
    exc.headers = {"WWW-Authenticate": "Bearer"}
    return exc


async def caller(request: Request, runtime: RuntimeDep) -> Principal:
    credential = _credential(request)
    if credential is None:
        raise _unauthenticated("Cần khóa API hoặc đăng nhập / You did not provide an API key.", "unauthenticated")
    if credential.startswith("sk_"):
        merchant_id = await store.merchant_of_key(runtime.db, credential)
        if merchant_id is None:
            raise _unauthenticated(f"Khóa API không hợp lệ / Invalid API Key provided: sk_…{credential[-4:]}",
                                   "invalid_api_key")
        principal = Principal(subject=f"key:{merchant_id}", role="merchant", merchant_id=merchant_id, via="api_key")
    else:
        principal = request.app.state.token_verifier.verify(credential)
    if principal.role not in ("merchant", "admin"):
        raise Forbidden(f"Vai trò {principal.role} không dùng được API thanh toán / role {principal.role} "
                        "may not use the payments API")
    return principal


Caller = Annotated[Principal, Depends(caller)]


def scope(principal: Principal, requested: str | None) -> str | None:
    """The merchant whose objects a read may see: a merchant only its own; an admin all, or the one asked for."""
    if principal.role == "admin":
        return requested
    if requested and requested != principal.merchant_id:
        raise Forbidden("Không được xem dữ liệu của cửa hàng khác / you may not read another merchant's data",
                        param="merchant")
    return principal.merchant_id


def owned_by(principal: Principal, requested: str | None = None) -> dict:
    """The Mongo filter for what `scope` lets this caller read: its merchant's objects, or everything."""
    merchant_id = scope(principal, requested)
    return {"merchant_id": merchant_id} if merchant_id else {}


def acting_for(principal: Principal, requested: str | None) -> str:
    """The merchant a write acts for: a merchant itself; an admin must say which one."""
    if principal.role == "admin":
        if not requested:
            raise InvalidRequest("Quản trị viên phải chỉ rõ merchant / admin must name the merchant",
                                 param="merchant", code="parameter_missing")
        return requested
    if requested and requested != principal.merchant_id:
        raise Forbidden("Không được thao tác cho cửa hàng khác / you may not act for another merchant",
                        param="merchant")
    assert principal.merchant_id is not None
    return principal.merchant_id


def require_admin(principal: Principal) -> None:
    if principal.role != "admin":
        raise Forbidden("Chỉ quản trị viên / admin only")
