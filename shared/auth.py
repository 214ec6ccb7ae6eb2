"""Who is calling: people's JWTs (signed by the gateway, verified here by every service itself).

Tokens are EdDSA (Ed25519) JWTs with `iss`, `aud`, `sub`, `role`, `exp`, `iat`, `jti` and, for a
merchant, `merchant_id`. Each service checks them with the public key from settings, so the
gateway is not the only lock.
"""

from __future__ import annotations

from typing import Annotated, Literal

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel

from shared.errors import Forbidden, Unauthenticated

ISSUER = "quangtri-gateway"
AUDIENCE = "quangtri-platform"
ALGORITHM = "EdDSA"
Role = Literal["shopper", "merchant", "operator", "official", "admin"]
ROLES: tuple[str, ...] = ("shopper", "merchant", "operator", "official", "admin")


class Principal(BaseModel):
    subject: str
    role: Role
    merchant_id: str | None = None
    # "token" for people, "api_key" for a merchant's server using its secret key
    via: Literal["token", "api_key"] = "token"

    def can_act_for_merchant(self, merchant_id: str) -> bool:
        return self.role == "admin" or (self.merchant_id is not None and self.merchant_id == merchant_id)


class TokenVerifier:
    def __init__(self, public_key_pem: str):
        self._public_key_pem = public_key_pem

    def verify(self, token: str) -> Principal:
        if not self._public_key_pem:
            raise Unauthenticated("Dịch vụ chưa có khóa xác thực / no verification key configured")
        try:
            claims = jwt.decode(token, self._public_key_pem, algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER, options={"require": ["exp", "iat", "sub", "role"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("Phiên đăng nhập đã hết hạn / token expired", code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("Mã xác thực không hợp lệ / invalid token", code="invalid_token") from None
        if claims.get("role") not in ROLES:
            raise Unauthenticated("Vai trò không hợp lệ / unknown role", code="invalid_token")
        if claims["role"] == "merchant" and not claims.get("merchant_id"):
            raise Unauthenticated("Thiếu merchant_id / merchant token without merchant_id", code="invalid_token")
        return Principal(subject=claims["sub"], role=claims["role"], merchant_id=claims.get("merchant_id"))


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def current_principal(request: Request) -> Principal:
    token = bearer_token(request)
    if token is None:
        exc = Unauthenticated("Cần đăng nhập / authentication required", code="unauthenticated")
        exc.headers = {"WWW-Authenticate": "Bearer"}
        raise exc
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier.verify(token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str):
    """A dependency that lets only these roles through (admin always passes)."""
    allowed = set(roles) | {"admin"}

    def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"Vai trò {principal.role} không được phép / role {principal.role} may not do this",
                            code="forbidden")
        return principal

    return Depends(check)
