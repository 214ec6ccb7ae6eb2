"""VNPay's IPN, signed by the test's own signer: every RspCode, in VNPay's order of checks."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlsplit

import httpx

from services.payments import settlement, store
from services.payments.vnpay import VNPayClient, VNPayConfig
from services.payments.tests.helpers import signed


def attempt_of(intent: dict) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(intent["next_action"]["redirect_to_url"]["url"]).query))


def ipn_params(attempt: dict[str, str], *, amount: str | None = None, response: str = "00", status: str = "00",
               transaction_no: str = "38340915") -> dict[str, str]:
    return {"vnp_Amount": amount or attempt["vnp_Amount"], "vnp_BankCode": "NCB", "vnp_BankTranNo": f"VNP{transaction_no}",
            "vnp_CardType": "ATM", "vnp_OrderInfo": attempt["vnp_OrderInfo"], "vnp_PayDate": "20250701143210",
            "vnp_ResponseCode": response, "vnp_TmnCode": attempt["vnp_TmnCode"], "vnp_TransactionNo": transaction_no,
            "vnp_TransactionStatus": status, "vnp_TxnRef": attempt["vnp_TxnRef"]}


async def new_intent(http: httpx.AsyncClient, merchant, amount: int = 150000) -> dict:
    answer = await http.post("/v1/payment_intents", headers=merchant.key_headers,
                             json={"amount": amount, "currency": "vnd", "payment_method_types": ["vnpay"]})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def ipn(http: httpx.AsyncClient, params: dict[str, str]) -> str:
    answer = await http.get("/v1/vnpay/ipn", params=params)
    assert answer.status_code == 200
    return answer.json()["RspCode"]


async def test_every_rspcode_in_vnpay_order(api_url, merchant, vnpay_env):
    secret = vnpay_env["VNPAY_HASH_SECRET"]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        intent = await new_intent(http, merchant)
        attempt = attempt_of(intent)
        assert attempt["vnp_Amount"] == "15000000" and attempt["vnp_Version"] == "2.1.0"
        good = signed(ipn_params(attempt), secret)

        # 97: a tampered field, a missing hash, a hash made with another secret
        assert await ipn(http, {**good, "vnp_Amount": "100"}) == "97"
        assert await ipn(http, {k: v for k, v in good.items() if k != "vnp_SecureHash"}) == "97"
        assert await ipn(http, signed(ipn_params(attempt), "not-the-secret")) == "97"
        # 01: correctly signed, but no such order
        assert await ipn(http, signed({**ipn_params(attempt), "vnp_TxnRef": "NOSUCHORDER01"}, secret)) == "01"
        # 04: correctly signed, paid, but not the intent's amount: flagged for refund, intent untouched
        assert await ipn(http, signed(ipn_params(attempt, amount="14000000", transaction_no="555"), secret)) == "04"
        still = (await http.get(f"/v1/payment_intents/{intent['id']}", headers=merchant.key_headers)).json()
        assert still["status"] == "requires_action" and still["amount_received"] == 0
        flagged = (await http.get("/v1/balance/flagged_payments", headers=merchant.key_headers)).json()["data"]
        assert [(f["kind"], f["amount"], f["payment_intent"]) for f in flagged] == \
            [("amount_mismatch", 140000, intent["id"])]
        # 00: the real payment settles the intent
        assert await ipn(http, good) == "00"
        paid = (await http.get(f"/v1/payment_intents/{intent['id']}", headers=merchant.key_headers)).json()
        assert paid["status"] == "succeeded" and paid["amount_received"] == 150000
        assert paid["payment_method_details"]["vnpay"]["transaction_no"] == "38340915"
        events_before = (await http.get("/v1/events", headers=merchant.key_headers, params={"limit": 100})).json()
        # 02: the same IPN again (VNPay retries) changes nothing
        assert await ipn(http, good) == "02"
        assert (await http.get(f"/v1/payment_intents/{intent['id']}", headers=merchant.key_headers)).json() == paid
        events_after = (await http.get("/v1/events", headers=merchant.key_headers, params={"limit": 100})).json()
        assert events_after["data"] == events_before["data"]
        assert [e["type"] for e in events_after["data"]].count("payment_intent.succeeded") == 1
        balance = (await http.get("/v1/balance", headers=merchant.key_headers)).json()
        assert balance["available"] == [{"amount": 150000, "currency": "vnd"}]


async def test_declined_payment_fails_the_attempt_and_a_new_attempt_can_pay(api_url, merchant, vnpay_env):
    secret = vnpay_env["VNPAY_HASH_SECRET"]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        intent = await new_intent(http, merchant, 80000)
        first = attempt_of(intent)
        # VNPay's shape for a customer who cancelled: code 24, status 02, transaction number 0
        declined = signed(ipn_params(first, response="24", status="02", transaction_no="0"), secret)
        assert await ipn(http, declined) == "00"
        failed = (await http.get(f"/v1/payment_intents/{intent['id']}", headers=merchant.key_headers)).json()
        assert failed["status"] == "requires_payment_method"
        assert failed["last_payment_error"]["code"] == "vnpay_24"
        assert await ipn(http, declined) == "02"
        # A paid answer with a failed transaction status is not a payment either
        retried = (await http.post(f"/v1/payment_intents/{intent['id']}/confirm", headers=merchant.key_headers)).json()
        second = attempt_of(retried)
        assert retried["status"] == "requires_action" and second["vnp_TxnRef"] != first["vnp_TxnRef"]
        assert await ipn(http, signed(ipn_params(second, response="00", status="01"), secret)) == "00"
        again = (await http.post(f"/v1/payment_intents/{intent['id']}/confirm", headers=merchant.key_headers)).json()
        third = attempt_of(again)
        assert await ipn(http, signed(ipn_params(third, transaction_no="7001"), secret)) == "00"
        paid = (await http.get(f"/v1/payment_intents/{intent['id']}", headers=merchant.key_headers)).json()
        assert paid["status"] == "succeeded"
        types = [e["type"] for e in (await http.get("/v1/events", headers=merchant.key_headers,
                                                    params={"limit": 100})).json()["data"]]
        assert types.count("payment_intent.payment_failed") == 2 and types.count("payment_intent.succeeded") == 1


async def test_unexpected_error_answers_99(vnpay_env):
    class BrokenOutbox:
        async def transaction(self, fn):
            raise RuntimeError("database unavailable")

    secret = vnpay_env["VNPAY_HASH_SECRET"]
    client = VNPayClient(VNPayConfig(pay_url="http://vnpay.invalid/pay", api_url="http://vnpay.invalid/api",
                                     tmn_code=vnpay_env["VNPAY_TMN_CODE"], hash_secret=secret,
                                     return_url="http://127.0.0.1/return"))
    providers = store.Providers(base_url="http://127.0.0.1", vnpay=client)
    params = signed({"vnp_Amount": "100000", "vnp_ResponseCode": "00", "vnp_TransactionStatus": "00",
                     "vnp_TmnCode": vnpay_env["VNPAY_TMN_CODE"], "vnp_TxnRef": "X1"}, secret)
    answer = await settlement.handle_ipn(BrokenOutbox(), providers, params)
    await client.close()
    assert answer.value == "99"


async def test_double_ipn_under_concurrency_settles_once(service_url, merchant, vnpay_env):
    secret = vnpay_env["VNPAY_HASH_SECRET"]
    async with httpx.AsyncClient(base_url=service_url, timeout=60) as http:
        intent = await new_intent(http, merchant, 50000)
        good = signed(ipn_params(attempt_of(intent)), secret)
        answers = await asyncio.gather(*(ipn(http, good) for _ in range(25)))
        assert sorted(set(answers)) == ["00", "02"] and answers.count("00") == 1
        ledger = (await http.get("/v1/balance_transactions", headers=merchant.key_headers,
                                 params={"payment_intent": intent["id"]})).json()["data"]
        assert len(ledger) == 1 and ledger[0]["amount"] == 50000
        events = (await http.get("/v1/events", headers=merchant.key_headers,
                                 params={"type": "payment_intent.succeeded"})).json()["data"]
        assert len(events) == 1


async def test_return_page_marks_processing_until_the_ipn(api_url, merchant, vnpay_env):
    secret = vnpay_env["VNPAY_HASH_SECRET"]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        intent = await new_intent(http, merchant, 60000)
        params = signed(ipn_params(attempt_of(intent)), secret)
        page = await http.get("/v1/vnpay/return", params=params)
        assert page.status_code == 200 and "Thanh toán thành công" in page.text
        seen = (await http.get(f"/v1/payment_intents/{intent['id']}", headers=merchant.key_headers)).json()
        assert seen["status"] == "processing"
        forged = await http.get("/v1/vnpay/return", params={**params, "vnp_Amount": "1"})
        assert forged.status_code == 400
        assert await ipn(http, params) == "00"
        done = (await http.get(f"/v1/payment_intents/{intent['id']}", headers=merchant.key_headers)).json()
        assert done["status"] == "succeeded"


async def test_paid_ipn_after_cancel_is_flagged_for_refund_and_the_intent_stays_canceled(api_url, merchant, vnpay_env):
    secret = vnpay_env["VNPAY_HASH_SECRET"]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        intent = await new_intent(http, merchant, 70000)
        canceled = await http.post(f"/v1/payment_intents/{intent['id']}/cancel", headers=merchant.key_headers)
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        late = signed(ipn_params(attempt_of(intent), transaction_no="9101"), secret)
        assert await ipn(http, late) == "00"  # VNPay has the money: we acknowledge it and flag it
        assert await ipn(http, late) == "02"  # VNPay's retry changes nothing
        seen = (await http.get(f"/v1/payment_intents/{intent['id']}", headers=merchant.key_headers)).json()
        assert seen["status"] == "canceled" and seen["amount_received"] == 0
        flagged = (await http.get("/v1/balance/flagged_payments", headers=merchant.key_headers)).json()["data"]
        assert [(f["kind"], f["amount"], f["payment_intent"], f["status"]) for f in flagged] == \
            [("late_payment", 70000, intent["id"], "refund_required")]
        balance = (await http.get("/v1/balance", headers=merchant.key_headers)).json()
        assert balance["available"] == [{"amount": 0, "currency": "vnd"}]
