"""Payments' reactions to other services' events, over the real broker: accounts, intents per order/booking."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import httpx

from shared.bus import Producer
from shared.clock import utcnow
from shared.events import Envelope
from shared.events.merchants import MerchantApproved, OrderCancelled, OrderLine, OrderPlaced
from shared.events.tourism import BookingCancelled, BookingHeld

from services.payments.tests.helpers import wait_for


async def publish(stack, infra, *envelopes: Envelope) -> None:
    producer = Producer(infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.publish_many([(stack.config.topic_prefix + e.topic, e.to_kafka()) for e in envelopes])
    finally:
        await producer.stop()


async def test_merchant_approved_opens_the_account_once(stack, infra, service_url, admin_headers):
    merchant_id = f"mch_E{uuid.uuid4().hex[:20].upper()}"
    approved = Envelope.wrap(MerchantApproved(
        merchant_id=merchant_id, display_name="Homestay Phong Nha", commune_code=19075, sector="tourism",
        bank_bin="970418", bank_account_no="1234567890", bank_account_name="TRAN THI BINH"), source="/tests")
    await publish(stack, infra, approved, approved)
    async with httpx.AsyncClient(base_url=service_url, headers=admin_headers, timeout=30) as http:
        async def opened():
            return (await http.get("/v1/accounts", params={"merchant": merchant_id})).json()["data"]
        accounts = await wait_for(opened)
        activated = (await http.get("/v1/events", params={"merchant": merchant_id,
                                                          "type": "merchant_account.activated"})).json()["data"]
    assert len(accounts) == 1 and accounts[0]["vietqr"]["data"].startswith("00020101021138")
    assert len(activated) == 1 and activated[0]["data"]["object"]["id"] == accounts[0]["id"]


async def test_order_and_booking_events_create_and_close_intents(stack, infra, service_url, merchant):
    order_id, booking_id = f"ord_{uuid.uuid4().hex[:12]}", f"bk_{uuid.uuid4().hex[:12]}"
    placed = OrderPlaced(order_id=order_id, merchant_id=merchant.merchant_id, commune_code=19042, sector="food",
                         amount=64000, lines=[OrderLine(product_id="prd_1", quantity=2, unit_amount=32000)],
                         payment_method_types=["vietqr"], expires_at=utcnow() + timedelta(minutes=10))
    held = BookingHeld(booking_id=booking_id, listing_id="lst_1", merchant_id=merchant.merchant_id,
                       commune_code=19042, visit_date=date.today(), quantity=1, amount=300000,
                       payment_method_types=["vnpay", "vietqr"], expires_at=utcnow() + timedelta(minutes=15))
    first = Envelope.wrap(placed, source="/tests")
    # Redelivery (same event id) and a re-publish (new id, same order) still make one intent per order.
    await publish(stack, infra, first, first, Envelope.wrap(placed, source="/tests"), Envelope.wrap(held, source="/tests"))
    async with httpx.AsyncClient(base_url=service_url, headers=merchant.key_headers, timeout=30) as http:
        async def both():
            data = (await http.get("/v1/payment_intents", params={"limit": 100})).json()["data"]
            return data if len(data) >= 2 else None
        intents = await wait_for(both)
        assert len(intents) == 2
        by_source = {tuple(i["metadata"].items())[0]: i for i in intents}
        order_intent = by_source[("order_id", order_id)]
        booking_intent = by_source[("booking_id", booking_id)]
        assert order_intent["amount"] == 64000 and order_intent["payment_method_types"] == ["vietqr"]
        assert booking_intent["next_action"]["type"] == "redirect_to_url"

        # The booking is paid by bank transfer, then cancelled with a refund; the order is cancelled unpaid.
        scan = await http.post(f"{stack.config.emulator_url}/_emulator/vietqr/scan", json={
            "payload": booking_intent["next_action"]["vietqr_display_qr_code"]["data"]})
        assert scan.status_code == 200
        await publish(stack, infra,
                      Envelope.wrap(OrderCancelled(order_id=order_id, merchant_id=merchant.merchant_id,
                                                   reason="customer"), source="/tests"),
                      Envelope.wrap(BookingCancelled(booking_id=booking_id, listing_id="lst_1",
                                                     merchant_id=merchant.merchant_id, refund_amount=200000),
                                    source="/tests"))

        async def settled():
            order = (await http.get(f"/v1/payment_intents/{order_intent['id']}")).json()
            refunds = (await http.get("/v1/refunds", params={"payment_intent": booking_intent["id"]})).json()["data"]
            done = order["status"] == "canceled" and refunds and refunds[0]["status"] == "succeeded"
            return (order, refunds) if done else None
        order, refunds = await wait_for(settled)
        assert order["cancellation_reason"] == "requested_by_customer"
        assert [r["amount"] for r in refunds] == [200000]
        balance = (await http.get("/v1/balance")).json()["available"][0]["amount"]
        assert balance == 100000
