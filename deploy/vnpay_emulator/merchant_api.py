"""VNPay's merchant web API (POST /merchant_webapi/api/transaction): querydr and refund, checksummed."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .emulator import VNP_VERSION, Emulator, Payment, Refund, parse_vnp_date
from .signing import (
    QUERYDR_REQUEST_FIELDS,
    QUERYDR_RESPONSE_FIELDS,
    REFUND_REQUEST_FIELDS,
    REFUND_RESPONSE_FIELDS,
    sign_pipe,
    verify_pipe,
)

# VNPay asks for a vnp_RequestId not repeated within the day.
REQUEST_ID_WINDOW = timedelta(hours=24)
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")

QUERYDR_MESSAGES = {
    "00": "Yêu cầu thành công / Request succeeded",
    "02": "Mã định danh kết nối không hợp lệ (kiểm tra lại vnp_TmnCode) / "
          "Invalid terminal (check vnp_TmnCode)",
    "03": "Dữ liệu gửi sang không đúng định dạng / Invalid data format",
    "91": "Không tìm thấy giao dịch yêu cầu / Transaction not found",
    "94": "Yêu cầu bị trùng lặp (vnp_RequestId) / Duplicate request (vnp_RequestId)",
    "97": "Chữ ký không hợp lệ / Invalid checksum",
    "99": "Các lỗi khác / Other error",
}
REFUND_MESSAGES = {
    **QUERYDR_MESSAGES,
    "02": "Tổng số tiền hoàn trả lớn hơn số tiền gốc / Total refunded amount exceeds the original amount",
    "04": "Không cho phép hoàn trả toàn phần sau khi hoàn trả một phần / "
          "Full refund not allowed after a partial refund",
    "91": "Không tìm thấy giao dịch yêu cầu hoàn trả / Transaction to refund not found",
    "93": "Số tiền hoàn trả không hợp lệ, phải nhỏ hơn hoặc bằng số tiền thanh toán / "
          "Invalid refund amount: it must not exceed the paid amount",
    "95": "Giao dịch này không thành công bên VNPAY, VNPAY từ chối xử lý yêu cầu / "
          "The transaction was not successful at VNPAY; the request is refused",
}
# vnp_TransactionStatus for a transaction that has been refunded: VNPAY has sent the refund to the bank.
REFUNDED_STATUS = "06"


@dataclass
class ApiError(Exception):
    code: str
    field: str | None = None


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ApiError("03", name)
    return str(value)


def _normalise(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, str | None]:
    return {name: _text(body, name) for name in (*names, "vnp_SecureHash")}


class MerchantApi:
    """Answers querydr and refund exactly in VNPay's JSON shape; every answer is HTTP 200."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def handle(self, body: Any) -> dict[str, Any]:
        command = body.get("vnp_Command") if isinstance(body, dict) else None
        if command == "refund":
            return await self._handle(body, "refund")
        # Anything that is not a refund is answered in querydr's shape, with 03 when malformed.
        if not isinstance(body, dict):
            return self._answer({}, "querydr", "03", None, field="JSON body")
        if command != "querydr":
            return self._answer(body, "querydr", "03", None, field="vnp_Command")
        return await self._handle(body, "querydr")

    async def _handle(self, body: dict[str, Any], command: str) -> dict[str, Any]:
        request_fields = QUERYDR_REQUEST_FIELDS if command == "querydr" else REFUND_REQUEST_FIELDS
        tmn_code = body.get("vnp_TmnCode")
        terminal = self.emulator.terminal_for(tmn_code) if isinstance(tmn_code, str) else None
        # Answers are signed whenever the terminal, hence its secret, is known.
        secret = terminal.hash_secret if terminal is not None else None
        try:
            values = _normalise(body, request_fields)
            self._check_format(values, command)
        except ApiError as exc:
            return self._answer(body, command, exc.code, None, field=exc.field, secret=secret)
        if terminal is None:
            return self._answer(values, command, "02", None, field="vnp_TmnCode")
        signed_values = dict(values)
        if signed_values.get("vnp_TransactionNo") is None:
            signed_values["vnp_TransactionNo"] = ""
        if not verify_pipe(signed_values, request_fields, terminal.hash_secret):
            return self._answer(values, command, "97", None, field="vnp_SecureHash", secret=secret)
        async with self.emulator.lock:
            if self._seen_request(terminal.tmn_code, values["vnp_RequestId"]):
                return self._answer(values, command, "94", None, field="vnp_RequestId", secret=secret)
            payment = self.emulator.find_payment(values["vnp_TxnRef"], terminal.tmn_code)
            if payment is None or payment.create_date != values["vnp_TransactionDate"]:
                return self._answer(values, command, "91", None, field="vnp_TxnRef", secret=secret)
            if command == "querydr":
                return self._answer(values, command, "00", payment, secret=secret)
            return self._refund(values, payment, terminal.hash_secret)

    def _check_format(self, values: dict[str, str | None], command: str) -> None:
        required = QUERYDR_REQUEST_FIELDS if command == "querydr" else REFUND_REQUEST_FIELDS
        for name in (*required, "vnp_SecureHash"):
            if name == "vnp_TransactionNo":
                continue  # optional for refund; it still takes its place (empty) in the checksum
            if not values.get(name):
                raise ApiError("03", name)
        if values["vnp_Version"] != VNP_VERSION:
            raise ApiError("03", "vnp_Version")
        if not REQUEST_ID_RE.match(values["vnp_RequestId"] or ""):
            raise ApiError("03", "vnp_RequestId")
        for name in ("vnp_TransactionDate", "vnp_CreateDate"):
            if parse_vnp_date(values[name] or "") is None:
                raise ApiError("03", name)
        if command == "refund":
            if values["vnp_TransactionType"] not in ("02", "03"):
                raise ApiError("03", "vnp_TransactionType")
            amount = values["vnp_Amount"] or ""
            if not amount.isdigit() or int(amount) <= 0 or int(amount) % 100:
                raise ApiError("03", "vnp_Amount")
            number = values.get("vnp_TransactionNo")
            if number not in (None, "") and not number.isdigit():
                raise ApiError("03", "vnp_TransactionNo")

    def _seen_request(self, tmn_code: str, request_id: str) -> bool:
        now = datetime.now(timezone.utc)
        seen = self.emulator.request_ids
        for key, at in list(seen.items()):
            if now - at > REQUEST_ID_WINDOW:
                del seen[key]
        if (tmn_code, request_id) in seen:
            return True
        seen[(tmn_code, request_id)] = now
        return False

    def _refund(self, values: dict[str, str | None], payment: Payment, secret: str) -> dict[str, Any]:
        number = values.get("vnp_TransactionNo")
        if number not in (None, "", "0") and number != payment.transaction_no:
            return self._answer(values, "refund", "91", None, field="vnp_TransactionNo", secret=secret)
        if payment.status != "approved":
            return self._answer(values, "refund", "95", None, field="vnp_TxnRef", secret=secret)
        amount = int(values["vnp_Amount"])
        kind = values["vnp_TransactionType"]
        if amount > payment.amount:
            return self._answer(values, "refund", "93", None, field="vnp_Amount", secret=secret)
        if kind == "02" and payment.refunds:
            code = "02" if payment.refunded >= payment.amount else "04"
            return self._answer(values, "refund", code, None, field="vnp_TransactionType", secret=secret)
        if kind == "02" and amount != payment.amount:
            # A full refund must name the whole paid amount; anything less is a partial one (03).
            return self._answer(values, "refund", "03", None, field="vnp_Amount", secret=secret)
        if payment.refunded + amount > payment.amount:
            return self._answer(values, "refund", "02", None, field="vnp_Amount", secret=secret)
        refund = Refund(
            request_id=values["vnp_RequestId"],
            transaction_type=kind,
            amount=amount,
            transaction_no=self.emulator.next_number(),
            create_by=values["vnp_CreateBy"],
            create_date=values["vnp_CreateDate"],
            order_info=values["vnp_OrderInfo"],
            refunded_at=datetime.now(timezone.utc),
        )
        payment.refunds.append(refund)
        return self._answer(values, "refund", "00", payment, secret=secret, refund=refund)

    def _answer(
        self,
        request: dict[str, Any],
        command: str,
        code: str,
        payment: Payment | None,
        *,
        field: str | None = None,
        secret: str | None = None,
        refund: Refund | None = None,
    ) -> dict[str, Any]:
        messages = QUERYDR_MESSAGES if command == "querydr" else REFUND_MESSAGES
        message = messages.get(code, messages["99"])
        if field and code != "00":
            message = f"{message}: {field}"
        answer: dict[str, Any] = {
            "vnp_ResponseId": secrets.token_hex(16),
            "vnp_Command": command,
            "vnp_ResponseCode": code,
            "vnp_Message": message,
            "vnp_TmnCode": _echo(request.get("vnp_TmnCode")),
            "vnp_TxnRef": _echo(request.get("vnp_TxnRef")),
            "vnp_Amount": "",
            "vnp_OrderInfo": "",
            "vnp_BankCode": "",
            "vnp_PayDate": "",
            "vnp_TransactionNo": "",
            "vnp_TransactionType": "",
            "vnp_TransactionStatus": "",
        }
        if command == "querydr":
            answer |= {"vnp_PromotionCode": "", "vnp_PromotionAmount": ""}
        if payment is not None and command == "querydr":
            answer |= _querydr_state(payment)
        if payment is not None and refund is not None:
            answer |= {
                "vnp_Amount": str(refund.amount),
                "vnp_OrderInfo": refund.order_info,
                "vnp_BankCode": payment.bank_code or "",
                "vnp_PayDate": payment.pay_date or "",
                "vnp_TransactionNo": refund.transaction_no,
                "vnp_TransactionType": refund.transaction_type,
                "vnp_TransactionStatus": REFUNDED_STATUS,
            }
        if secret is not None:
            fields = QUERYDR_RESPONSE_FIELDS if command == "querydr" else REFUND_RESPONSE_FIELDS
            answer["vnp_SecureHash"] = sign_pipe(answer, fields, secret)
        return answer


def _echo(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _querydr_state(payment: Payment) -> dict[str, str]:
    """What querydr reports: the payment itself (type 01) until it is refunded, then the refund
    (type 02 once fully refunded, 03 while partially) with status 06."""
    state = {
        "vnp_Amount": str(payment.amount),
        "vnp_OrderInfo": payment.order_info,
        "vnp_BankCode": payment.bank_code or "",
        "vnp_PayDate": payment.pay_date or "",
        "vnp_TransactionNo": payment.transaction_no or "",
        "vnp_TransactionType": "01",
        "vnp_TransactionStatus": payment.transaction_status,
    }
    if payment.refunds:
        state["vnp_TransactionType"] = "02" if payment.refunded >= payment.amount else "03"
        state["vnp_TransactionStatus"] = REFUNDED_STATUS
    return state
