"""The whole flow through the VNPay emulator: pay → IPN → succeeded → Kafka event, /v1/events, signed webhook; refunds."""

from __future__ import annotations

import asyncio
import json

import httpx
import stripe

from services.payments.tests.helpers import WebhookReceiver, kafka_events, wait_for
from services.payments.tests.test_sdk import client_for


async def pay_with_emulator(stack, payment_url: str, **extra) -> dict:
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(f"{stack.config.emulator_url}/_emulator/pay",
                                 json={"payment_url": payment_url, "outcome": "approve", **extra})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_pay_through_emulator_delivers_event_and_signed_webhook(stack, infra, api_url, merchant):
    sdk = client_for(api_url, merchant.secret_key)
    async with WebhookReceiver(fail_first=1) as receiver:
        endpoint = await asyncio.to_thread(sdk.v1.webhook_endpoints.create, params={
            "url": receiver.url, "enabled_events": ["payment_intent.succeeded", "refund.succeeded"]})
        assert endpoint.secret.startswith("whsec_")
        intent = await asyncio.to_thread(sdk.v1.payment_intents.create, params={
            "amount": 200000, "currency": "vnd", "payment_method_types": ["vnpay"],
            "metadata": {"booking_id": "bk_FLOW1"}})
        paid = await pay_with_emulator(stack, intent.next_action.redirect_to_url.url, ipn_deliveries=2)
        attempts = [a["rsp_code"] for d in paid["ipn"]["deliveries"] for a in d["attempts"]]
        assert attempts == ["00", "02"]  # the repeated IPN is recognised as already confirmed
        assert (await asyncio.to_thread(sdk.v1.payment_intents.retrieve, intent.id)).status == "succeeded"

        events = await asyncio.to_thread(sdk.v1.events.list, params={"type": "payment_intent.succeeded"})
        assert len(events.data) == 1
        event = events.data[0]
        assert event.object == "event" and event.data.object.id == intent.id
        assert event.data.object.status == "succeeded"

        # Kafka carries the same event (one id), for the merchants/tourism services.
        found = await kafka_events(infra.kafka_bootstrap, f"{stack.config.topic_prefix}payments.events", {event.id})
        data = found[event.id].data
        assert data.payment_intent_id == intent.id and data.amount == 200000 and data.payment_method == "vnpay"

        # The first delivery gets a 500 and is retried with backoff; the second is accepted.
        await wait_for(lambda: asyncio.sleep(0, len(receiver.received) >= 2), timeout=20)
        payload, signature = receiver.received[-1]
        verified = stripe.Webhook.construct_event(payload.decode(), signature, endpoint.secret)
        assert verified.id == event.id and verified.type == "payment_intent.succeeded"
        assert verified.data.object.id == intent.id
        try:
            stripe.Webhook.construct_event(payload.decode(), signature, "whsec_wrong")
            raise AssertionError("a wrong secret must not verify")
        except stripe.SignatureVerificationError:
            pass

        async with httpx.AsyncClient(base_url=api_url, headers=merchant.key_headers) as http:
            log = (await http.get(f"/v1/webhook_endpoints/{endpoint.id}/deliveries")).json()["data"]
        assert log[0]["status"] == "succeeded" and [a["status_code"] for a in log[0]["attempts"]] == [500, 200]

        # Refunds through VNPay's refund API: partial, then the rest, never more.
        part = await asyncio.to_thread(sdk.v1.refunds.create, params={"payment_intent": intent.id, "amount": 50000})
        assert part.status == "succeeded" and part.amount == 50000 and part.object == "refund"
        rest = await asyncio.to_thread(sdk.v1.refunds.create, params={"payment_intent": intent.id})
        assert rest.status == "succeeded" and rest.amount == 150000
        try:
            await asyncio.to_thread(sdk.v1.refunds.create, params={"payment_intent": intent.id, "amount": 1})
            raise AssertionError("refunding more than captured must fail")
        except stripe.InvalidRequestError as exc:
            assert exc.param == "amount"
        refunds = await asyncio.to_thread(sdk.v1.refunds.list, params={"payment_intent": intent.id})
        assert sorted(r.amount for r in refunds.data) == [50000, 150000]
        async with httpx.AsyncClient(timeout=30) as http:
            at_vnpay = (await http.get(f"{stack.config.emulator_url}/_emulator/transactions/"
                                       f"{paid['transaction']['txn_ref']}")).json()
        assert at_vnpay["refunded_vnd"] == 200000
        await wait_for(lambda: asyncio.sleep(0, len(receiver.received) >= 4), timeout=20)
        types = [json.loads(body)["type"] for body, _ in receiver.received]
        assert types.count("refund.succeeded") == 2


async def test_concurrent_refunds_never_exceed_the_capture(stack, service_url, merchant):
    async with httpx.AsyncClient(base_url=service_url, headers=merchant.key_headers, timeout=120) as http:
        intent = (await http.post("/v1/payment_intents", json={"amount": 100000, "currency": "vnd",
                                                               "payment_method_types": ["vnpay"]})).json()
        await pay_with_emulator(stack, intent["next_action"]["redirect_to_url"]["url"])
        answers = await asyncio.gather(*(http.post("/v1/refunds", json={"payment_intent": intent["id"],
                                                                        "amount": 30000}) for _ in range(20)))
        ok = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code == 400]
        assert len(ok) == 3 and len(refused) == 17, [a.status_code for a in answers]
        assert all(a.json()["error"]["code"] == "amount_too_large" for a in refused)
        assert all(a.json()["status"] == "succeeded" for a in ok)
        after = (await http.get(f"/v1/payment_intents/{intent['id']}")).json()
        assert after["amount_refunded"] == 90000
        balance = (await http.get("/v1/balance")).json()["available"][0]["amount"]
        assert balance == 10000


async def test_concurrent_creates_with_one_idempotency_key_make_one_intent(service_url, merchant):
    async with httpx.AsyncClient(base_url=service_url, headers=merchant.key_headers, timeout=120) as http:
        body = "amount=45000&currency=vnd&metadata[order_id]=ord_SAME"
        form = {"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": "same-key-1"}
        answers = await asyncio.gather(*(http.post("/v1/payment_intents", content=body, headers=form)
                                         for _ in range(30)))
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["id"] for a in answers}) == 1
        listed = (await http.get("/v1/payment_intents", params={"limit": 100})).json()["data"]
        assert len(listed) == 1
        created = (await http.get("/v1/events", params={"type": "payment_intent.created"})).json()["data"]
        assert len(created) == 1
