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


async def test_idempotency_keys_are_scoped_per_merchant_and_bound_to_one_path(service_url, merchant, other_merchant):
    body = {"amount": 33000, "currency": "vnd"}
    async with httpx.AsyncClient(base_url=service_url, timeout=60) as http:
        key = {"Idempotency-Key": "shared-key-1"}
        mine = await http.post("/v1/payment_intents", json=body, headers={**merchant.key_headers, **key})
        theirs = await http.post("/v1/payment_intents", json=body, headers={**other_merchant.key_headers, **key})
        assert mine.status_code == theirs.status_code == 200
        assert mine.json()["id"] != theirs.json()["id"]
        assert mine.json()["merchant"] == merchant.merchant_id and theirs.json()["merchant"] == other_merchant.merchant_id
        elsewhere = await http.post("/v1/webhook_endpoints", headers={**merchant.key_headers, **key},
                                    json={"url": "http://127.0.0.1:9/h", "enabled_events": ["*"]})
        assert elsewhere.status_code == 400 and elsewhere.json()["error"]["type"] == "idempotency_error"


async def test_a_cancel_retried_with_its_idempotency_key_replays_the_first_answer(service_url, merchant):
    async with httpx.AsyncClient(base_url=service_url, headers=merchant.key_headers, timeout=60) as http:
        intent = (await http.post("/v1/payment_intents", json={"amount": 21000, "currency": "vnd"})).json()
        key = {"Idempotency-Key": f"cancel-{intent['id']}"}
        first = await http.post(f"/v1/payment_intents/{intent['id']}/cancel", headers=key)
        retried = await http.post(f"/v1/payment_intents/{intent['id']}/cancel", headers=key)
        assert first.status_code == 200 and first.json()["status"] == "canceled"
        # What an SDK does when the first answer was lost: it must get that answer, not an error.
        assert retried.status_code == 200, retried.text
        assert retried.json() == first.json() and retried.headers.get("idempotent-replayed") == "true"


BAD_CREATES = [
    ({"amount": "1.5", "currency": "vnd"}, "amount"),
    ({"amount": "1.0", "currency": "vnd"}, "amount"),
    ({"amount": True, "currency": "vnd"}, "amount"),
    ({"amount": 1.5, "currency": "vnd"}, "amount"),
    ({"amount": -5, "currency": "vnd"}, "amount"),
    ({"amount": 0, "currency": "vnd"}, "amount"),
    ({"amount": 10_000_000_000, "currency": "vnd"}, "amount"),  # over VNPay's 12-digit vnp_Amount
    ({"amount": 10**30, "currency": "vnd"}, "amount"),
    ({"amount": 1000, "currency": "usd"}, "currency"),
    ({"amount": 1000, "currency": 704}, "currency"),
    ({"amount": 1000, "currency": "vnd", "payment_method_types": ["card"]}, "payment_method_types"),
    ({"amount": 1000, "currency": "vnd", "payment_method_types": []}, "payment_method_types"),
    ({"amount": 1000, "currency": "vnd", "payment_method_types": "vnpay"}, "payment_method_types"),
    ({"amount": 1000, "currency": "vnd", "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
    ({"amount": 1000, "currency": "vnd", "metadata": {"k" * 41: "v"}}, "metadata[" + "k" * 41 + "]"),
    ({"amount": 1000, "currency": "vnd", "metadata": {"k": "v" * 501}}, "metadata[k]"),
    ({"amount": 1000, "currency": "vnd", "metadata": {"a\x00b": "v"}}, "metadata[a\x00b]"),
    ({"amount": 1000, "currency": "vnd", "expires_at": 10**20}, "expires_at"),
    ({"amount": 1000, "currency": "vnd", "expires_at": 10**12}, "expires_at"),
    ({"amount": 1000, "currency": "vnd", "expires_at": -10**12}, "expires_at"),
]


async def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(service_url, merchant):
    async with httpx.AsyncClient(base_url=service_url, headers=merchant.key_headers, timeout=60) as http:
        intent = (await http.post("/v1/payment_intents", json={"amount": 1000, "currency": "vnd",
                                                               "metadata": {f"a{i}": "v" for i in range(40)}})).json()
        endpoint = (await http.post("/v1/webhook_endpoints", json={
            "url": "http://127.0.0.1:9/h", "enabled_events": ["*"], "metadata": {f"a{i}": "v" for i in range(40)}})).json()
        cases = [("/v1/payment_intents", body, param) for body, param in BAD_CREATES] + [
            ("/v1/refunds", {"payment_intent": intent["id"], "amount": "1.5"}, "amount"),
            ("/v1/refunds", {"payment_intent": intent["id"], "amount": True}, "amount"),
            # Stripe's 50 keys hold for the merged metadata too, and the param names the field plainly
            (f"/v1/payment_intents/{intent['id']}", {"metadata": {f"b{i}": "v" for i in range(11)}}, "metadata"),
            (f"/v1/payment_intents/{intent['id']}", {"metadata": {"k" * 41: "v"}}, "metadata[" + "k" * 41 + "]"),
            (f"/v1/webhook_endpoints/{endpoint['id']}", {"metadata": {f"b{i}": "v" for i in range(11)}}, "metadata"),
        ]
        failures = []
        for path, body, param in cases:
            answer = await http.post(path, json=body)
            error = answer.json().get("error", {}) if answer.headers["content-type"].startswith("application/json") else {}
            if answer.status_code != 400 or error.get("param") != param:
                failures.append((path, str(body)[:60], answer.status_code, error.get("param")))
        assert failures == []
        listed = (await http.get("/v1/payment_intents", params={"limit": 100})).json()["data"]
        assert [i["id"] for i in listed] == [intent["id"]]  # nothing else was created
        assert len((await http.get(f"/v1/payment_intents/{intent['id']}")).json()["metadata"]) == 40
        assert len((await http.get(f"/v1/webhook_endpoints/{endpoint['id']}")).json()["metadata"]) == 40


async def test_a_webhook_attempt_is_logged_without_crashing_the_worker(mongo, unique):
    from services.payments import store, webhooks

    db = mongo[f"pay_webhooks_{unique}"]
    await db[store.ENDPOINTS].insert_one({"_id": "we_1", "url": "http://hooks.invalid/h", "status": "enabled",
                                          "secret": "whsec_x", "merchant_id": "mch_1"})
    await db[store.EVENTS].insert_one({"_id": "evt_1", "type": "payment_intent.created", "merchant_id": "mch_1",
                                       "object": {"id": "pi_1"}, "created": webhooks.utcnow(),
                                       "api_version": store.API_VERSION, "pending_webhooks": 1})
    await db[store.DELIVERIES].insert_one({"_id": "whd_1", "event_id": "evt_1", "endpoint_id": "we_1",
                                           "status": "pending", "attempts": 0, "next_attempt_at": webhooks.utcnow(),
                                           "log": []})
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    try:
        assert await webhooks.deliver_due(db, http, max_attempts=3, base_seconds=1) == 1
    finally:
        await http.aclose()
    done = await db[store.DELIVERIES].find_one({"_id": "whd_1"})
    assert done["status"] == "succeeded" and done["log"][0]["status_code"] == 200


async def test_a_refund_whose_vnpay_answer_was_lost_is_never_sent_twice(mongo, unique):
    """VNPay refunded, then the process died before recording it: when the lease runs out the worker
    must hold the refund for review, not send it to VNPay again (that would refund the money twice)."""
    from datetime import timedelta

    from shared.outbox import Outbox

    from services.payments import refunds, store
    from services.payments.vnpay import RefundResult

    db = mongo[f"pay_refund_lost_{unique}"]
    now = store.utcnow()
    await db[store.INTENTS].insert_one({
        "_id": "pi_LOST1", "merchant_id": "mch_1", "amount": 90000, "amount_received": 90000,
        "amount_refunded": 40000, "status": "succeeded", "payment_method": "vnpay",
        "payment_method_details": {"type": "vnpay", "vnpay": {"transaction_no": "14422574"}},
        "vnpay_attempts": [{"txn_ref": "LOST1A01", "create_date": "20250701120000", "result": "paid"}]})
    await db[store.REFUNDS].insert_one({
        "_id": "re_LOST1", "merchant_id": "mch_1", "payment_intent_id": "pi_LOST1", "amount": 40000,
        "status": "pending", "created": now, "payment_method": "vnpay", "process_after": now - timedelta(seconds=1),
        "full": False, "metadata": {}})

    class VNPay:
        calls = 0

        async def refund(self, **kwargs):
            VNPay.calls += 1
            return RefundResult(response_code="00", message="ok", transaction_no="99887766", raw={})

    class DiesBeforeRecording:
        async def transaction(self, fn):
            raise ConnectionError("the process stops here")

    providers = store.Providers(base_url="http://127.0.0.1", vnpay=VNPay())
    try:
        await refunds.process_pending(db, DiesBeforeRecording(), providers)
    except ConnectionError:
        pass
    assert VNPay.calls == 1
    # The lease runs out; another replica's worker takes the refund over.
    await db[store.REFUNDS].update_one({"_id": "re_LOST1"}, {"$set": {"process_after": now - timedelta(seconds=1)}})
    await refunds.process_pending(db, Outbox(mongo, db, source="/tests/refunds"), providers)
    assert VNPay.calls == 1
    held = await db[store.REFUNDS].find_one({"_id": "re_LOST1"})
    assert held["status"] == "pending" and held["review_reason"] == "provider_outcome_unknown"
    assert held["process_after"] > store.utcnow() + timedelta(days=30)


async def test_a_keyed_request_that_failed_half_way_is_not_done_again_on_retry(mongo, unique):
    """The work wrote something (a refund reserved, maybe sent) and then failed unexpectedly: a retry with
    the same Idempotency-Key must not run it a second time (Stripe keeps such results too)."""
    from starlette.requests import Request

    from shared.auth import Principal

    from services.payments.api.idempotency import run_once

    db = mongo[f"pay_idem_{unique}"]
    principal = Principal(subject="key:mch_1", role="merchant", merchant_id="mch_1", via="api_key")
    runs = []

    async def work():
        runs.append(1)
        raise RuntimeError("database went away after the refund was reserved")

    def request() -> Request:
        return Request({"type": "http", "method": "POST", "path": "/v1/refunds", "query_string": b"",
                        "headers": [(b"idempotency-key", b"refund-once")]})

    for _ in range(2):
        try:
            answer = await run_once(request(), db, principal, {"payment_intent": "pi_1"}, work)
        except RuntimeError:
            continue
        assert answer.status_code == 500 and answer.headers["idempotent-replayed"] == "true"
    assert len(runs) == 1
