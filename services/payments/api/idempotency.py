"""Stripe's Idempotency-Key: the same key and body replay the first answer; another body is an error;
concurrent requests with one key do the work once (the key is reserved by a unique insert first)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.auth import Principal
from shared.clock import utcnow
from shared.errors import Conflict, DomainError, InvalidRequest

from services.payments.store import IDEMPOTENCY

Work = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]
# A request that died half-way leaves its key reserved; after this long a retry may take it over.
STALE_AFTER = timedelta(seconds=60)
WAIT_FOR_FIRST = 10.0


class IdempotencyError(DomainError):
    status_code = 400
    error_type = "idempotency_error"
    code = "idempotency_key_reused"


async def run_once(request: Request, db: AsyncDatabase, principal: Principal, params: dict[str, Any],
                   work: Work) -> JSONResponse:
    key = request.headers.get("idempotency-key")
    if key is None:
        status, body = await work()
        return JSONResponse(body, status_code=status)
    if not (0 < len(key) <= 255):
        raise InvalidRequest("Idempotency-Key phải có 1–255 ký tự / Idempotency-Key must be 1–255 characters",
                             param="Idempotency-Key")
    owner = principal.merchant_id or f"user:{principal.subject}"
    record_id = hashlib.sha256(f"{owner}\n{key}".encode()).hexdigest()
    fingerprint = hashlib.sha256(json.dumps([request.method, request.url.path, params], sort_keys=True,
                                            ensure_ascii=False, default=str).encode()).hexdigest()
    token = secrets.token_hex(8)
    records = db[IDEMPOTENCY]
    replay = await _reserve(records, record_id, fingerprint, token, key)
    if replay is not None:
        return replay
    try:
        status, body = await work()
    except DomainError:
        # A refusal (validation, state): nothing was written, and the key may be used again, as Stripe does.
        await records.delete_one({"_id": record_id, "token": token})
        raise
    except Exception:
        # An unexpected failure may come after the work wrote something (a refund reserved, even sent to
        # VNPay): a retry with this key must not do it again. Stripe keeps such 500 results too.
        failed = {"error": {"type": "api_error", "code": "internal_error",
                            "message": "Lỗi hệ thống khi xử lý yêu cầu này; kiểm tra trạng thái trước khi thử với khóa "
                                       "mới / An error occurred while processing this request; check the objects' "
                                       "state before retrying with a new Idempotency-Key"}}
        await records.update_one({"_id": record_id, "token": token},
                                 {"$set": {"state": "done", "status": 500, "body": json.dumps(failed)}})
        raise
    except BaseException:
        # Cancelled before an answer: as Stripe keeps nothing for a request that never finished.
        await records.delete_one({"_id": record_id, "token": token})
        raise
    await records.update_one({"_id": record_id, "token": token},
                             {"$set": {"state": "done", "status": status, "body": json.dumps(body)}})
    return JSONResponse(body, status_code=status, headers={"Idempotency-Key": key})


async def _reserve(records, record_id: str, fingerprint: str, token: str, key: str) -> JSONResponse | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_FIRST
    while True:
        try:
            await records.insert_one({"_id": record_id, "fingerprint": fingerprint, "state": "in_progress",
                                      "token": token, "created": utcnow()})
            return None
        except DuplicateKeyError:
            pass
        first = await records.find_one({"_id": record_id})
        if first is None:
            continue  # expired or released between our two calls: try to reserve again
        if first["fingerprint"] != fingerprint:
            raise IdempotencyError(
                "Khóa Idempotency-Key đã dùng với tham số khác / Keys for idempotent requests can only be used "
                f"with the same parameters they were first used with. Try using a key other than '{key}' if "
                "you meant to execute a different request.")
        if first["state"] == "done":
            return JSONResponse(json.loads(first["body"]), status_code=first["status"],
                                headers={"Idempotency-Key": key, "Idempotent-Replayed": "true"})
        if first["created"] < utcnow() - STALE_AFTER:
            taken = await records.update_one({"_id": record_id, "token": first["token"], "state": "in_progress"},
                                             {"$set": {"token": token, "created": utcnow()}})
            if taken.modified_count:
                return None
        if loop.time() > deadline:
            raise Conflict("Một yêu cầu khác cùng Idempotency-Key đang chạy / There is currently another "
                           "in-progress request using this Idempotency-Key", code="idempotency_key_in_use")
        await asyncio.sleep(0.05)
