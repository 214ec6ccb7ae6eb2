"""MongoDB through PyMongo's asyncio API: one client per process, one database per service."""

from __future__ import annotations

import asyncio
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


async def readiness(client: AsyncMongoClient) -> str:
    """"ok", or the kind of error that makes the database unusable right now."""
    try:
        await asyncio.wait_for(ping(client), 2.0)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"error: {type(exc).__name__}"
    return "ok"
