"""VNPay's calls to us: the IPN (GET, answered with RspCode) and the customer's return from the pay page."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from shared.service import RuntimeDep

from services.payments import settlement
from services.payments.api.deps import ProvidersDep
from services.payments.vnpay import is_paid

router = APIRouter(prefix="/v1/vnpay", tags=["vnpay"])


@router.get("/ipn", summary="VNPay's IPN: verifies and applies a payment result; answers VNPay's RspCode")
async def ipn(request: Request, runtime: RuntimeDep, providers: ProvidersDep):
    params = dict(request.query_params)
    answer = await settlement.handle_ipn(runtime.outbox, providers, params)
    # VNPay reads the JSON body, always with HTTP 200.
    return JSONResponse({"RspCode": answer.value, "Message": answer.message})


@router.get("/return", summary="The customer's return from VNPay's pay page", response_class=HTMLResponse)
async def return_page(request: Request, runtime: RuntimeDep, providers: ProvidersDep):
    params = dict(request.query_params)
    intent = await settlement.handle_return(runtime.db, providers, params)
    if intent is None:
        return HTMLResponse(_page("Không xác thực được kết quả thanh toán", "The payment result could not be verified"),
                            status_code=400)
    paid = is_paid(params)
    if intent.get("return_url"):
        # Stripe's redirect: back to the merchant's page with the intent and its outcome.
        query = urlencode({"payment_intent": intent["_id"], "payment_intent_client_secret": intent["client_secret"],
                           "redirect_status": "succeeded" if paid else "failed"})
        separator = "&" if urlsplit(intent["return_url"]).query else "?"
        return RedirectResponse(intent["return_url"] + separator + query, status_code=303)
    if paid:
        return HTMLResponse(_page("Thanh toán thành công", "Payment received", intent["_id"]))
    return HTMLResponse(_page("Thanh toán chưa thành công", "The payment did not go through", intent["_id"]))


def _page(vi: str, en: str, reference: str | None = None) -> str:
    ref = f"<p><code>{escape(reference)}</code></p>" if reference else ""
    return (f"<!doctype html><html lang=\"vi\"><meta charset=\"utf-8\"><title>{escape(vi)}</title>"
            f"<body><h1>{escape(vi)}</h1><p lang=\"en\">{escape(en)}</p>{ref}</body></html>")
