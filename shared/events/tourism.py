"""Events of the tourism service (topic `tourism.events`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from shared.events import EventData

PaymentMethod = Literal["vnpay", "vietqr"]


class ListingPublished(EventData):
    event_type = "vn.quangtri.tourism.listing.published.v1"
    key_field = "listing_id"
    listing_id: str
    merchant_id: str
    commune_code: int
    title: str
    price: int = Field(ge=0)


class BookingHeld(EventData):
    event_type = "vn.quangtri.tourism.booking.held.v1"
    key_field = "booking_id"
    booking_id: str
    listing_id: str
    merchant_id: str
    commune_code: int
    visit_date: date
    quantity: int = Field(gt=0)
    amount: int = Field(gt=0)
    payment_method_types: list[PaymentMethod]
    expires_at: datetime


class BookingConfirmed(EventData):
    event_type = "vn.quangtri.tourism.booking.confirmed.v1"
    key_field = "booking_id"
    booking_id: str
    listing_id: str
    merchant_id: str
    payment_intent_id: str
    ticket_id: str


class BookingExpired(EventData):
    event_type = "vn.quangtri.tourism.booking.expired.v1"
    key_field = "booking_id"
    booking_id: str
    listing_id: str
    merchant_id: str
    quantity: int = Field(gt=0)


class BookingCancelled(EventData):
    event_type = "vn.quangtri.tourism.booking.cancelled.v1"
    key_field = "booking_id"
    booking_id: str
    listing_id: str
    merchant_id: str
    payment_intent_id: str | None = None
    refund_amount: int = Field(default=0, ge=0)


class TicketCheckedIn(EventData):
    event_type = "vn.quangtri.tourism.ticket.checked_in.v1"
    key_field = "ticket_id"
    ticket_id: str
    booking_id: str
    listing_id: str
    merchant_id: str
    checked_in_at: datetime
