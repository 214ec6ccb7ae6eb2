"""VietQR: NAPAS vectors, the intent's PNG decoded by a real QR reader, the bank's signed notifications."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import io
import json
import time

import httpx
import pytest
import zxingcpp
from PIL import Image

from services.payments import vietqr

# NAPAS IBFT QR specification examples (static to account, static to card, dynamic with amount and purpose).
NAPAS_VECTORS = [
    "00020101021138570010A00000072701270006970403011200110123456780208QRIBFTTA53037045802VN6304F4E5",
    "00020101021138600010A00000072701300006970403011697040311012345670208QRIBFTTC53037045802VN63044F52",
    "00020101021238570010A00000072701270006970403011300110123456780208QRIBFTTA530370454061800005802VN"
    "62340107NPS68690819thanh toan don hang63042E2E",
]


def crc(text: str) -> str:
    # An independent CRC-16/CCITT-FALSE: the standard library's CRC-CCITT with initial value 0xFFFF.
    return f"{binascii.crc_hqx(text.encode(), 0xFFFF):04X}"


def tlv(data: str) -> dict[str, str]:
    fields, pos = {}, 0
    while pos < len(data):
        tag, length = data[pos:pos + 2], int(data[pos + 2:pos + 4])
        fields[tag] = data[pos + 4:pos + 4 + length]
        assert len(fields[tag]) == length, f"field {tag} runs past the end"
        pos += 4 + length
    return fields


@pytest.mark.parametrize("vector", NAPAS_VECTORS)
def test_crc_matches_napas_examples(vector):
    assert vietqr.crc16_ccitt_false(vector[:-4]) == vector[-4:] == crc(vector[:-4])


def test_builder_reproduces_a_known_payload():
    built = vietqr.payload(bank_bin="970436", account_no="0451000123456", amount=250000,
                           purpose="QT ORD20250701A1", merchant_name="Cửa hàng Quảng Trị")
    assert built == ("00020101021238570010A00000072701270006970436011304510001234560208QRIBFTTA5303704540625000"
                     "05802VN5918CUA HANG QUANG TRI62200816QT ORD20250701A16304ABE4")
    static = tlv(vietqr.payload(bank_bin="970403", account_no="0011012345678"))
    assert static["01"] == "11" and "54" not in static


def decode(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1 and found[0].format == zxingcpp.BarcodeFormat.QRCode
    return found[0].text


async def test_intent_png_decodes_to_every_emvco_field(api_url, merchant):
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        created = await http.post("/v1/payment_intents", headers=merchant.key_headers,
                                  json={"amount": 275000, "currency": "vnd", "payment_method_types": ["vietqr"]})
        action = created.json()["next_action"]["vietqr_display_qr_code"]
        png = await http.get(action["image_url_png"].removeprefix(api_url))  # no Authorization: a public link
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        text = decode(png.content)
        svg = await http.get(action["image_url_svg"].removeprefix(api_url))
        assert svg.status_code == 200 and b"<svg" in svg.content
        wrong = await http.get(action["image_url_png"].removeprefix(api_url).split("?")[0] + "?client_secret=x")
        assert wrong.status_code == 404
    assert text == action["data"]
    assert text[-8:-4] == "6304" and text[-4:] == crc(text[:-4])
    root = tlv(text)
    assert list(root) == ["00", "01", "38", "53", "54", "58", "59", "62", "63"]
    assert root["00"] == "01" and root["01"] == "12" and root["53"] == "704" and root["54"] == "275000"
    assert root["58"] == "VN" and root["59"] == "NGUYEN VAN AN"
    account = tlv(root["38"])
    assert account["00"] == "A000000727" and account["02"] == "QRIBFTTA"
    assert tlv(account["01"]) == {"00": "970436", "01": "0451000123456"}
    assert tlv(root["62"]) == {"08": action["reference"]}


async def test_merchant_static_qr(api_url, merchant):
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        png = await http.get(merchant.account["vietqr"]["image_url_png"].removeprefix(api_url))
    root = tlv(decode(png.content))
    assert root["01"] == "11" and "54" not in root and tlv(tlv(root["38"])["01"])["01"] == "0451000123456"


def bank_signature(secret: str, body: bytes, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


async def test_scan_through_the_emulator_settles_once(stack, api_url, merchant):
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
        created = (await http.post("/v1/payment_intents", headers=merchant.key_headers,
                                   json={"amount": 120000, "currency": "vnd",
                                         "payment_method_types": ["vietqr"]})).json()
        scan = await http.post(f"{stack.config.emulator_url}/_emulator/vietqr/scan", json={
            "payload": created["next_action"]["vietqr_display_qr_code"]["data"], "deliveries": 2})
        assert scan.status_code == 200, scan.text
        assert all(a["status_code"] == 200 for d in scan.json()["deliveries"] for a in d["attempts"])
        paid = (await http.get(f"/v1/payment_intents/{created['id']}", headers=merchant.key_headers)).json()
        assert paid["status"] == "succeeded" and paid["payment_method_details"]["type"] == "vietqr"
        ledger = (await http.get("/v1/balance_transactions", headers=merchant.key_headers)).json()["data"]
        assert [t["amount"] for t in ledger] == [120000]


async def test_notification_signature_freshness_and_amount(api_url, merchant, vnpay_env):
    secret = vnpay_env["BANK_NOTIFY_SECRET"]
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        created = (await http.post("/v1/payment_intents", headers=merchant.key_headers,
                                   json={"amount": 90000, "currency": "vnd",
                                         "payment_method_types": ["vietqr"]})).json()
        reference = created["next_action"]["vietqr_display_qr_code"]["reference"]
        note = {"id": f"FT{time.time_ns()}", "bank_bin": "970436", "account_no": "0451000123456", "amount": 9000,
                "reference": reference, "description": reference, "transferred_at": "2025-07-01T07:32:10.847Z"}
        body = json.dumps(note, separators=(",", ":")).encode()

        async def send(raw: bytes, signature: str):
            return await http.post("/v1/vietqr/notifications", content=raw,
                                   headers={"Content-Type": "application/json", "X-Bank-Signature": signature})

        assert (await send(body, bank_signature("wrong", body))).status_code == 401
        assert (await send(body, bank_signature(secret, body, int(time.time()) - 301))).status_code == 401
        assert (await send(body.replace(b"9000", b"90000"), bank_signature(secret, body))).status_code == 401
        short = await send(body, bank_signature(secret, body))
        assert short.status_code == 200 and short.json()["outcome"] == "amount_mismatch"
        assert (await send(body, bank_signature(secret, body))).json()["outcome"] == "duplicate"
        seen = (await http.get(f"/v1/payment_intents/{created['id']}", headers=merchant.key_headers)).json()
        assert seen["status"] == "requires_action"
        # The reference typed inside a longer description still finds the intent.
        right = {**note, "id": note["id"] + "B", "amount": 90000, "reference": "",
                 "description": f"chuyen tien {reference} cam on"}
        raw = json.dumps(right, separators=(",", ":"), ensure_ascii=False).encode()
        assert (await send(raw, bank_signature(secret, raw))).json()["outcome"] == "succeeded"
        bad = json.dumps({**right, "id": "x y"}).encode()
        rejected = await send(bad, bank_signature(secret, bad))
        assert rejected.status_code == 400 and rejected.json()["error"]["param"] == "id"


async def _notify(http, secret: str, note: dict) -> httpx.Response:
    raw = json.dumps(note, separators=(",", ":")).encode()
    return await http.post("/v1/vietqr/notifications", content=raw,
                           headers={"Content-Type": "application/json", "X-Bank-Signature": bank_signature(secret, raw)})


async def test_transfer_for_a_canceled_intent_is_flagged_and_refund_of_a_vietqr_payment(api_url, merchant, vnpay_env):
    secret = vnpay_env["BANK_NOTIFY_SECRET"]
    async with httpx.AsyncClient(base_url=api_url, headers=merchant.key_headers, timeout=30) as http:
        def new(amount):
            return http.post("/v1/payment_intents", json={"amount": amount, "currency": "vnd",
                                                          "payment_method_types": ["vietqr"]})
        gone = (await new(50000)).json()
        assert (await http.post(f"/v1/payment_intents/{gone['id']}/cancel")).status_code == 200
        note = {"id": f"FT{time.time_ns()}", "bank_bin": "970436", "account_no": "0451000123456", "amount": 50000,
                "reference": gone["next_action"]["vietqr_display_qr_code"]["reference"], "description": "",
                "transferred_at": "2025-07-01T07:32:10Z"}
        assert (await _notify(http, secret, note)).json()["outcome"] == "late_payment"
        assert (await _notify(http, secret, note)).json()["outcome"] == "duplicate"
        assert (await http.get(f"/v1/payment_intents/{gone['id']}")).json()["status"] == "canceled"
        flagged = (await http.get("/v1/balance/flagged_payments")).json()["data"]
        assert [(f["kind"], f["amount"], f["payment_intent"]) for f in flagged] == [("late_payment", 50000, gone["id"])]

        paid = (await new(100000)).json()
        settle = {**note, "id": note["id"] + "P", "amount": 100000,
                  "reference": paid["next_action"]["vietqr_display_qr_code"]["reference"]}
        assert (await _notify(http, secret, settle)).json()["outcome"] == "succeeded"
        first = await http.post("/v1/refunds", json={"payment_intent": paid["id"], "amount": 30000})
        assert first.status_code == 200 and first.json()["status"] == "succeeded", first.text
        rest = await http.post("/v1/refunds", json={"payment_intent": paid["id"]})
        assert rest.status_code == 200 and rest.json()["amount"] == 70000
        over = await http.post("/v1/refunds", json={"payment_intent": paid["id"], "amount": 1})
        assert over.status_code == 400 and over.json()["error"]["param"] == "amount"
        after = (await http.get(f"/v1/payment_intents/{paid['id']}")).json()
        assert after["amount_received"] == 100000 and after["amount_refunded"] == 100000
        ledger = (await http.get("/v1/balance_transactions", params={"payment_intent": paid["id"]})).json()["data"]
        assert sorted(t["amount"] for t in ledger) == [-70000, -30000, 100000]
        assert all(sum(e["amount"] for e in t["entries"]) == 0 for t in ledger)  # every transaction balances
        assert (await http.get("/v1/balance")).json()["available"][0]["amount"] == 0
        report = (await http.get("/v1/settlement_reports")).json()["data"]
        assert sum(d["gross"] for d in report) == 100000 and sum(d["refunded"] for d in report) == 100000
        assert report[0]["closing_balance"] == 0
