"""People's accounts and sign-in: users in the gateway's own database, argon2id passwords, EdDSA tokens.

Also the demo accounts every local stack has, one per role (`DEMO_USERS`), seeded idempotently
when DEMO_USERS_SEED=true (never in production).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.auth import ROLES, Principal, Role, TokenIssuer
from shared.clock import utcnow
from shared.errors import Conflict, InvalidRequest, Unauthenticated
from shared.ids import new_id

DEMO_MERCHANT_ID = "mch_demo_quangtri"
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@+-]{2,63}$"
MERCHANT_ID_PATTERN = re.compile(r"^mch_[A-Za-z0-9_]{1,64}$")


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    display_name: str
    merchant_id: str | None = None


# Known credentials for local stacks and tests; `./dev up` prints them and lists them in stack.json.
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("shopper@demo.quangtri.vn", "QuangTri-shopper-2025", "shopper", "Nguyễn Thị Lan"),
    DemoUser("merchant@demo.quangtri.vn", "QuangTri-merchant-2025", "merchant", "Bánh lọc Mỹ Chánh",
             merchant_id=DEMO_MERCHANT_ID),
    DemoUser("operator@demo.quangtri.vn", "QuangTri-operator-2025", "operator",
             "Ban quản lý Vườn quốc gia Phong Nha – Kẻ Bàng"),
    DemoUser("official@demo.quangtri.vn", "QuangTri-official-2025", "official", "Sở Công Thương Quảng Trị"),
    DemoUser("admin@demo.quangtri.vn", "QuangTri-admin-2025", "admin", "Quản trị nền tảng"),
)


def demo_users() -> tuple[DemoUser, ...]:
    return DEMO_USERS


def demo_credentials() -> dict[str, dict[str, str]]:
    """The `demo.users` part of `.run/stack.json`: role → {"username", "password"}."""
    return {u.role: {"username": u.username, "password": u.password} for u in DEMO_USERS}


def normalize_username(username: str) -> str:
    return username.strip().lower()


class NewUser(BaseModel):
    """What an admin sends to create an account."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=64, pattern=USERNAME_PATTERN,
                          description="Lower case letters, digits and . _ @ + -")
    # Long enough to resist guessing; bounded so that hashing one cannot be used to stall us.
    password: str = Field(min_length=10, max_length=256)
    role: Role
    merchant_id: str | None = Field(default=None, description="Required for, and only for, role merchant")
    display_name: str = Field(default="", max_length=120)

    @field_validator("username", mode="before")
    @classmethod
    def _normalized(cls, value):
        # Sign-in ignores case, so two accounts must never differ by case alone.
        return normalize_username(value) if isinstance(value, str) else value


class User(BaseModel):
    """An account as clients see it (never the password hash)."""

    id: str
    object: str = "user"
    username: str
    role: Role
    merchant_id: str | None = None
    display_name: str = ""


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


def _user(doc: dict) -> User:
    return User(id=doc["_id"], username=doc["username"], role=doc["role"], merchant_id=doc.get("merchant_id"),
                display_name=doc.get("display_name", ""))


class UserStore:
    """The `users` collection of the gateway's database (`qt_gateway`)."""

    def __init__(self, db: AsyncDatabase):
        self.users = db["users"]

    async def ensure_indexes(self) -> None:
        await self.users.create_index("username", unique=True)

    async def by_username(self, username: str) -> dict | None:
        return await self.users.find_one({"username": username})

    async def by_id(self, user_id: str) -> dict | None:
        return await self.users.find_one({"_id": user_id})

    async def insert(self, doc: dict) -> bool:
        """False when the user name is taken (the unique index decides, also between replicas)."""
        try:
            await self.users.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self.users.update_one({"_id": user_id}, {"$set": {"password_hash": password_hash}})


class Passwords:
    """argon2id hashing off the event loop, a bounded number at a time."""

    def __init__(self, hasher: argon2.PasswordHasher, concurrency: int):
        self._hasher = hasher
        self._slots = asyncio.Semaphore(concurrency)
        # Verified against when the user does not exist, so that an unknown name costs the same
        # time as a wrong password and answers cannot be told apart by timing.
        self._decoy = hasher.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash or self._decoy, password) \
                    and password_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def invalid_credentials() -> Unauthenticated:
    exc = Unauthenticated("Sai tên đăng nhập hoặc mật khẩu / incorrect username or password",
                          code="invalid_credentials")
    exc.headers = {"WWW-Authenticate": "Bearer"}
    return exc


class Identity:
    """Sign-in, account creation and look-up: the rules, over the store, the hasher and the issuer."""

    def __init__(self, store: UserStore, passwords: Passwords, issuer: TokenIssuer):
        self.store = store
        self.passwords = passwords
        self.issuer = issuer

    async def sign_in(self, username: str, password: str) -> AccessToken:
        doc = await self.store.by_username(normalize_username(username))
        usable = doc is not None and not doc.get("disabled", False)
        ok = await self.passwords.verify(doc["password_hash"] if usable else None, password)
        if not ok:
            raise invalid_credentials()
        if self.passwords.needs_rehash(doc["password_hash"]):
            # Cost settings were raised since this hash was made: upgrade it while we know the password.
            await self.store.set_password_hash(doc["_id"], await self.passwords.hash(password))
        token = self.issuer.issue(doc["_id"], doc["role"], doc.get("merchant_id"))
        return AccessToken(access_token=token, expires_in=int(self.issuer.lifetime.total_seconds()))

    async def create_user(self, new: NewUser) -> User:
        if new.role not in ROLES:  # the model checks it too; kept for callers that bypass it
            raise InvalidRequest(f"Vai trò không hợp lệ / unknown role {new.role}", param="role")
        if new.role == "merchant":
            if not new.merchant_id or not MERCHANT_ID_PATTERN.match(new.merchant_id):
                raise InvalidRequest("Tài khoản người bán cần merchant_id dạng mch_… / "
                                     "a merchant account needs a merchant_id like mch_…", param="merchant_id")
        elif new.merchant_id is not None:
            raise InvalidRequest("Chỉ tài khoản người bán có merchant_id / "
                                 "only merchant accounts carry a merchant_id", param="merchant_id")
        doc = {"_id": new_id("usr"), "username": normalize_username(new.username),
               "password_hash": await self.passwords.hash(new.password), "role": new.role,
               "display_name": new.display_name, "created_at": utcnow(), "disabled": False}
        if new.merchant_id:
            doc["merchant_id"] = new.merchant_id
        if not await self.store.insert(doc):
            raise Conflict(f"Tên đăng nhập đã được dùng / username {doc['username']} is taken",
                           param="username", code="username_taken")
        return _user(doc)

    async def who(self, principal: Principal) -> User:
        doc = await self.store.by_id(principal.subject)
        if doc is None or doc.get("disabled", False):
            raise Unauthenticated("Tài khoản không còn hiệu lực / account no longer exists",
                                  code="invalid_token")
        return _user(doc)

    async def seed_demo_users(self) -> int:
        """Creates the demo accounts that are missing; returns how many it created. Safe to run
        again and from several gateway replicas at once."""
        created = 0
        for demo in DEMO_USERS:
            if await self.store.by_username(demo.username) is not None:
                continue
            doc = {"_id": new_id("usr"), "username": demo.username,
                   "password_hash": await self.passwords.hash(demo.password), "role": demo.role,
                   "display_name": demo.display_name, "created_at": utcnow(), "disabled": False, "demo": True}
            if demo.merchant_id:
                doc["merchant_id"] = demo.merchant_id
            created += await self.store.insert(doc)
        return created


def build_identity(db: AsyncDatabase, settings) -> Identity:
    hasher = argon2.PasswordHasher(time_cost=settings.password_hash_time_cost,
                                   memory_cost=settings.password_hash_memory_kib,
                                   parallelism=settings.password_hash_parallelism, type=argon2.Type.ID)
    issuer = TokenIssuer(settings.auth_private_key_pem.get_secret_value(),
                         lifetime=timedelta(minutes=settings.access_token_minutes))
    return Identity(UserStore(db), Passwords(hasher, settings.password_hash_concurrency), issuer)
