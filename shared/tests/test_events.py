"""The CloudEvents envelope in Kafka's binary mode, and the registry of event types."""

from __future__ import annotations

import pytest

from shared.events import REGISTRY, Envelope, EventData, UndecodableEvent
from shared.events.payments import PaymentIntentSucceeded
from shared.ids import new_id, ulid

DESIGN_TYPES = {
    "merchants.events": {"merchant.submitted", "merchant.approved", "merchant.rejected", "merchant.suspended",
                         "order.placed", "order.cancelled", "order.fulfilled", "cash_sale.recorded"},
    "payments.events": {"payment_intent.created", "payment_intent.succeeded", "payment_intent.payment_failed",
                        "payment_intent.canceled", "refund.succeeded", "refund.failed",
                        "merchant_account.activated"},
    "tourism.events": {"listing.published", "booking.held", "booking.confirmed", "booking.expired",
                       "booking.cancelled", "ticket.checked_in"},
}


def test_every_event_type_of_the_design_has_a_model():
    found: dict[str, set[str]] = {}
    for event_type, model in REGISTRY.items():
        service, rest = event_type.removeprefix("vn.quangtri.").split(".", 1)
        found.setdefault(f"{service}.events", set()).add(rest.rsplit(".", 1)[0])
        assert model.topic() == f"{service}.events"
    assert found == DESIGN_TYPES


def sample() -> PaymentIntentSucceeded:
    return PaymentIntentSucceeded(payment_intent_id="pi_1", merchant_id="mch_1", amount=150000,
                                  payment_method="vietqr", captured_at="2026-11-25T01:02:03Z",
                                  reference_type="order", reference_id="ord_1")


def test_binary_mode_headers_key_and_value():
    env = Envelope.wrap(sample(), source="/services/payments")
    msg = env.to_kafka()
    assert msg.key == b"pi_1"
    assert msg.headers["ce_type"] == b"vn.quangtri.payments.payment_intent.succeeded.v1"
    assert msg.headers["ce_specversion"] == b"1.0"
    assert msg.headers["ce_source"] == b"/services/payments"
    assert msg.headers["ce_subject"] == b"pi_1"
    assert msg.headers["ce_id"].startswith(b"evt_")
    assert msg.headers["ce_time"].endswith(b"Z")
    assert msg.headers["content-type"] == b"application/json"
    back = Envelope.from_kafka(list(msg.headers.items()), msg.key, msg.value)
    assert back.data == env.data and back.id == env.id and back.time == env.time


def test_undecodable_records_are_named():
    msg = Envelope.wrap(sample(), source="/s").to_kafka()
    headers = dict(msg.headers)
    with pytest.raises(UndecodableEvent, match="does not match"):
        Envelope.from_kafka(headers, msg.key, b'{"payment_intent_id": "pi_1"}')
    with pytest.raises(UndecodableEvent, match="unknown event type"):
        Envelope.from_kafka({**headers, "ce_type": b"vn.quangtri.x.y.v9"}, msg.key, msg.value)
    with pytest.raises(UndecodableEvent):
        Envelope.from_kafka({"ce_type": headers["ce_type"]}, msg.key, msg.value)


def test_unversioned_or_foreign_types_are_refused_at_definition():
    with pytest.raises(TypeError, match="versioned"):
        class Bad(EventData):
            event_type = "com.example.thing"
            key_field = "x"
            x: str


def test_ids_are_prefixed_and_sortable():
    ids = [new_id("pi") for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == 2000
    assert all(i.startswith("pi_") and len(i) == 29 for i in ids)
    assert len(ulid()) == 26
    with pytest.raises(ValueError):
        new_id("xx")
