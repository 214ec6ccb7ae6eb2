"""Who is calling, as far as the gateway can tell, and whether a proxied call may go on at all.

A caller is a person (a token the gateway verified), an API key (passed on untouched: payments
verifies its own `sk_test_…` keys), someone with an invalid token, or nobody. The gateway turns away
only what is obviously unauthenticated; every service checks identity and rights again by itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from shared.auth import Principal, TokenVerifier
from shared.errors import DomainError, Unauthenticated

from gateway.routing import Anonymous, Route

CallerKind = Literal["anonymous", "person", "api_key", "invalid"]


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    ip: str
    # The rate-limit identity: a verified token's subject, a hash of the API key, or the address.
    client_key: str
    principal: Principal | None = None
    error: DomainError | None = None


def _header(scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def client_ip(scope, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:
            # The left-most address is the one the trusted load balancer saw first.
            return forwarded.split(",")[0].strip()
    client = scope.get("client")
    return client[0] if client else "unknown"


def _looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def identify(scope, verifier: TokenVerifier, trust_forwarded: bool) -> Caller:
    ip = client_ip(scope, trust_forwarded)
    header = _header(scope, b"authorization").strip()
    if not header:
        return Caller("anonymous", ip, f"ip:{ip}")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "bearer" and value and _looks_like_jwt(value):
        try:
            principal = verifier.verify(value)
        except DomainError as exc:
            return Caller("invalid", ip, f"ip:{ip}", error=exc)
        return Caller("person", ip, f"sub:{principal.subject}", principal=principal)
    if scheme in ("bearer", "basic") and value:
        # Stripe clients send the key as a Bearer token, curl users as Basic auth's user name.
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return Caller("api_key", ip, f"key:{digest}")
    return Caller("invalid", ip, f"ip:{ip}", error=Unauthenticated(
        "Thông tin xác thực không hợp lệ / unsupported Authorization header", code="invalid_token"))


def _unauthenticated(message: str, code: str = "unauthenticated") -> Unauthenticated:
    exc = Unauthenticated(message, code=code)
    exc.headers = {"WWW-Authenticate": "Bearer"}
    return exc


def check_access(route: Route, method: str, caller: Caller) -> None:
    """Raises 401 for a call no service would accept; everything else goes on to the owner."""
    if route.anonymous is Anonymous.ALWAYS:
        return
    if caller.kind == "anonymous":
        if route.allows_anonymous(method):
            return
        raise _unauthenticated("Cần đăng nhập / authentication required")
    if caller.kind == "invalid":
        assert caller.error is not None
        exc = caller.error
        exc.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        raise exc
    if caller.kind == "api_key" and not route.api_keys:
        raise _unauthenticated("Khóa API chỉ dùng cho API thanh toán / "
                               "API keys are accepted on payments routes only", code="api_key_not_accepted")
