"""Events of the merchants service (topic `merchants.events`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.events import EventData

PaymentMethod = Literal["vnpay", "vietqr"]


class MerchantSubmitted(EventData):
    event_type = "vn.quangtri.merchants.merchant.submitted.v1"
    key_field = "merchant_id"
    merchant_id: str
    commune_code: int
    sector: str
    business_type: Literal["enterprise", "household"]


class MerchantApproved(EventData):
    """Carries what payments needs to open the account: the display name and the bank account."""

    event_type = "vn.quangtri.merchants.merchant.approved.v1"
    key_field = "merchant_id"
    merchant_id: str
    display_name: str
    commune_code: int
    sector: str
    bank_bin: str = Field(pattern=r"^\d{6}$")
    bank_account_no: str = Field(pattern=r"^[0-9A-Za-z]{1,19}$")
    bank_account_name: str


class MerchantRejected(EventData):
    event_type = "vn.quangtri.merchants.merchant.rejected.v1"
    key_field = "merchant_id"
    merchant_id: str
    reason: str


class MerchantSuspended(EventData):
    event_type = "vn.quangtri.merchants.merchant.suspended.v1"
    key_field = "merchant_id"
    merchant_id: str
    reason: str


class OrderLine(BaseModel):
    product_id: str
    quantity: int = Field(gt=0)
    unit_amount: int = Field(ge=0)


class OrderPlaced(EventData):
    event_type = "vn.quangtri.merchants.order.placed.v1"
    key_field = "order_id"
    order_id: str
    merchant_id: str
    commune_code: int
    sector: str
    amount: int = Field(gt=0)
    currency: Literal["vnd"] = "vnd"
    lines: list[OrderLine]
    payment_method_types: list[PaymentMethod]
    expires_at: datetime


class OrderCancelled(EventData):
    event_type = "vn.quangtri.merchants.order.cancelled.v1"
    key_field = "order_id"
    order_id: str
    merchant_id: str
    reason: str
    refund_amount: int = Field(default=0, ge=0)


class OrderFulfilled(EventData):
    event_type = "vn.quangtri.merchants.order.fulfilled.v1"
    key_field = "order_id"
    order_id: str
    merchant_id: str


class CashSaleRecorded(EventData):
    event_type = "vn.quangtri.merchants.cash_sale.recorded.v1"
    key_field = "cash_sale_id"
    cash_sale_id: str
    merchant_id: str
    commune_code: int
    sector: str
    amount: int = Field(gt=0)
    occurred_at: datetime
