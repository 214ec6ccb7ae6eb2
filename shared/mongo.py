"""MongoDB through PyMongo's asyncio API: one client per process, one database per service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

IndexSetup = Callable[[AsyncDatabase], Awaitable[None]]


def connect(uri: str, **kwargs: Any) -> AsyncMongoClient:
    # tz_aware: datetimes come back as aware UTC, never naive.
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, **kwargs)


async def ping(client: AsyncMongoClient) -> None:
    await client.admin.command("ping")
