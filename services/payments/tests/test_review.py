"""What people resolve: refunds held for review (VNPay's answer was lost) and flagged payments."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from shared.outbox import Outbox

from services.payments import refunds, store
from services.payments.tests.helpers import signed, wait_for
from services.payments.tests.test_flow import pay_with_emulator
from services.payments.tests.test_ipn import attempt_of, ipn_params, new_intent
from services.payments.vnpay import VNPayClient, VNPayConfig

SERVICE_DB = "qt_payments"


class DiesBeforeRecording:
    """An outbox whose process stops right after VNPay answered: the answer is never recorded."""

    async def transaction(self, fn):
        raise ConnectionError("the process stops here")


def vnpay_client(vnpay_env: dict[str, str]) -> VNPayClient:
    return VNPayClient(VNPayConfig(pay_url=vnpay_env["VNPAY_PAY_URL"], api_url=vnpay_env["VNPAY_API_URL"],
                                   tmn_code=vnpay_env["VNPAY_TMN_CODE"], hash_secret=vnpay_env["VNPAY_HASH_SECRET"],
                                   return_url=vnpay_env["VNPAY_RETURN_URL"]))


async def paid_intent(stack, http: httpx.AsyncClient, amount: int) -> dict:
    intent = (await http.post("/v1/payment_intents", json={"amount": amount, "currency": "vnd",
                                                           "payment_method_types": ["vnpay"]})).json()
    await pay_with_emulator(stack, intent["next_action"]["redirect_to_url"]["url"])

    async def succeeded():
        seen = (await http.get(f"/v1/payment_intents/{intent['id']}")).json()
        return seen if seen["status"] == "succeeded" else None
    return await wait_for(succeeded)


async def held_refund(mongo, http: httpx.AsyncClient, vnpay_env, intent_id: str, amount: int, *,
                      reached_vnpay: bool) -> dict:
    """A refund whose process died after marking it sent (and, if `reached_vnpay`, after VNPay refunded);
    once the lease runs out the service's worker holds it for review, as in production."""
    db = mongo[SERVICE_DB]
    intent = await store.find_intent(db, intent_id, None)
    refund = await Outbox(mongo, db, source="/tests/review").transaction(lambda tx: store.reserve_refund(
        tx, intent, amount=amount, reason=None, metadata={}, claimed=True))
    if reached_vnpay:
        client = vnpay_client(vnpay_env)
        try:
            with pytest.raises(ConnectionError):
                await refunds.execute(db, DiesBeforeRecording(), store.Providers(base_url="http://x", vnpay=client),
                                      refund)
        finally:
            await client.close()
    else:
        # Died between marking it sent and sending it.
        await db[store.REFUNDS].update_one({"_id": refund["_id"]}, {"$set": {"sent_to_provider_at": store.utcnow()}})
    await db[store.REFUNDS].update_one({"_id": refund["_id"]},
                                       {"$set": {"process_after": store.utcnow() - timedelta(seconds=1)}})

    async def held():
        seen = (await http.get(f"/v1/refunds/{refund['_id']}")).json()
        return seen if seen["review_reason"] == "provider_outcome_unknown" else None
    seen = await wait_for(held)
    assert seen["status"] == "pending"
    return seen


async def ledger_of(http: httpx.AsyncClient, intent_id: str) -> list[dict]:
    return (await http.get("/v1/balance_transactions", params={"payment_intent": intent_id})).json()["data"]


async def events_of(http: httpx.AsyncClient, kind: str, refund_id: str) -> list[dict]:
    data = (await http.get("/v1/events", params={"type": kind, "limit": 100})).json()["data"]
    return [e for e in data if e["data"]["object"]["id"] == refund_id]


async def test_held_refund_that_reached_vnpay_is_settled_succeeded_by_querydr(stack, mongo, api_url, merchant,
                                                                           admin_headers, vnpay_env):
    async with httpx.AsyncClient(base_url=api_url, headers=merchant.key_headers, timeout=60) as http:
        intent = await paid_intent(stack, http, 100000)
        refund = await held_refund(mongo, http, vnpay_env, intent["id"], 40000, reached_vnpay=True)
        # The merchant sees the review state but may not resolve it.
        denied = await http.post(f"/v1/refunds/{refund['id']}/reconcile", json={})
        assert denied.status_code == 403, denied.text

        answer = await http.post(f"/v1/refunds/{refund['id']}/reconcile", json={}, headers=admin_headers)
        assert answer.status_code == 200, answer.text
        settled = answer.json()
        assert settled["status"] == "succeeded" and settled["review_reason"] is None
        assert settled["review"]["method"] == "querydr" and settled["review"]["reason"] == "provider_outcome_unknown"
        assert settled["review"]["resolved_by"] == "admin-tests"
        assert settled["review"]["vnpay"]["transaction_type"] == "03"
        # Again: nothing more happens.
        again = await http.post(f"/v1/refunds/{refund['id']}/reconcile", json={}, headers=admin_headers)
        assert again.status_code == 200 and again.json()["status"] == "succeeded"

        ledger = await ledger_of(http, intent["id"])
        assert sorted((t["type"], t["amount"]) for t in ledger) == [("charge", 100000), ("refund", -40000)]
        doc = await mongo[SERVICE_DB][store.LEDGER].find_one({"source": refund["id"]})
        assert sum(e["amount"] for e in doc["entries"]) == 0
        assert (await http.get("/v1/balance")).json()["available"][0]["amount"] == 60000
        assert (await http.get(f"/v1/payment_intents/{intent['id']}")).json()["amount_refunded"] == 40000
        assert len(await wait_for(lambda: events_of(http, "refund.succeeded", refund["id"]))) == 1
        # The rest is still refundable, and VNPay agrees.
        rest = await http.post("/v1/refunds", json={"payment_intent": intent["id"]})
        assert rest.status_code == 200 and rest.json()["status"] == "succeeded" and rest.json()["amount"] == 60000


async def test_held_refund_that_never_reached_vnpay_fails_once_and_is_refundable_again(
        stack, mongo, api_url, merchant, admin_headers, vnpay_env):
    async with httpx.AsyncClient(base_url=api_url, headers=merchant.key_headers, timeout=60) as http:
        intent = await paid_intent(stack, http, 80000)
        refund = await held_refund(mongo, http, vnpay_env, intent["id"], 80000, reached_vnpay=False)
        assert (await http.get(f"/v1/payment_intents/{intent['id']}")).json()["amount_refunded"] == 80000

        answers = await asyncio.gather(*(http.post(f"/v1/refunds/{refund['id']}/reconcile", json={},
                                                   headers=admin_headers) for _ in range(6)))
        assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
        assert {a.json()["status"] for a in answers} == {"failed"}
        failed = answers[0].json()
        assert failed["failure_reason"] == "vnpay_no_refund"
        assert failed["review"]["verdict"] == "vnpay_reports_no_refund"

        # Settled once: one event, no ledger entry, the amount given back to the intent.
        assert len(await wait_for(lambda: events_of(http, "refund.failed", refund["id"]))) == 1
        await asyncio.sleep(0.5)
        assert len(await events_of(http, "refund.failed", refund["id"])) == 1
        assert [t["type"] for t in await ledger_of(http, intent["id"])] == ["charge"]
        assert (await http.get(f"/v1/payment_intents/{intent['id']}")).json()["amount_refunded"] == 0
        again = await http.post("/v1/refunds", json={"payment_intent": intent["id"]})
        assert again.status_code == 200 and again.json()["status"] == "succeeded" and again.json()["amount"] == 80000
        assert (await http.get("/v1/balance")).json()["available"][0]["amount"] == 0


async def test_inconclusive_querydr_changes_nothing_and_an_admin_settles_by_hand(
        stack, mongo, api_url, merchant, admin_headers, vnpay_env):
    async with httpx.AsyncClient(base_url=api_url, headers=merchant.key_headers, timeout=60) as http:
        intent = await paid_intent(stack, http, 100000)
        first = await held_refund(mongo, http, vnpay_env, intent["id"], 30000, reached_vnpay=True)
        second = await held_refund(mongo, http, vnpay_env, intent["id"], 20000, reached_vnpay=True)
        url = f"/v1/refunds/{first['id']}/reconcile"

        # VNPay reports "partly refunded", never how much: two refunds in doubt cannot be told apart.
        unknown = await http.post(url, json={}, headers=admin_headers)
        assert unknown.status_code == 409, unknown.text
        assert unknown.json()["error"]["code"] == "refund_outcome_unknown"
        assert unknown.json()["error"]["reason"] == "other_refunds_in_doubt"
        still = (await http.get(f"/v1/refunds/{first['id']}")).json()
        assert still["status"] == "pending" and still["review_reason"] == "provider_outcome_unknown"

        # VNPay's support confirmed it by phone.
        no_note = await http.post(url, json={"outcome": "succeeded"}, headers=admin_headers)
        assert no_note.status_code == 400, no_note.text
        bad = await http.post(url, json={"outcome": "maybe", "note": "x"}, headers=admin_headers)
        assert bad.status_code == 400, bad.text
        note = "Tổng đài VNPay xác nhận đã hoàn / VNPay support confirmed by phone"
        manual = await http.post(url, json={"outcome": "succeeded", "note": note}, headers=admin_headers)
        assert manual.status_code == 200, manual.text
        review = manual.json()["review"]
        assert manual.json()["status"] == "succeeded"
        assert (review["method"], review["note"], review["resolved_by"]) == ("manual", note, "admin-tests")
        # Idempotent with the same outcome, refused with the other.
        same = await http.post(url, json={"outcome": "succeeded", "note": note}, headers=admin_headers)
        assert same.status_code == 200 and same.json()["review"]["resolved_at"] == review["resolved_at"]
        other = await http.post(url, json={"outcome": "failed", "note": "oops"}, headers=admin_headers)
        assert other.status_code == 409 and other.json()["error"]["code"] == "refund_already_settled"
        # The merchant sees neither who nor the note.
        seen = (await http.get(f"/v1/refunds/{first['id']}")).json()
        assert "review" not in seen and seen["review_reason"] is None

        # The second: VNPay still cannot say whether it was this one (another refund succeeded there).
        unknown = await http.post(f"/v1/refunds/{second['id']}/reconcile", json={}, headers=admin_headers)
        assert unknown.status_code == 409 and unknown.json()["error"]["reason"] == "vnpay_refund_total_unknown"
        manual = await http.post(f"/v1/refunds/{second['id']}/reconcile",
                                 json={"outcome": "succeeded", "note": "VNPay portal shows 2 refunds"},
                                 headers=admin_headers)
        assert manual.status_code == 200 and manual.json()["status"] == "succeeded"
        assert sorted(t["amount"] for t in await ledger_of(http, intent["id"]) if t["type"] == "refund") == \
            [-30000, -20000]
        assert (await http.get("/v1/balance")).json()["available"][0]["amount"] == 50000


async def test_only_admins_reconcile_and_unknown_or_busy_refunds_are_refused(
        stack, mongo, api_url, merchant, admin_headers, issuer):
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        http.headers.update(merchant.key_headers)
        intent = await paid_intent(stack, http, 50000)
        db = mongo[SERVICE_DB]
        found = await store.find_intent(db, intent["id"], None)
        # Pending and claimed by a request sending it right now: not held, so not for people to decide.
        busy = await Outbox(mongo, db, source="/tests/review").transaction(lambda tx: store.reserve_refund(
            tx, found, amount=1000, reason=None, metadata={}, claimed=True))
        url = f"/v1/refunds/{busy['_id']}/reconcile"
        for role in ("shopper", "operator", "official"):
            token = issuer.issue(f"{role}-tests", role)
            answer = await http.post(url, json={}, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 403, (role, answer.text)
        as_person = await http.post(url, json={"outcome": "failed", "note": "x"},
                                    headers={"Authorization": f"Bearer {merchant.token}"})
        assert as_person.status_code == 403
        assert (await http.post(url, json={}, headers=admin_headers)).status_code == 409
        missing = await http.post("/v1/refunds/re_NOSUCHREFUND/reconcile", json={}, headers=admin_headers)
        assert missing.status_code == 404, missing.text
        # Leave nothing pending behind for the worker.
        await db[store.REFUNDS].update_one({"_id": busy["_id"]}, {"$set": {"process_after": store.utcnow()}})
        await wait_for(lambda: _status_is(http, busy["_id"], "succeeded"))


async def _status_is(http: httpx.AsyncClient, refund_id: str, status: str) -> bool:
    return (await http.get(f"/v1/refunds/{refund_id}")).json()["status"] == status


async def test_flagged_payments_are_resolved_once_and_filtered_by_status(api_url, merchant, admin_headers, vnpay_env,
                                                                         issuer):
    secret = vnpay_env["VNPAY_HASH_SECRET"]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for transaction_no, amount in (("71000001", "1000000"), ("71000002", "2000000")):
            intent = await new_intent(http, merchant, 50000)
            params = signed(ipn_params(attempt_of(intent), amount=amount, transaction_no=transaction_no), secret)
            assert (await http.get("/v1/vnpay/ipn", params=params)).json()["RspCode"] == "04"
        listed = (await http.get("/v1/balance/flagged_payments", headers=merchant.key_headers)).json()["data"]
        assert [(f["amount"], f["status"], f["resolution"]) for f in listed] == \
            [(20000, "refund_required", None), (10000, "refund_required", None)]
        flag = listed[1]["id"]
        url = f"/v1/balance/flagged_payments/{flag}/resolve"
        body = {"resolution": "refunded_outside", "note": "Đã chuyển khoản trả khách / transferred back"}

        assert (await http.post(url, json=body, headers=merchant.key_headers)).status_code == 403
        operator = {"Authorization": f"Bearer {issuer.issue('op-tests', 'operator')}"}
        assert (await http.post(url, json=body, headers=operator)).status_code == 403
        assert (await http.post("/v1/balance/flagged_payments/flag_NOSUCH/resolve", json=body,
                                headers=admin_headers)).status_code == 404
        assert (await http.post(url, json={"resolution": "lost"}, headers=admin_headers)).status_code == 400

        answers = await asyncio.gather(*(http.post(url, json=body, headers=admin_headers) for _ in range(4)))
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        resolved = answers[0].json()
        assert resolved["status"] == "resolved"
        assert {a.json()["resolution"]["resolved_at"] for a in answers} == {resolved["resolution"]["resolved_at"]}
        assert (resolved["resolution"]["type"], resolved["resolution"]["note"],
                resolved["resolution"]["resolved_by"]) == ("refunded_outside", body["note"], "admin-tests")
        other = await http.post(url, json={**body, "resolution": "written_off"}, headers=admin_headers)
        assert other.status_code == 409 and other.json()["error"]["code"] == "flagged_payment_already_resolved"

        def ids(answer):
            return [f["id"] for f in answer.json()["data"]]
        open_ = await http.get("/v1/balance/flagged_payments", params={"status": "refund_required"},
                               headers=merchant.key_headers)
        done = await http.get("/v1/balance/flagged_payments", params={"status": "resolved"},
                              headers=merchant.key_headers)
        assert ids(open_) == [listed[0]["id"]] and ids(done) == [flag]
        assert "resolved_by" not in done.json()["data"][0]["resolution"]
        as_admin = await http.get("/v1/balance/flagged_payments", headers=admin_headers,
                                  params={"status": "resolved", "merchant": merchant.merchant_id})
        assert ids(as_admin) == [flag] and as_admin.json()["data"][0]["resolution"]["resolved_by"] == "admin-tests"
        bad = await http.get("/v1/balance/flagged_payments", params={"status": "done"}, headers=merchant.key_headers)
        assert bad.status_code == 400
