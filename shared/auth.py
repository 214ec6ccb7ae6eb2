"""Who is calling: people's JWTs (signed by the gateway, verified here by every service itself).

Tokens are EdDSA (Ed25519) JWTs with `iss`, `aud`, `sub`, `role`, `exp`, `iat`, `jti` and, for a
merchant, `merchant_id`. Each service checks them with the public key from settings, so the
gateway is not the only lock. `TokenIssuer` is the signing half: the gateway holds the private key,
and tests use it to mint tokens for any role.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
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
        # Parsed once: loading the PEM on every request would cost more than the signature check.
        self._key = serialization.load_pem_public_key(public_key_pem.encode()) if public_key_pem else None

    def verify(self, token: str) -> Principal:
        if self._key is None:
            raise Unauthenticated("Dịch vụ chưa có khóa xác thực / no verification key configured")
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], audience=AUDIENCE,
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


class TokenIssuer:
    """Signs people's tokens with the Ed25519 private key (PKCS8 PEM). Only the gateway holds it."""

    def __init__(self, private_key_pem: str, lifetime: timedelta = timedelta(minutes=15)):
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("the signing key must be an Ed25519 private key (PKCS8 PEM)")
        self._key = key
        self.lifetime = lifetime

    def public_key_pem(self) -> str:
        return public_key_pem_of(self._key)

    def issue(self, subject: str, role: str, merchant_id: str | None = None, *,
              now: datetime | None = None, lifetime: timedelta | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if (role == "merchant") != bool(merchant_id):
            raise ValueError("a merchant token needs a merchant_id, and only a merchant token carries one")
        issued = now or datetime.now(timezone.utc)
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "role": role,
                  "iat": int(issued.timestamp()),
                  "exp": int((issued + (lifetime if lifetime is not None else self.lifetime)).timestamp()),
                  "jti": uuid.uuid4().hex}
        if merchant_id:
            claims["merchant_id"] = merchant_id
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)


def new_signing_key() -> tuple[str, str]:
    """A fresh Ed25519 key pair as (private PKCS8 PEM, public SubjectPublicKeyInfo PEM)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return private, public_key_pem_of(key)


def public_key_pem_of(private_key: ed25519.Ed25519PrivateKey | str) -> str:
    """The SubjectPublicKeyInfo PEM that services verify with, from the private key (object or PEM)."""
    if isinstance(private_key, str):
        private_key = serialization.load_pem_private_key(private_key.encode(), password=None)
    return private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()


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
