"""Events of the payments service (topic `payments.events`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.events import EventData

PaymentMethod = Literal["vnpay", "vietqr"]
ReferenceType = Literal["order", "booking"]


class _IntentEvent(EventData):
    key_field = "payment_intent_id"
    payment_intent_id: str
    merchant_id: str
    amount: int = Field(gt=0)
    currency: Literal["vnd"] = "vnd"
    # What the intent pays for, so the owning service can find its order or booking.
    reference_type: ReferenceType | None = None
    reference_id: str | None = None


class PaymentIntentCreated(_IntentEvent):
    event_type = "vn.quangtri.payments.payment_intent.created.v1"
    payment_method_types: list[PaymentMethod]


class PaymentIntentSucceeded(_IntentEvent):
    event_type = "vn.quangtri.payments.payment_intent.succeeded.v1"
    payment_method: PaymentMethod
    commune_code: int | None = None
    sector: str | None = None
    captured_at: datetime


class PaymentIntentPaymentFailed(_IntentEvent):
    event_type = "vn.quangtri.payments.payment_intent.payment_failed.v1"
    failure_code: str
    failure_message: str


class PaymentIntentCanceled(_IntentEvent):
    event_type = "vn.quangtri.payments.payment_intent.canceled.v1"
    cancellation_reason: str


class RefundSucceeded(EventData):
    event_type = "vn.quangtri.payments.refund.succeeded.v1"
    key_field = "payment_intent_id"  # keyed by the intent so refunds follow their capture
    refund_id: str
    payment_intent_id: str
    merchant_id: str
    amount: int = Field(gt=0)
    reference_type: ReferenceType | None = None
    reference_id: str | None = None


class RefundFailed(EventData):
    event_type = "vn.quangtri.payments.refund.failed.v1"
    key_field = "payment_intent_id"
    refund_id: str
    payment_intent_id: str
    merchant_id: str
    amount: int = Field(gt=0)
    failure_reason: str
    reference_type: ReferenceType | None = None
    reference_id: str | None = None


class MerchantAccountActivated(EventData):
    event_type = "vn.quangtri.payments.merchant_account.activated.v1"
    key_field = "merchant_id"
    merchant_id: str
    account_id: str
    vietqr_static_payload: str
