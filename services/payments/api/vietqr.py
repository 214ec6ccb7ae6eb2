"""VietQR: the bank's signed transfer notifications, and the QR images (an intent's dynamic QR, a merchant's static one)."""

from __future__ import annotations

import hmac
import json

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidRequest, NotFound, Unauthenticated
from shared.service import RuntimeDep

from services.payments import settlement, store, vietqr
from services.payments.api.deps import ProvidersDep

router = APIRouter(prefix="/v1/vietqr", tags=["vietqr"])
IMAGE_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


class Notification(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    bank_bin: str = Field(pattern=r"^\d{6}$")
    account_no: str = Field(min_length=1, max_length=19)
    amount: int = Field(gt=0)
    reference: str = Field(default="", max_length=99)
    description: str = Field(default="", max_length=500)
    transferred_at: str


@router.post("/notifications", summary="The bank's transfer notification (X-Bank-Signature, HMAC-SHA256)")
async def notification(request: Request, runtime: RuntimeDep, providers: ProvidersDep):
    raw = await request.body()
    secret = runtime.settings.bank_notify_secret.get_secret_value()
    # Verified on the raw bytes, before parsing: a re-serialised body would not match the signature.
    if not settlement.verify_bank_signature(request.headers.get("x-bank-signature", ""), raw, secret):
        raise Unauthenticated("Chữ ký ngân hàng không hợp lệ hoặc đã quá hạn / invalid or stale bank signature",
                              code="invalid_signature")
    try:
        body = Notification.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        param = exc.errors()[0]["loc"][0] if isinstance(exc, ValidationError) and exc.errors()[0]["loc"] else None
        raise InvalidRequest(f"Thông báo không hợp lệ / invalid notification: {exc}", param=param) from None
    outcome = await settlement.apply_bank_transfer(runtime.outbox, providers, settlement.BankTransfer(
        **body.model_dump()))
    return {"received": True, "id": body.id, "outcome": outcome}


@router.get("/payment_intents/{intent_id}/qr.{kind}", summary="An intent's VietQR image (needs its client_secret)")
async def intent_qr(intent_id: str, kind: str, client_secret: str, runtime: RuntimeDep):
    if kind not in IMAGE_TYPES:
        raise NotFound("Không có định dạng ảnh này / unknown image type", param="kind")
    intent = await runtime.db[store.INTENTS].find_one({"_id": intent_id})
    if intent is None or not intent.get("vietqr") or not hmac.compare_digest(intent["client_secret"], client_secret):
        # One answer for both: a wrong secret must not reveal that the intent exists.
        raise NotFound(f"Không tìm thấy mã QR / No such QR code: '{intent_id}'", param="client_secret")
    return _image(intent["vietqr"]["payload"], kind)


@router.get("/accounts/{account_id}/qr.{kind}", summary="A merchant's static VietQR for its counter")
async def account_qr(account_id: str, kind: str, runtime: RuntimeDep):
    if kind not in IMAGE_TYPES:
        raise NotFound("Không có định dạng ảnh này / unknown image type", param="kind")
    account = await runtime.db[store.ACCOUNTS].find_one({"_id": account_id})
    if account is None:
        raise NotFound(f"Không tìm thấy tài khoản {account_id} / No such account: '{account_id}'", param="id")
    return _image(account["vietqr_static_payload"], kind)


def _image(payload: str, kind: str) -> Response:
    content = vietqr.png(payload) if kind == "png" else vietqr.svg(payload)
    return Response(content, media_type=IMAGE_TYPES[kind], headers={"Cache-Control": "private, max-age=300"})
