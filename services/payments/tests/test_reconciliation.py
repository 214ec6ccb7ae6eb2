"""Reconciliation: a lost IPN is recovered with querydr; an unpaid expired intent is closed; two replicas agree."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx

from shared.outbox import Outbox

from services.payments import reconciliation, store
from services.payments.tests.helpers import wait_for
from services.payments.tests.test_flow import pay_with_emulator
from services.payments.vnpay import VNPayClient, VNPayConfig


async def test_lost_ipn_is_settled_by_querydr_and_unpaid_intents_close(stack, api_url, merchant):
    async with httpx.AsyncClient(base_url=api_url, headers=merchant.key_headers, timeout=60) as http:
        soon = int(time.time()) + 6
        paid = (await http.post("/v1/payment_intents", json={"amount": 70000, "currency": "vnd",
                                                             "payment_method_types": ["vnpay"],
                                                             "expires_at": soon})).json()
        unpaid = (await http.post("/v1/payment_intents", json={"amount": 71000, "currency": "vnd",
                                                               "expires_at": soon})).json()
        # The customer pays, but every IPN is lost.
        await pay_with_emulator(stack, paid["next_action"]["redirect_to_url"]["url"], ipn_deliveries=0)
        assert (await http.get(f"/v1/payment_intents/{paid['id']}")).json()["status"] == "requires_action"

        async def settled():
            a = (await http.get(f"/v1/payment_intents/{paid['id']}")).json()
            b = (await http.get(f"/v1/payment_intents/{unpaid['id']}")).json()
            return (a, b) if a["status"] == "succeeded" and b["status"] == "canceled" else None
        a, b = await wait_for(settled, timeout=25)
        assert a["amount_received"] == 70000 and a["payment_method_details"]["type"] == "vnpay"
        assert b["cancellation_reason"] == "abandoned"
        # The IPN arriving late changes nothing.
        again = await http.post(f"{stack.config.emulator_url}/_emulator/transactions/"
                                f"{a['payment_method_details']['vnpay']['txn_ref']}/ipn")
        assert [x["rsp_code"] for d in again.json()["deliveries"] for x in d["attempts"]] == ["02"]


async def test_two_replicas_reconcile_one_intent_once(stack, mongo, api_url, merchant, vnpay_env):
    async with httpx.AsyncClient(base_url=api_url, headers=merchant.key_headers, timeout=60) as http:
        intent = (await http.post("/v1/payment_intents", json={"amount": 88000, "currency": "vnd",
                                                               "payment_method_types": ["vnpay"],
                                                               "expires_at": int(time.time()) + 7})).json()
        await pay_with_emulator(stack, intent["next_action"]["redirect_to_url"]["url"], ipn_deliveries=0)
        db = mongo["qt_payments"]
        outbox = Outbox(mongo, db, source="/tests/replica")
        clients = [VNPayClient(VNPayConfig(pay_url=vnpay_env["VNPAY_PAY_URL"], api_url=vnpay_env["VNPAY_API_URL"],
                                           tmn_code=vnpay_env["VNPAY_TMN_CODE"],
                                           hash_secret=vnpay_env["VNPAY_HASH_SECRET"],
                                           return_url=vnpay_env["VNPAY_RETURN_URL"])) for _ in range(2)]
        replicas = [store.Providers(base_url=api_url, vnpay=c) for c in clients]
        await asyncio.sleep(max(0.0, intent["expires_at"] - time.time()) + 0.5)
        # Two replicas here plus the service's own job race for the same intent.
        results = await asyncio.gather(*(reconciliation.reconcile_once(db, outbox, p, grace=timedelta(0))
                                         for p in replicas))
        for c in clients:
            await c.close()
        handled = [outcome for result in results for (intent_id, outcome) in result if intent_id == intent["id"]]
        assert len(handled) <= 1

        async def done():
            return (await http.get(f"/v1/payment_intents/{intent['id']}")).json()["status"] == "succeeded"
        await wait_for(done, timeout=20)
        events = (await http.get("/v1/events", params={"type": "payment_intent.succeeded"})).json()["data"]
        assert [e["data"]["object"]["id"] for e in events] == [intent["id"]]
        ledger = (await http.get("/v1/balance_transactions", params={"payment_intent": intent["id"]})).json()["data"]
        assert len(ledger) == 1
