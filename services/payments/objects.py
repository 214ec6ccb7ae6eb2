"""Stripe's object shapes for our stored documents (PaymentIntent, Refund, Event, WebhookEndpoint, …)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from shared.clock import as_utc

from services.payments import domain


def unix(moment: datetime | None) -> int | None:
    return int(as_utc(moment).timestamp()) if moment else None


def qr_image_urls(base_url: str, intent: dict[str, Any]) -> tuple[str, str]:
    # The client secret makes the link unguessable, as Stripe's hosted QR links are.
    path = f"{base_url}/v1/vietqr/payment_intents/{intent['_id']}"
    query = f"?client_secret={quote(intent['client_secret'], safe='')}"
    return f"{path}/qr.png{query}", f"{path}/qr.svg{query}"


def next_action(intent: dict[str, Any], base_url: str) -> dict[str, Any] | None:
    """Stripe's next_action: the first payment method's shape as `type`, and every offered method's details."""
    if intent["status"] != domain.REQUIRES_ACTION:
        return None
    action: dict[str, Any] = {}
    for method in intent["payment_method_types"]:
        if method == "vnpay" and intent.get("vnpay"):
            action.setdefault("type", "redirect_to_url")
            action["redirect_to_url"] = {"url": intent["vnpay"]["url"], "return_url": intent.get("return_url")}
        elif method == "vietqr" and intent.get("vietqr"):
            action.setdefault("type", "vietqr_display_qr_code")
            png, svg = qr_image_urls(base_url, intent)
            action["vietqr_display_qr_code"] = {
                "data": intent["vietqr"]["payload"], "image_url_png": png, "image_url_svg": svg,
                "reference": intent["vietqr"]["reference"], "expires_at": unix(intent["expires_at"]),
            }
    return action or None


def payment_intent(intent: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {
        "id": intent["_id"], "object": "payment_intent", "amount": intent["amount"],
        "amount_capturable": 0, "amount_received": intent.get("amount_received", 0),
        "amount_refunded": intent.get("amount_refunded", 0),
        "application": None, "automatic_payment_methods": None,
        "canceled_at": unix(intent.get("canceled_at")), "cancellation_reason": intent.get("cancellation_reason"),
        "capture_method": "automatic", "client_secret": intent["client_secret"],
        "confirmation_method": "automatic", "created": unix(intent["created"]), "currency": domain.CURRENCY,
        "customer": None, "description": intent.get("description"),
        "expires_at": unix(intent["expires_at"]),
        "last_payment_error": intent.get("last_payment_error"), "latest_charge": None, "livemode": False,
        "merchant": intent["merchant_id"], "metadata": intent.get("metadata", {}),
        "next_action": next_action(intent, base_url),
        "payment_method": None, "payment_method_details": intent.get("payment_method_details"),
        "payment_method_types": intent["payment_method_types"], "processing": None,
        "receipt_email": None, "return_url": intent.get("return_url"), "setup_future_usage": None,
        "statement_descriptor": None, "status": intent["status"],
        "succeeded_at": unix(intent.get("succeeded_at")),
    }


def refund(doc: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
    shaped = {
        "id": doc["_id"], "object": "refund", "amount": doc["amount"], "charge": None,
        "created": unix(doc["created"]), "currency": domain.CURRENCY,
        "failure_reason": doc.get("failure_reason"), "livemode": False, "merchant": doc["merchant_id"],
        "metadata": doc.get("metadata", {}), "payment_intent": doc["payment_intent_id"],
        "payment_method": doc.get("payment_method"), "reason": doc.get("reason"),
        "status": doc["status"], "destination_details": doc.get("destination_details"),
        # Set while the refund is held for people to decide (VNPay's answer was lost): not sent again by itself.
        "review_reason": doc.get("review_reason"),
    }
    if admin:
        review = doc.get("review")
        shaped["review"] = {**review, "resolved_at": unix(review["resolved_at"])} if review else None
    return shaped


def flagged_payment(doc: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
    resolution = doc.get("resolution")
    if resolution:
        resolution = {k: v for k, v in resolution.items() if admin or k != "resolved_by"}
        resolution["resolved_at"] = unix(resolution["resolved_at"])
    return {"id": doc["_id"], "object": "flagged_payment", "kind": doc["kind"], "amount": doc["amount"],
            "merchant": doc["merchant_id"], "payment_intent": doc["payment_intent_id"], "status": doc["status"],
            "details": doc["details"], "created": unix(doc["created"]), "resolution": resolution}


def event(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"], "object": "event", "api_version": doc.get("api_version"),
        "created": unix(doc["created"]), "data": {"object": doc["object"]}, "livemode": False,
        "pending_webhooks": doc.get("pending_webhooks", 0),
        "request": {"id": doc.get("request_id"), "idempotency_key": doc.get("idempotency_key")},
        "type": doc["type"],
    }


def webhook_endpoint(doc: dict[str, Any], *, with_secret: bool = False) -> dict[str, Any]:
    shaped = {
        "id": doc["_id"], "object": "webhook_endpoint", "api_version": None, "application": None,
        "created": unix(doc["created"]), "description": doc.get("description"),
        "enabled_events": doc["enabled_events"], "livemode": False, "merchant": doc.get("merchant_id"),
        "metadata": doc.get("metadata", {}), "status": doc["status"], "url": doc["url"],
    }
    if with_secret:
        shaped["secret"] = doc["secret"]
    return shaped


def webhook_delivery(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"], "object": "webhook_delivery", "event": doc["event_id"],
        "webhook_endpoint": doc["endpoint_id"], "status": doc["status"], "attempt_count": doc["attempts"],
        "next_attempt_at": unix(doc.get("next_attempt_at")) if doc["status"] == "pending" else None,
        "created": unix(doc["created"]),
        "attempts": [{"at": unix(a["at"]), "status_code": a.get("status_code"), "error": a.get("error"),
                      "duration_ms": a.get("duration_ms")} for a in doc.get("log", [])],
    }


def account(doc: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {
        "id": doc["_id"], "object": "account", "business_profile": {"name": doc["display_name"]},
        "charges_enabled": True, "payouts_enabled": True, "country": "VN", "created": unix(doc["created"]),
        "default_currency": domain.CURRENCY, "livemode": False, "merchant": doc["merchant_id"],
        "metadata": {}, "commune_code": doc["commune_code"], "sector": doc["sector"],
        "bank_account": {"bank_bin": doc["bank_bin"], "account_number": doc["bank_account_no"],
                         "account_holder_name": doc["bank_account_name"]},
        "vietqr": {"data": doc["vietqr_static_payload"],
                   "image_url_png": f"{base_url}/v1/vietqr/accounts/{doc['_id']}/qr.png",
                   "image_url_svg": f"{base_url}/v1/vietqr/accounts/{doc['_id']}/qr.svg"},
    }


def balance_transaction(doc: dict[str, Any]) -> dict[str, Any]:
    signed = doc["amount"] if doc["kind"] == "capture" else -doc["amount"]
    return {
        "id": doc["_id"], "object": "balance_transaction", "amount": signed, "available_on": unix(doc["created"]),
        "created": unix(doc["created"]), "currency": domain.CURRENCY, "description": doc.get("description"),
        "fee": 0, "fee_details": [], "net": signed, "merchant": doc["merchant_id"],
        "reporting_category": "charge" if doc["kind"] == "capture" else "refund",
        "source": doc["source"], "payment_intent": doc["payment_intent_id"], "status": "available",
        "type": "charge" if doc["kind"] == "capture" else "refund", "settlement_date": doc["vn_date"],
        "entries": doc["entries"],
    }
