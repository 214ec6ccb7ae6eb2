"""The ledger: balanced entries per capture and refund; balance and daily settlement reconcile to the intents."""

from __future__ import annotations

import httpx

from shared.clock import to_vn, utcnow

from services.payments import domain
from services.payments.tests.test_flow import pay_with_emulator


def test_entries_are_balanced():
    for entries in (domain.capture_entries("mch_1", "vnpay", 150000), domain.refund_entries("mch_1", "vietqr", 1)):
        assert domain.balanced(entries) and sum(e.amount for e in entries) == 0


async def test_balance_and_settlement_reconcile_to_intents(stack, api_url, merchant):
    async with httpx.AsyncClient(base_url=api_url, headers=merchant.key_headers, timeout=60) as http:
        intents = []
        for amount, method in ((120000, "vnpay"), (35000, "vietqr"), (999999, "vnpay"), (5000, "vietqr")):
            intent = (await http.post("/v1/payment_intents", json={"amount": amount, "currency": "vnd",
                                                                   "payment_method_types": [method]})).json()
            if method == "vnpay":
                await pay_with_emulator(stack, intent["next_action"]["redirect_to_url"]["url"])
            else:
                await http.post(f"{stack.config.emulator_url}/_emulator/vietqr/scan",
                                json={"payload": intent["next_action"]["vietqr_display_qr_code"]["data"]})
            intents.append(intent["id"])
        unpaid = (await http.post("/v1/payment_intents", json={"amount": 1000, "currency": "vnd"})).json()
        for intent_id, amount in ((intents[0], 20000), (intents[1], 35000), (intents[2], 1)):
            refund = await http.post("/v1/refunds", json={"payment_intent": intent_id, "amount": amount})
            assert refund.json()["status"] == "succeeded", refund.text

        listed = (await http.get("/v1/payment_intents", params={"limit": 100})).json()["data"]
        assert unpaid["id"] in [i["id"] for i in listed]
        received = sum(i["amount_received"] for i in listed)
        refunded = sum(i["amount_refunded"] for i in listed)
        assert (received, refunded) == (1159999, 55001)
        balance = (await http.get("/v1/balance")).json()["available"][0]["amount"]
        assert balance == received - refunded == 1104998

        transactions = (await http.get("/v1/balance_transactions", params={"limit": 100})).json()["data"]
        assert len(transactions) == 7
        assert all(sum(e["amount"] for e in t["entries"]) == 0 for t in transactions)
        assert sum(t["net"] for t in transactions) == balance

        today = to_vn(utcnow()).date().isoformat()
        report = (await http.get("/v1/settlement_reports", params={"date_from": today})).json()["data"]
        day = next(r for r in report if r["date"] == today)
        assert (day["gross"], day["refunded"], day["net"]) == (received, refunded, balance)
        assert (day["payments"], day["refunds"], day["closing_balance"]) == (4, 3, balance)
        bad = await http.get("/v1/settlement_reports", params={"date_from": "yesterday"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "date_from"
