"""End-to-end tests of the VNPay sandbox emulator against a real receiving server, signed independently."""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from deploy.vnpay_emulator.app import create_app
from deploy.vnpay_emulator.settings import EmulatorSettings

pytestmark = pytest.mark.asyncio

TMN = "QTTEST01"
SECRET = "TESTSECRETTESTSECRETTESTSECRET42"
BANK_SECRET = "TESTBANKSECRET"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
IPN_FIELDS = {
    "vnp_Amount", "vnp_BankCode", "vnp_BankTranNo", "vnp_CardType", "vnp_OrderInfo", "vnp_PayDate",
    "vnp_ResponseCode", "vnp_TmnCode", "vnp_TransactionNo", "vnp_TransactionStatus", "vnp_TxnRef",
    "vnp_SecureHash",
}


# -- independent signing helpers (deliberately not the emulator's own code) --------------------------


def vnp_query_hash(params: dict[str, str], secret: str = SECRET) -> str:
    signed = sorted(
        (k, v) for k, v in params.items()
        if k.startswith("vnp_") and k not in ("vnp_SecureHash", "vnp_SecureHashType") and v != ""
    )
    return hmac.new(secret.encode(), urlencode(signed).encode(), hashlib.sha512).hexdigest()


def assert_signed_query(query: str) -> dict[str, str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    assert params["vnp_SecureHash"].lower() == vnp_query_hash(params), "query signature does not verify"
    return params


def pipe_hash(values: list[object], secret: str = SECRET) -> str:
    data = "|".join("" if v is None else str(v) for v in values)
    return hmac.new(secret.encode(), data.encode(), hashlib.sha512).hexdigest()


def vn_date(delta: timedelta = timedelta()) -> str:
    return (datetime.now(VN) + delta).strftime("%Y%m%d%H%M%S")


def payment_url(
    base: str, *, amount_vnd: int = 150_000, txn_ref: str | None = None, secret: str = SECRET, **extra: str
) -> tuple[str, dict[str, str]]:
    params = {
        "vnp_Version": "2.1.0",
        "vnp_Command": "pay",
        "vnp_TmnCode": TMN,
        "vnp_Amount": str(amount_vnd * 100),
        "vnp_CurrCode": "VND",
        "vnp_TxnRef": txn_ref or uuid.uuid4().hex[:20],
        "vnp_OrderInfo": "Thanh toán vé Phong Nha #12: 2 người & trẻ em",
        "vnp_OrderType": "other",
        "vnp_Locale": "vn",
        "vnp_ReturnUrl": "https://shop.example.vn/vnpay/return?src=test",
        "vnp_IpAddr": "127.0.0.1",
        "vnp_CreateDate": vn_date(),
        "vnp_ExpireDate": vn_date(timedelta(minutes=15)),
    }
    params.update(extra)
    params["vnp_SecureHash"] = vnp_query_hash(params, secret)
    return f"{base}/paymentv2/vpcpay.html?{urlencode(params)}", params


def crc16_ccitt_false(data: str) -> str:
    # binascii.crc_hqx is CRC-CCITT with polynomial 0x1021; with 0xFFFF as start it is CCITT-FALSE.
    return f"{binascii.crc_hqx(data.encode(), 0xFFFF):04X}"


def field(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


def vietqr(*, amount: int | None = 250_000, reference: str = "QT ORD123", guid: str = "A000000727",
           currency: str = "704", dynamic: bool = True) -> str:
    beneficiary = field("00", "970436") + field("01", "0451000123456")
    account = field("00", guid) + field("01", beneficiary) + field("02", "QRIBFTTA")
    body = field("00", "01") + field("01", "12" if dynamic else "11") + field("38", account) + field("53", currency)
    if amount is not None:
        body += field("54", str(amount))
    body += field("58", "VN") + field("59", "CUA HANG QUANG TRI") + field("62", field("08", reference)) + "6304"
    return body + crc16_ccitt_false(body)


# -- servers ---------------------------------------------------------------------------------------


class ServerThread:
    """A uvicorn server on a free 127.0.0.1 port, in its own thread and event loop."""

    def __init__(self, app: FastAPI) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class Receiver:
    """The merchant side: records IPNs and bank notifications, answers from per-reference scripts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ipns: list[dict] = []
        self.ipn_script: dict[str, list[str]] = {}
        self.notifications: list[dict] = []
        self.bank_script: dict[str, list[int]] = {}
        self.app = FastAPI()
        self.app.get("/ipn")(self._ipn)
        self.app.post("/bank")(self._bank)

    async def _ipn(self, request: Request) -> Response:
        query = request.url.query
        params = dict(parse_qsl(query, keep_blank_values=True))
        with self.lock:
            self.ipns.append({"query": query, "params": params})
            script = self.ipn_script.get(params.get("vnp_TxnRef", ""), [])
            answer = script.pop(0) if script else "00"
        if answer == "notjson":
            return PlainTextResponse("server error page", status_code=500)
        if answer == "slow":
            await asyncio.sleep(0.6)
            answer = "00"
        return JSONResponse({"RspCode": answer, "Message": "Confirm Success" if answer == "00" else "Error"})

    async def _bank(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        with self.lock:
            self.notifications.append({"raw": raw, "body": body, "signature": request.headers.get("x-bank-signature")})
            script = self.bank_script.get(body["reference"], [])
            status = script.pop(0) if script else 200
        return JSONResponse({"received": status < 300}, status_code=status)

    def ipns_for(self, txn_ref: str) -> list[dict]:
        with self.lock:
            return [ipn for ipn in self.ipns if ipn["params"].get("vnp_TxnRef") == txn_ref]

    def notifications_for(self, reference: str) -> list[dict]:
        with self.lock:
            return [n for n in self.notifications if n["body"]["reference"] == reference]


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    with ServerThread(receiver.app) as server:
        receiver.url = server.url
        yield receiver


@pytest.fixture(scope="module")
def emulator_url(receiver):
    settings = EmulatorSettings(
        vnpay_tmn_code=TMN,
        vnpay_hash_secret=SECRET,
        vnpay_emulator_ipn_url=f"{receiver.url}/ipn",
        vnpay_emulator_ipn_retries=3,
        vnpay_emulator_ipn_retry_seconds=0.02,
        vnpay_emulator_http_timeout_seconds=3,
        bank_notify_url=f"{receiver.url}/bank",
        bank_notify_secret=BANK_SECRET,
        bank_notify_retries=3,
        bank_notify_retry_seconds=0.02,
    )
    with ServerThread(create_app(settings)) as server:
        yield server.url


@pytest.fixture
async def client(emulator_url):
    async with httpx.AsyncClient(base_url=emulator_url, timeout=10) as client:
        yield client


async def approve(client: httpx.AsyncClient, url: str, **options) -> dict:
    response = await client.post("/_emulator/pay", json={"payment_url": url, "outcome": "approve", **options})
    assert response.status_code == 200, response.text
    return response.json()


# -- the pay page ----------------------------------------------------------------------------------


async def test_health(client):
    for path in ("/healthz", "/readyz"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_valid_url_shows_pay_page(client, emulator_url):
    url, _ = payment_url(emulator_url, amount_vnd=1_234_000, vnp_BankCode="VNPAYQR")
    response = await client.get(url)
    assert response.status_code == 200, response.text
    page = response.text
    assert "1.234.000 ₫" in page
    assert "Thanh toán" in page and "Pay" in page and "Hủy" in page and "Cancel" in page
    assert "<svg" in page and "Phong Nha" in page


async def test_tampered_url_is_refused(client, emulator_url):
    url, _ = payment_url(emulator_url, amount_vnd=150_000)
    tampered = url.replace("vnp_Amount=15000000", "vnp_Amount=100")
    response = await client.get(tampered)
    assert response.status_code == 400
    assert "Sai chữ ký" in response.text and "Invalid signature" in response.text
    assert response.headers["x-vnpay-error-code"] == "70"


async def test_wrong_secret_unknown_terminal_and_bad_fields_are_refused(client, emulator_url):
    url, _ = payment_url(emulator_url, secret="WRONGSECRET")
    assert (await client.get(url)).headers["x-vnpay-error-code"] == "70"
    url, _ = payment_url(emulator_url, vnp_TmnCode="NOSUCH01")
    response = await client.get(url)
    assert response.status_code == 400 and response.headers["x-vnpay-error-code"] == "72"
    for bad in ({"vnp_Version": "2.0.1"}, {"vnp_Command": "refund"}, {"vnp_CurrCode": "USD"}, {"vnp_Amount": "150050"}):
        response = await client.get(payment_url(emulator_url, **bad)[0])
        assert response.status_code == 400, bad
        assert response.headers["x-vnpay-error-code"] == "03"
        assert next(iter(bad)) in response.text


async def test_expired_url_is_refused(client, emulator_url):
    url, _ = payment_url(
        emulator_url, vnp_CreateDate=vn_date(timedelta(minutes=-30)), vnp_ExpireDate=vn_date(timedelta(minutes=-15))
    )
    response = await client.get(url)
    assert response.status_code == 400
    assert response.headers["x-vnpay-error-code"] == "11"


async def test_txn_ref_reused_with_other_amount_is_a_duplicate(client, emulator_url):
    ref = uuid.uuid4().hex[:16]
    assert (await client.get(payment_url(emulator_url, txn_ref=ref, amount_vnd=100_000)[0])).status_code == 200
    assert (await client.get(payment_url(emulator_url, txn_ref=ref, amount_vnd=100_000)[0])).status_code == 200
    response = await client.get(payment_url(emulator_url, txn_ref=ref, amount_vnd=90_000)[0])
    assert response.status_code == 400 and response.headers["x-vnpay-error-code"] == "94"


async def test_browser_approve_sends_ipn_and_redirects_signed(client, emulator_url, receiver):
    url, params = payment_url(emulator_url, amount_vnd=200_000)
    page = (await client.get(url)).text
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    action = re.search(r'<form method="post" action="([^"]+)"', page).group(1)
    response = await client.post(action, data={"token": token, "action": "approve"}, follow_redirects=False)
    assert response.status_code in (302, 303)
    location = response.headers["location"]
    assert location.startswith("https://shop.example.vn/vnpay/return?src=test&")
    back = assert_signed_query(urlsplit(location).query.removeprefix("src=test&"))
    assert back["vnp_ResponseCode"] == "00" and back["vnp_TransactionStatus"] == "00"
    ipns = receiver.ipns_for(params["vnp_TxnRef"])
    assert len(ipns) == 1
    ipn = assert_signed_query(ipns[0]["query"])
    assert set(ipn) == IPN_FIELDS
    assert ipn["vnp_Amount"] == "20000000" and ipn["vnp_OrderInfo"] == params["vnp_OrderInfo"]
    assert ipn["vnp_TransactionNo"] == back["vnp_TransactionNo"] and ipn["vnp_TransactionNo"].isdigit()
    # A settled payment cannot be paid again.
    again = await client.post(action, data={"token": token, "action": "approve"}, follow_redirects=False)
    assert again.status_code == 409


async def test_payment_expiring_while_the_page_is_open_reports_11(client, emulator_url, receiver):
    url, params = payment_url(emulator_url, vnp_ExpireDate=vn_date(timedelta(seconds=1)))
    page = (await client.get(url)).text
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    await asyncio.sleep(2.05)  # past the expiry second, whatever the sub-second start
    response = await client.post(
        "/paymentv2/Transaction/Confirm.html", data={"token": token, "action": "approve"}, follow_redirects=False
    )
    assert response.status_code == 303
    back = assert_signed_query(urlsplit(response.headers["location"]).query.removeprefix("src=test&"))
    assert (back["vnp_ResponseCode"], back["vnp_TransactionStatus"]) == ("11", "02")
    ipn = assert_signed_query(receiver.ipns_for(params["vnp_TxnRef"])[0]["query"])
    assert ipn["vnp_ResponseCode"] == "11"


# -- the control API and IPN delivery ------------------------------------------------------------------


async def test_approve_delivers_signed_ipn_and_signed_return(client, emulator_url, receiver):
    url, params = payment_url(emulator_url, amount_vnd=350_000, vnp_BankCode="VNPAYQR")
    result = await approve(client, url)
    ipns = receiver.ipns_for(params["vnp_TxnRef"])
    assert len(ipns) == 1
    ipn = assert_signed_query(ipns[0]["query"])
    assert set(ipn) == IPN_FIELDS
    assert (ipn["vnp_ResponseCode"], ipn["vnp_TransactionStatus"]) == ("00", "00")
    assert ipn["vnp_TmnCode"] == TMN and ipn["vnp_Amount"] == "35000000" and ipn["vnp_CardType"] == "QRCODE"
    assert re.fullmatch(r"\d{14}", ipn["vnp_PayDate"])
    assert result["ipn"]["deliveries"][0]["state"] == "confirmed"
    assert result["ipn"]["deliveries"][0]["attempts"][0]["rsp_code"] == "00"
    back = assert_signed_query(urlsplit(result["return_url"]).query.removeprefix("src=test&"))
    assert back == {k: v for k, v in ipn.items()}
    assert result["transaction"]["status"] == "approved" and result["transaction"]["amount_vnd"] == 350_000
    listed = await client.get(f"/_emulator/transactions/{params['vnp_TxnRef']}")
    assert listed.json()["result"]["vnp_TransactionNo"] == ipn["vnp_TransactionNo"]
    all_txns = (await client.get("/_emulator/transactions")).json()["data"]
    assert params["vnp_TxnRef"] in {t["txn_ref"] for t in all_txns}


async def test_decline_reports_24(client, emulator_url, receiver):
    url, params = payment_url(emulator_url)
    response = await client.post("/_emulator/pay", json={"payment_url": url, "outcome": "decline"})
    assert response.status_code == 200
    ipn = assert_signed_query(receiver.ipns_for(params["vnp_TxnRef"])[0]["query"])
    assert (ipn["vnp_ResponseCode"], ipn["vnp_TransactionStatus"]) == ("24", "02")
    assert ipn["vnp_TransactionNo"] == "0"
    back = assert_signed_query(urlsplit(response.json()["return_url"]).query.removeprefix("src=test&"))
    assert back["vnp_ResponseCode"] == "24"


async def test_ipn_retried_until_merchant_confirms(client, emulator_url, receiver):
    url, params = payment_url(emulator_url)
    receiver.ipn_script[params["vnp_TxnRef"]] = ["99", "notjson", "00"]
    result = await approve(client, url)
    attempts = result["ipn"]["deliveries"][0]["attempts"]
    assert [a["rsp_code"] for a in attempts] == ["99", None, "00"]
    assert [a["retry"] for a in attempts] == [True, True, False]
    assert attempts[1]["error"] == "not JSON"
    assert result["ipn"]["deliveries"][0]["state"] == "confirmed"
    ipns = receiver.ipns_for(params["vnp_TxnRef"])
    assert len(ipns) == 3 and len({ipn["query"] for ipn in ipns}) == 1


async def test_ipn_gives_up_after_the_configured_retries(client, emulator_url, receiver):
    url, params = payment_url(emulator_url)
    receiver.ipn_script[params["vnp_TxnRef"]] = ["97"] * 10
    result = await approve(client, url)
    assert result["ipn"]["deliveries"][0]["state"] == "failed"
    assert len(receiver.ipns_for(params["vnp_TxnRef"])) == 4  # first attempt + 3 retries


async def test_double_delivery(client, emulator_url, receiver):
    url, params = payment_url(emulator_url)
    receiver.ipn_script[params["vnp_TxnRef"]] = ["00", "02"]
    result = await approve(client, url, ipn_deliveries=2)
    assert [d["state"] for d in result["ipn"]["deliveries"]] == ["confirmed", "confirmed"]
    ipns = receiver.ipns_for(params["vnp_TxnRef"])
    assert len(ipns) == 2 and ipns[0]["query"] == ipns[1]["query"]


async def test_late_delivery_runs_in_background(client, emulator_url, receiver):
    url, params = payment_url(emulator_url)
    started = time.monotonic()
    result = await approve(client, url, ipn_delay_seconds=0.6)
    assert time.monotonic() - started < 0.5
    assert result["ipn"]["pending"] is True
    assert result["ipn"]["deliveries"][0]["state"] == "scheduled"
    assert receiver.ipns_for(params["vnp_TxnRef"]) == []
    path = f"/_emulator/transactions/{params['vnp_TxnRef']}/ipn"
    waited = (await client.get(path, params={"wait_seconds": 5})).json()
    assert waited["pending"] is False and waited["deliveries"][0]["state"] == "confirmed"
    assert len(receiver.ipns_for(params["vnp_TxnRef"])) == 1


async def test_resend_ipn_of_a_past_transaction(client, emulator_url, receiver):
    url, params = payment_url(emulator_url)
    await approve(client, url)
    response = await client.post(f"/_emulator/transactions/{params['vnp_TxnRef']}/ipn", json={"deliveries": 1})
    assert response.status_code == 200
    assert response.json()["deliveries"][0]["index"] == 2
    ipns = receiver.ipns_for(params["vnp_TxnRef"])
    assert len(ipns) == 2 and ipns[0]["query"] == ipns[1]["query"]


async def test_ipn_retried_after_a_timeout(receiver):
    settings = EmulatorSettings(
        vnpay_tmn_code=TMN, vnpay_hash_secret=SECRET, vnpay_emulator_ipn_url=f"{receiver.url}/ipn",
        vnpay_emulator_ipn_retry_seconds=0.01, vnpay_emulator_http_timeout_seconds=0.2,
    )
    with ServerThread(create_app(settings)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            url, params = payment_url(server.url)
            receiver.ipn_script[params["vnp_TxnRef"]] = ["slow", "00"]
            attempts = (await approve(client, url))["ipn"]["deliveries"][0]["attempts"]
    assert [a["error"] for a in attempts] == ["timeout", None]
    assert attempts[1]["rsp_code"] == "00"


async def test_concurrent_settlements_and_refunds_happen_once(client, emulator_url):
    url, params = payment_url(emulator_url, amount_vnd=90_000)
    outcomes = await asyncio.gather(*(
        client.post("/_emulator/pay", json={"payment_url": url, "outcome": "approve"}) for _ in range(5)
    ))
    assert sorted(r.status_code for r in outcomes) == [200, 409, 409, 409, 409]
    answers = await asyncio.gather(*(
        call_api(client, refund_body(params["vnp_TxnRef"], params["vnp_CreateDate"], 90_000, "02")) for _ in range(5)
    ))
    assert sorted(a["vnp_ResponseCode"] for a in answers) == ["00", "02", "02", "02", "02"]
    record = (await client.get(f"/_emulator/transactions/{params['vnp_TxnRef']}")).json()
    assert record["refunded_vnd"] == 90_000


async def test_config_can_be_read_and_changed(client):
    before = (await client.get("/_emulator/config")).json()
    assert before["tmn_code"] == TMN and before["ipn_retries"] == 3
    changed = (await client.patch("/_emulator/config", json={"bank_notify_retries": 1})).json()
    assert changed["bank_notify_retries"] == 1 and changed["ipn_url"] == before["ipn_url"]
    await client.patch("/_emulator/config", json={"bank_notify_retries": before["bank_notify_retries"]})
    assert (await client.patch("/_emulator/config", json={"ipn_url": "ftp://x"})).status_code == 422


# -- querydr and refund --------------------------------------------------------------------------------

QUERYDR_RESPONSE = [
    "vnp_ResponseId", "vnp_Command", "vnp_ResponseCode", "vnp_Message", "vnp_TmnCode", "vnp_TxnRef",
    "vnp_Amount", "vnp_BankCode", "vnp_PayDate", "vnp_TransactionNo", "vnp_TransactionType",
    "vnp_TransactionStatus", "vnp_OrderInfo", "vnp_PromotionCode", "vnp_PromotionAmount",
]
REFUND_RESPONSE = QUERYDR_RESPONSE[:-2]


def querydr_body(txn_ref: str, transaction_date: str, request_id: str | None = None) -> dict:
    body = {
        "vnp_RequestId": request_id or uuid.uuid4().hex,
        "vnp_Version": "2.1.0",
        "vnp_Command": "querydr",
        "vnp_TmnCode": TMN,
        "vnp_TxnRef": txn_ref,
        "vnp_OrderInfo": "Truy van GD " + txn_ref,
        "vnp_TransactionDate": transaction_date,
        "vnp_CreateDate": vn_date(),
        "vnp_IpAddr": "10.0.0.5",
    }
    body["vnp_SecureHash"] = pipe_hash([body[k] for k in (
        "vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TxnRef",
        "vnp_TransactionDate", "vnp_CreateDate", "vnp_IpAddr", "vnp_OrderInfo")])
    return body


def refund_body(txn_ref: str, transaction_date: str, amount_vnd: int, kind: str, transaction_no: str = "") -> dict:
    body = {
        "vnp_RequestId": uuid.uuid4().hex,
        "vnp_Version": "2.1.0",
        "vnp_Command": "refund",
        "vnp_TmnCode": TMN,
        "vnp_TransactionType": kind,
        "vnp_TxnRef": txn_ref,
        "vnp_Amount": amount_vnd * 100,
        "vnp_OrderInfo": "Hoàn tiền đơn " + txn_ref,
        "vnp_TransactionNo": transaction_no,
        "vnp_TransactionDate": transaction_date,
        "vnp_CreateBy": "ops@quangtri",
        "vnp_CreateDate": vn_date(),
        "vnp_IpAddr": "10.0.0.5",
    }
    body["vnp_SecureHash"] = pipe_hash([body[k] for k in (
        "vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TransactionType", "vnp_TxnRef",
        "vnp_Amount", "vnp_TransactionNo", "vnp_TransactionDate", "vnp_CreateBy", "vnp_CreateDate",
        "vnp_IpAddr", "vnp_OrderInfo")])
    return body


async def call_api(client: httpx.AsyncClient, body: dict) -> dict:
    response = await client.post("/merchant_webapi/api/transaction", json=body)
    assert response.status_code == 200
    answer = response.json()
    fields = QUERYDR_RESPONSE if body["vnp_Command"] == "querydr" else REFUND_RESPONSE
    if "vnp_SecureHash" in answer:
        assert answer["vnp_SecureHash"] == pipe_hash([answer.get(k, "") for k in fields]), "response checksum"
    return answer


async def test_querydr_after_pay(client, emulator_url):
    url, params = payment_url(emulator_url, amount_vnd=420_000)
    paid = await approve(client, url)
    answer = await call_api(client, querydr_body(params["vnp_TxnRef"], params["vnp_CreateDate"]))
    assert "vnp_SecureHash" in answer
    assert answer["vnp_ResponseCode"] == "00"
    assert answer["vnp_TransactionStatus"] == "00" and answer["vnp_TransactionType"] == "01"
    assert answer["vnp_Amount"] == "42000000"
    assert answer["vnp_TransactionNo"] == paid["transaction"]["result"]["vnp_TransactionNo"]
    assert answer["vnp_TxnRef"] == params["vnp_TxnRef"]


async def test_querydr_not_found_and_duplicate_request(client, emulator_url):
    answer = await call_api(client, querydr_body("nosuchref", vn_date()))
    assert answer["vnp_ResponseCode"] == "91"
    url, params = payment_url(emulator_url)
    await approve(client, url)
    body = querydr_body(params["vnp_TxnRef"], params["vnp_CreateDate"], request_id="REQ" + uuid.uuid4().hex[:10])
    assert (await call_api(client, body))["vnp_ResponseCode"] == "00"
    assert (await call_api(client, body))["vnp_ResponseCode"] == "94"
    wrong_date = querydr_body(params["vnp_TxnRef"], vn_date(timedelta(days=-1)))
    assert (await call_api(client, wrong_date))["vnp_ResponseCode"] == "91"


async def test_bad_checksum_is_97(client, emulator_url):
    url, params = payment_url(emulator_url)
    await approve(client, url)
    body = querydr_body(params["vnp_TxnRef"], params["vnp_CreateDate"])
    body["vnp_IpAddr"] = "10.0.0.6"  # changed after signing
    assert (await call_api(client, body))["vnp_ResponseCode"] == "97"
    body = refund_body(params["vnp_TxnRef"], params["vnp_CreateDate"], 150_000, "02")
    body["vnp_Amount"] = 1_000_000_000
    assert (await call_api(client, body))["vnp_ResponseCode"] == "97"
    body = querydr_body(params["vnp_TxnRef"], params["vnp_CreateDate"])
    del body["vnp_OrderInfo"]
    answer = await call_api(client, body)
    assert answer["vnp_ResponseCode"] == "03" and "vnp_OrderInfo" in answer["vnp_Message"]


async def test_refund_partial_full_and_over_refund(client, emulator_url):
    url, params = payment_url(emulator_url, amount_vnd=500_000)
    paid = await approve(client, url)
    ref, date = params["vnp_TxnRef"], params["vnp_CreateDate"]
    number = paid["transaction"]["result"]["vnp_TransactionNo"]

    assert (await call_api(client, refund_body(ref, date, 600_000, "03")))["vnp_ResponseCode"] == "93"
    first = await call_api(client, refund_body(ref, date, 200_000, "03", number))
    assert first["vnp_ResponseCode"] == "00"
    assert first["vnp_TransactionType"] == "03" and first["vnp_Amount"] == "20000000"
    state = await call_api(client, querydr_body(ref, date))
    assert (state["vnp_TransactionType"], state["vnp_TransactionStatus"]) == ("03", "06")

    assert (await call_api(client, refund_body(ref, date, 300_001, "03")))["vnp_ResponseCode"] == "02"
    assert (await call_api(client, refund_body(ref, date, 500_000, "02")))["vnp_ResponseCode"] == "04"
    rest = await call_api(client, refund_body(ref, date, 300_000, "03"))
    assert rest["vnp_ResponseCode"] == "00"
    state = await call_api(client, querydr_body(ref, date))
    assert (state["vnp_TransactionType"], state["vnp_TransactionStatus"]) == ("02", "06")
    assert (await call_api(client, refund_body(ref, date, 1_000, "03")))["vnp_ResponseCode"] == "02"
    record = (await client.get(f"/_emulator/transactions/{ref}")).json()
    assert record["refunded_vnd"] == 500_000 and len(record["refunds"]) == 2


async def test_full_refund_and_refund_of_unpaid(client, emulator_url):
    url, params = payment_url(emulator_url, amount_vnd=80_000)
    await approve(client, url)
    full = await call_api(client, refund_body(params["vnp_TxnRef"], params["vnp_CreateDate"], 80_000, "02"))
    assert full["vnp_ResponseCode"] == "00" and full["vnp_TransactionType"] == "02"
    state = await call_api(client, querydr_body(params["vnp_TxnRef"], params["vnp_CreateDate"]))
    assert (state["vnp_TransactionType"], state["vnp_TransactionStatus"]) == ("02", "06")

    url, params = payment_url(emulator_url, amount_vnd=80_000)
    await client.post("/_emulator/pay", json={"payment_url": url, "outcome": "decline"})
    refused = await call_api(client, refund_body(params["vnp_TxnRef"], params["vnp_CreateDate"], 80_000, "02"))
    assert refused["vnp_ResponseCode"] == "95"


# -- VietQR: the bank ---------------------------------------------------------------------------------


def verify_bank_signature(header: str, raw: bytes, secret: str = BANK_SECRET) -> None:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected), "bank signature does not verify"
    assert abs(time.time() - int(parts["t"])) < 60


async def test_vietqr_scan_sends_signed_notification(client, receiver):
    reference = "QT" + uuid.uuid4().hex[:10].upper()
    payload = vietqr(amount=250_000, reference=reference)
    response = await client.post("/_emulator/vietqr/scan", json={"payload": payload})
    assert response.status_code == 200, response.text
    result = response.json()
    got = receiver.notifications_for(reference)
    assert len(got) == 1
    verify_bank_signature(got[0]["signature"], got[0]["raw"])
    body = got[0]["body"]
    assert body["bank_bin"] == "970436" and body["account_no"] == "0451000123456"
    assert body["amount"] == 250_000 and body["reference"] == reference
    assert body["transferred_at"].endswith("Z") and body["id"]
    assert result["notification"] == body
    assert result["deliveries"][0]["state"] == "confirmed"


async def test_vietqr_static_qr_needs_an_amount(client, receiver):
    reference = "QT" + uuid.uuid4().hex[:10].upper()
    payload = vietqr(amount=None, reference=reference, dynamic=False)
    response = await client.post("/_emulator/vietqr/scan", json={"payload": payload})
    assert response.status_code == 400 and response.json()["error"]["field"] == "amount"
    response = await client.post(
        "/_emulator/vietqr/scan", json={"payload": payload, "amount": 75_000, "bank_transaction_id": "FT" + reference}
    )
    assert response.status_code == 200
    assert receiver.notifications_for(reference)[0]["body"] == response.json()["notification"]
    assert response.json()["notification"]["id"] == "FT" + reference


async def test_vietqr_notification_retried_and_delivered_twice(client, receiver):
    reference = "QT" + uuid.uuid4().hex[:10].upper()
    receiver.bank_script[reference] = [503, 200, 200]
    payload = vietqr(reference=reference)
    response = await client.post("/_emulator/vietqr/scan", json={"payload": payload, "deliveries": 2})
    deliveries = response.json()["deliveries"]
    assert [len(d["attempts"]) for d in deliveries] == [2, 1]
    assert deliveries[0]["attempts"][0]["status_code"] == 503
    got = receiver.notifications_for(reference)
    assert len(got) == 3 and len({n["body"]["id"] for n in got}) == 1
    for notification in got:
        verify_bank_signature(notification["signature"], notification["raw"])


@pytest.mark.parametrize(
    ("payload", "field_name"),
    [
        (vietqr()[:-1] + ("1" if vietqr().endswith("0") else "0"), "payload.63"),
        (vietqr(guid="A000000999"), "payload.38.00"),
        (vietqr(currency="840"), "payload.53"),
    ],
)
async def test_vietqr_bad_payloads_are_refused(client, payload, field_name):
    response = await client.post("/_emulator/vietqr/scan", json={"payload": payload})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field_name
