"""Webhook delivery: Stripe-Signature-signed POSTs of events, retried with backoff, every attempt logged."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta

import httpx
import structlog
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from shared.clock import utcnow

from services.payments import objects, store

log = structlog.get_logger(__name__)

CLAIM = timedelta(seconds=60)
MAX_LOG = 20


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature_header(secret: str, payload: str, timestamp: int | None = None) -> str:
    """Stripe's scheme: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def backoff(attempts: int, base_seconds: float) -> timedelta:
    # 1×, 2×, 4×, … the base, at most an hour between attempts.
    return timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), 3600))


async def claim(db: AsyncDatabase) -> dict | None:
    now = utcnow()
    return await db[store.DELIVERIES].find_one_and_update(
        {"status": "pending", "next_attempt_at": {"$lte": now}},
        {"$set": {"next_attempt_at": now + CLAIM}, "$inc": {"attempts": 1}},
        sort=[("next_attempt_at", 1)], return_document=ReturnDocument.AFTER)


async def deliver(db: AsyncDatabase, http: httpx.AsyncClient, delivery: dict, *, max_attempts: int,
                  base_seconds: float) -> str:
    endpoint = await db[store.ENDPOINTS].find_one({"_id": delivery["endpoint_id"]})
    event = await db[store.EVENTS].find_one({"_id": delivery["event_id"]})
    if endpoint is None or endpoint["status"] != "enabled" or event is None:
        await db[store.DELIVERIES].update_one({"_id": delivery["_id"]}, {"$set": {"status": "abandoned"}})
        return "abandoned"
    payload = json.dumps(objects.event(event), ensure_ascii=False, separators=(",", ":"))
    started = time.perf_counter()
    status_code, error = None, None
    try:
        response = await http.post(endpoint["url"], content=payload.encode(), headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": "QuangTri-Payments/1.0 (+webhooks)",
            "Stripe-Signature": signature_header(endpoint["secret"], payload)})
        status_code = response.status_code
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    ok = status_code is not None and 200 <= status_code < 300
    attempt = {"at": utcnow(), "status_code": status_code, "error": error,
               "duration_ms": int((time.perf_counter() - started) * 1000)}
    if ok:
        update = {"status": "succeeded"}
    elif delivery["attempts"] >= max_attempts:
        update = {"status": "failed"}
    else:
        update = {"next_attempt_at": utcnow() + backoff(delivery["attempts"], base_seconds)}
    await db[store.DELIVERIES].update_one(
        {"_id": delivery["_id"]},
        {"$set": update, "$push": {"log": {"$each": [attempt], "$slice": -MAX_LOG}}})
    if ok or update.get("status") == "failed":
        await db[store.EVENTS].update_one({"_id": event["_id"], "pending_webhooks": {"$gt": 0}},
                                          {"$inc": {"pending_webhooks": -1}})
    log.info("webhook_attempt", delivery=delivery["_id"], event_id=event["_id"], status_code=status_code,
             error=error, outcome=update.get("status", "retry"))
    return update.get("status", "retry")


async def deliver_due(db: AsyncDatabase, http: httpx.AsyncClient, *, max_attempts: int, base_seconds: float,
                      batch: int = 20) -> int:
    """One pass of the worker: claims due deliveries (atomically, so replicas share the work) and sends them."""
    claimed = []
    for _ in range(batch):
        delivery = await claim(db)
        if delivery is None:
            break
        claimed.append(delivery)
    await asyncio.gather(*(deliver(db, http, d, max_attempts=max_attempts, base_seconds=base_seconds)
                           for d in claimed))
    return len(claimed)
