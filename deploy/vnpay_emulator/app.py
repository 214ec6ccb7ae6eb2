"""FastAPI app of the VNPay sandbox emulator: VNPay's URLs, the bank's VietQR side, a control API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from .bank import Bank, ScanError
from .emulator import PAGE_ERRORS, Delivery, Emulator, Payment, PaymentError
from .merchant_api import MerchantApi
from .pages import error_page, pay_page
from .settings import EmulatorSettings

log = logging.getLogger("vnpay_emulator")

CONFIRM_PATH = "/paymentv2/Transaction/Confirm.html"


class PayRequest(BaseModel):
    payment_url: str = Field(min_length=1, description="The full signed payment URL the merchant built.")
    outcome: Literal["approve", "decline"] = "approve"
    ipn_deliveries: int = Field(default=1, ge=0, le=10, description="0 = no IPN, 2 = the IPN arrives twice.")
    ipn_delay_seconds: float = Field(
        default=0.0, ge=0, le=3600, description="> 0: deliver late, in the background."
    )
    bank_code: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{2,20}$")
    card_type: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{2,20}$")


class ResendIpnRequest(BaseModel):
    deliveries: int = Field(default=1, ge=1, le=10)
    delay_seconds: float = Field(default=0.0, ge=0, le=3600)


class ScanRequest(BaseModel):
    payload: str = Field(min_length=1, max_length=1000, description="The EMVCo VietQR string.")
    amount: int | None = Field(default=None, gt=0, description="VND; needed when the QR carries no amount.")
    bank_transaction_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(default=None, max_length=255)
    deliveries: int = Field(default=1, ge=1, le=5)


class ConfigPatch(BaseModel):
    ipn_url: str | None = Field(default=None, pattern=r"^https?://")
    ipn_retries: int | None = Field(default=None, ge=0, le=100)
    ipn_retry_seconds: float | None = Field(default=None, ge=0)
    bank_notify_url: str | None = Field(default=None, pattern=r"^https?://")
    bank_notify_retries: int | None = Field(default=None, ge=0, le=20)
    bank_notify_retry_seconds: float | None = Field(default=None, ge=0)


def _emulator(request: Request) -> Emulator:
    return request.app.state.emulator


def _payment_or_404(emulator: Emulator, txn_ref: str, tmn_code: str | None) -> Payment:
    payment = emulator.find_payment(txn_ref, tmn_code)
    if payment is None:
        raise HTTPException(404, f"Không có giao dịch {txn_ref} / no transaction {txn_ref}")
    return payment


def _ipn_json(emulator: Emulator, deliveries: list[Delivery]) -> dict[str, Any]:
    return {
        "url": emulator.terminal.ipn_url,
        "deliveries": [record.to_json() for record in deliveries],
        "pending": any(not record.done.is_set() for record in deliveries),
    }


vnpay = APIRouter(tags=["VNPay"])


@vnpay.get("/paymentv2/vpcpay.html", response_class=HTMLResponse)
async def payment_page(request: Request) -> HTMLResponse:
    """The pay page VNPay shows for a signed payment URL, or its error page (HTTP 400)."""
    emulator = _emulator(request)
    try:
        payment = await emulator.open_payment(Emulator.parse_query(request.url.query))
    except PaymentError as exc:
        log.info("payment URL refused: %s", exc)
        return HTMLResponse(
            error_page(exc.code, exc.message, exc.detail), status_code=exc.status,
            headers={"X-VNPay-Error-Code": exc.code},
        )
    return HTMLResponse(pay_page(payment, CONFIRM_PATH))


@vnpay.post(CONFIRM_PATH, include_in_schema=False)
async def confirm_payment(
    request: Request,
    token: Annotated[str, Form()],
    action: Annotated[Literal["approve", "decline"], Form()],
):
    """The pay page's buttons: settle, send the IPN, and send the browser back to vnp_ReturnUrl."""
    emulator = _emulator(request)
    payment = emulator.by_token.get(token)
    if payment is None:
        return HTMLResponse(error_page("03", PAGE_ERRORS["03"], "token"), status_code=404)
    try:
        await emulator.complete(payment, action)
    except PaymentError as exc:
        return HTMLResponse(error_page(exc.code, exc.message, exc.detail), status_code=exc.status)
    records, _ = emulator.schedule_ipn(payment, 1, 0.0)
    # Like VNPay, the IPN usually lands before the customer is back; retries go on in the background.
    wait = emulator.settings.vnpay_emulator_http_timeout_seconds + 1
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(records[0].first_attempt.wait(), wait)
    return RedirectResponse(emulator.return_url(payment), status_code=303)


@vnpay.get("/paymentv2/Payment/Error.html", response_class=HTMLResponse)
async def vnpay_error_page(code: str = "99") -> HTMLResponse:
    return HTMLResponse(error_page(code, PAGE_ERRORS.get(code, "Lỗi không xác định / Unknown error")))


@vnpay.post("/merchant_webapi/api/transaction")
async def merchant_transaction_api(request: Request) -> JSONResponse:
    """querydr and refund, JSON in and out, always HTTP 200 with vnp_ResponseCode."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    answer = await request.app.state.merchant_api.handle(body)
    return JSONResponse(answer)


control = APIRouter(prefix="/_emulator", tags=["Emulator control"])


@control.post("/pay")
async def pay(request: Request, body: PayRequest) -> JSONResponse:
    """What a customer on the pay page does, without a browser: approve or decline a payment URL."""
    emulator = _emulator(request)
    try:
        payment = await emulator.open_payment(Emulator.parse_query(urlsplit(body.payment_url).query))
        await emulator.complete(payment, body.outcome, body.bank_code, body.card_type)
    except PaymentError as exc:
        return JSONResponse(exc.to_json(), status_code=exc.status)
    records, task = emulator.schedule_ipn(payment, body.ipn_deliveries, body.ipn_delay_seconds)
    if task is not None and body.ipn_delay_seconds == 0:
        # Shielded: a caller that hangs up must not cancel VNPay's deliveries.
        await asyncio.shield(task)
    return_url = emulator.return_url(payment)
    return JSONResponse({
        "transaction": payment.to_json(),
        "ipn": _ipn_json(emulator, records),
        "return_url": return_url,
        "return_query": dict(parse_qsl(urlsplit(return_url).query)),
    })


@control.get("/transactions")
async def list_transactions(request: Request) -> dict[str, Any]:
    emulator = _emulator(request)
    return {"data": [payment.to_json() for payment in emulator.payments.values()]}


@control.get("/transactions/{txn_ref}")
async def get_transaction(request: Request, txn_ref: str, tmn_code: str | None = None) -> dict[str, Any]:
    return _payment_or_404(_emulator(request), txn_ref, tmn_code).to_json()


@control.get("/transactions/{txn_ref}/ipn")
async def wait_ipn(
    request: Request,
    txn_ref: str,
    wait_seconds: Annotated[float, Query(ge=0, le=120)] = 0.0,
    tmn_code: str | None = None,
) -> dict[str, Any]:
    """The IPN deliveries of a transaction; with wait_seconds, first wait for pending ones to finish."""
    emulator = _emulator(request)
    payment = _payment_or_404(emulator, txn_ref, tmn_code)
    if wait_seconds > 0:
        await emulator.wait_for_ipn(payment, wait_seconds)
    return _ipn_json(emulator, payment.deliveries)


@control.post("/transactions/{txn_ref}/ipn")
async def resend_ipn(
    request: Request, txn_ref: str, body: ResendIpnRequest | None = None, tmn_code: str | None = None
) -> JSONResponse:
    """Send a settled transaction's IPN again, as VNPay's retries or its merchant admin would."""
    body = body or ResendIpnRequest()
    emulator = _emulator(request)
    payment = _payment_or_404(emulator, txn_ref, tmn_code)
    if payment.status == "pending":
        error = PaymentError("03", "giao dịch chưa hoàn tất / still pending", "txn_ref", status=409)
        return JSONResponse(error.to_json(), status_code=409)
    records, task = emulator.schedule_ipn(payment, body.deliveries, body.delay_seconds)
    if task is not None and body.delay_seconds == 0:
        await asyncio.shield(task)
    return JSONResponse(_ipn_json(emulator, records))


@control.post("/vietqr/scan")
async def vietqr_scan(request: Request, body: ScanRequest) -> JSONResponse:
    """A customer's banking app scans a VietQR and transfers; the bank notifies the merchant."""
    try:
        transfer = await request.app.state.bank.scan(
            body.payload, body.amount, body.bank_transaction_id, body.description, body.deliveries
        )
    except ScanError as exc:
        return JSONResponse(exc.to_json(), status_code=exc.status)
    return JSONResponse(transfer.to_json())


@control.get("/vietqr/transfers")
async def list_transfers(request: Request) -> dict[str, Any]:
    return {"data": [transfer.to_json() for transfer in _emulator(request).transfers.values()]}


@control.get("/vietqr/transfers/{transfer_id}")
async def get_transfer(request: Request, transfer_id: str) -> dict[str, Any]:
    transfer = _emulator(request).transfers.get(transfer_id)
    if transfer is None:
        raise HTTPException(404, f"Không có giao dịch chuyển khoản {transfer_id} / no transfer {transfer_id}")
    return transfer.to_json()


def _config(emulator: Emulator) -> dict[str, Any]:
    return {
        "tmn_code": emulator.terminal.tmn_code,
        "ipn_url": emulator.terminal.ipn_url,
        "ipn_retries": emulator.ipn_retries,
        "ipn_retry_seconds": emulator.ipn_retry_seconds,
        "bank_notify_url": emulator.bank_notify_url,
        "bank_notify_retries": emulator.bank_notify_retries,
        "bank_notify_retry_seconds": emulator.bank_notify_retry_seconds,
    }


@control.get("/config")
async def get_config(request: Request) -> dict[str, Any]:
    return _config(_emulator(request))


@control.patch("/config")
async def patch_config(request: Request, body: ConfigPatch) -> dict[str, Any]:
    """Change the terminal's IPN URL or the bank's notification URL at run time, as VNPay's admin does."""
    emulator = _emulator(request)
    changes = body.model_dump(exclude_none=True)
    if "ipn_url" in changes:
        emulator.terminal.ipn_url = changes.pop("ipn_url")
    for name, value in changes.items():
        setattr(emulator, name, value)
    return _config(emulator)


@control.post("/reset")
async def reset(request: Request) -> dict[str, str]:
    """Forget every transaction and transfer (pending deliveries are cancelled)."""
    await _emulator(request).reset()
    return {"status": "ok"}


def create_app(settings: EmulatorSettings | None = None) -> FastAPI:
    settings = settings or EmulatorSettings()
    emulator = Emulator(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await emulator.start()
        try:
            yield
        finally:
            await emulator.stop()

    app = FastAPI(
        title="VNPay sandbox emulator",
        description="VNPay v2.1.0 (pay URL, IPN, return URL, querydr, refund) and the bank side of VietQR.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    app.state.merchant_api = MerchantApi(emulator)
    app.state.bank = Bank(emulator)

    @app.get("/healthz", tags=["Health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["Health"])
    async def readyz() -> JSONResponse:
        ready = emulator.http is not None
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    app.include_router(vnpay)
    app.include_router(control)
    return app
