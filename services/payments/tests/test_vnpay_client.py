"""The VNPay client against VNPay's documented rules, checked with the test's own signer."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from services.payments.api.requests import nest
from services.payments.tests.helpers import vnpay_sign
from services.payments.vnpay import VNPayClient, VNPayConfig, VNPayError, VNPayUnreachable

SECRET = "TESTSECRETTESTSECRETTESTSECRET42"
QUERYDR_RESPONSE = ("vnp_ResponseId", "vnp_Command", "vnp_ResponseCode", "vnp_Message", "vnp_TmnCode", "vnp_TxnRef",
                    "vnp_Amount", "vnp_BankCode", "vnp_PayDate", "vnp_TransactionNo", "vnp_TransactionType",
                    "vnp_TransactionStatus", "vnp_OrderInfo", "vnp_PromotionCode", "vnp_PromotionAmount")
QUERYDR_REQUEST = ("vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TxnRef", "vnp_TransactionDate",
                   "vnp_CreateDate", "vnp_IpAddr", "vnp_OrderInfo")


def pipe(values: dict, fields: tuple[str, ...]) -> str:
    data = "|".join(str(values.get(f, "")) for f in fields)
    return hmac.new(SECRET.encode(), data.encode(), hashlib.sha512).hexdigest()


def client(handler=None) -> VNPayClient:
    transport = httpx.MockTransport(handler or (lambda r: httpx.Response(500)))
    return VNPayClient(VNPayConfig(pay_url="https://sandbox.vnpayment.vn/paymentv2/vpcpay.html",
                                   api_url="https://sandbox.vnpayment.vn/merchant_webapi/api/transaction",
                                   tmn_code="QTTEST01", hash_secret=SECRET, return_url="https://shop.vn/return?src=app",
                                   attempts=2), http=httpx.AsyncClient(transport=transport))


def test_payment_url_carries_every_field_signed():
    created = datetime(2025, 7, 1, 7, 30, tzinfo=timezone.utc)
    url = client().payment_url(txn_ref="ORD20250701A1", amount=150000, order_info="Thanh toan don hang ORD1",
                               created=created, expires=created.replace(minute=45), ip_address="10.0.0.5",
                               bank_code="VNPAYQR")
    params = dict(parse_qsl(urlsplit(url).query))
    assert params == {
        "vnp_Version": "2.1.0", "vnp_Command": "pay", "vnp_TmnCode": "QTTEST01", "vnp_Amount": "15000000",
        "vnp_CurrCode": "VND", "vnp_TxnRef": "ORD20250701A1", "vnp_OrderInfo": "Thanh toan don hang ORD1",
        "vnp_OrderType": "other", "vnp_Locale": "vn", "vnp_ReturnUrl": "https://shop.vn/return?src=app",
        "vnp_IpAddr": "10.0.0.5", "vnp_CreateDate": "20250701143000", "vnp_ExpireDate": "20250701144500",
        "vnp_BankCode": "VNPAYQR", "vnp_SecureHash": vnpay_sign(params, SECRET)}
    assert "vnp_ReturnUrl=https%3A%2F%2Fshop.vn%2Freturn%3Fsrc%3Dapp" in url  # quote_plus, as VNPay signs it


async def test_querydr_is_signed_and_its_answer_verified():
    seen = []

    def vnpay(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        assert body["vnp_SecureHash"] == pipe(body, QUERYDR_REQUEST)
        answer = {"vnp_ResponseId": "r1", "vnp_Command": "querydr", "vnp_ResponseCode": "00",
                  "vnp_Message": "Yêu cầu thành công", "vnp_TmnCode": "QTTEST01", "vnp_TxnRef": body["vnp_TxnRef"],
                  "vnp_Amount": "15000000", "vnp_BankCode": "NCB", "vnp_PayDate": "20250701143210",
                  "vnp_TransactionNo": "38340915", "vnp_TransactionType": "01", "vnp_TransactionStatus": "00",
                  "vnp_OrderInfo": body["vnp_OrderInfo"], "vnp_PromotionCode": "", "vnp_PromotionAmount": ""}
        return httpx.Response(200, json={**answer, "vnp_SecureHash": pipe(answer, QUERYDR_RESPONSE)})

    result = await client(vnpay).querydr(txn_ref="ORD1", transaction_date="20250701143000", order_info="Truy van")
    assert result.paid and result.amount == 150000 and result.transaction_no == "38340915"
    assert seen[0]["vnp_Command"] == "querydr" and len(seen[0]["vnp_RequestId"]) == 32

    def forged(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"vnp_ResponseCode": "00", "vnp_TransactionStatus": "00",
                                         "vnp_SecureHash": "00" * 64})

    with pytest.raises(VNPayError):
        await client(forged).querydr(txn_ref="ORD1", transaction_date="20250701143000", order_info="Truy van")


async def test_a_refund_that_may_have_reached_vnpay_is_not_sent_twice():
    calls = []

    def slow(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(VNPayError) as unknown:
        await client(slow).refund(txn_ref="ORD1", transaction_date="20250701143000", amount=50000, full=False,
                                  transaction_no="38340915", created_by="ops", order_info="Hoan tien")
    assert len(calls) == 1 and not isinstance(unknown.value, VNPayUnreachable)

    def refused(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(VNPayUnreachable):
        await client(refused).refund(txn_ref="ORD1", transaction_date="20250701143000", amount=50000, full=True,
                                     transaction_no=None, created_by="ops", order_info="Hoan tien")
    assert len(calls) == 3  # never sent, so retried


def test_stripe_bracket_keys():
    pairs = [("amount", "1000"), ("metadata[order_id]", "ord_1"), ("payment_method_types[]", "vnpay"),
             ("payment_method_types[]", "vietqr"), ("expand[0]", "latest_charge"), ("a[b][c]", "d")]
    assert nest(pairs) == {"amount": "1000", "metadata": {"order_id": "ord_1"},
                           "payment_method_types": ["vnpay", "vietqr"], "expand": ["latest_charge"],
                           "a": {"b": {"c": "d"}}}
