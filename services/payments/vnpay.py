"""VNPay v2.1.0 as VNPay specifies it: the signed payment URL, IPN/return verification, querydr and refund over httpx."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

import httpx
import structlog

from shared.clock import to_vn, utcnow

log = structlog.get_logger(__name__)

VERSION = "2.1.0"
DATE_FORMAT = "%Y%m%d%H%M%S"
UNSIGNED = frozenset({"vnp_SecureHash", "vnp_SecureHashType"})

QUERYDR_REQUEST_FIELDS = (
    "vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TxnRef",
    "vnp_TransactionDate", "vnp_CreateDate", "vnp_IpAddr", "vnp_OrderInfo",
)
REFUND_REQUEST_FIELDS = (
    "vnp_RequestId", "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_TransactionType", "vnp_TxnRef",
    "vnp_Amount", "vnp_TransactionNo", "vnp_TransactionDate", "vnp_CreateBy", "vnp_CreateDate",
    "vnp_IpAddr", "vnp_OrderInfo",
)
REFUND_RESPONSE_FIELDS = (
    "vnp_ResponseId", "vnp_Command", "vnp_ResponseCode", "vnp_Message", "vnp_TmnCode", "vnp_TxnRef",
    "vnp_Amount", "vnp_BankCode", "vnp_PayDate", "vnp_TransactionNo", "vnp_TransactionType",
    "vnp_TransactionStatus", "vnp_OrderInfo",
)
# VNPay's querydr response checksum ends with the promotion fields, even when they are empty.
QUERYDR_RESPONSE_FIELDS = REFUND_RESPONSE_FIELDS + ("vnp_PromotionCode", "vnp_PromotionAmount")

REFUND_FULL = "02"
REFUND_PARTIAL = "03"


def vnpay_date(moment: datetime) -> str:
    """VNPay's dates: yyyyMMddHHmmss in GMT+7."""
    return to_vn(moment).strftime(DATE_FORMAT)


def vnpay_amount(amount_vnd: int) -> str:
    """VNPay carries amounts ×100 (as if VND had two decimals)."""
    return str(amount_vnd * 100)


def amount_from_vnpay(value: str) -> int | None:
    if not value.isdigit() or int(value) % 100:
        return None
    return int(value) // 100


def sign_data(params: Mapping[str, Any]) -> str:
    """The text VNPay signs: vnp_* fields but the hash ones, empty ones dropped, sorted, quote_plus-encoded."""
    items = sorted((k, str(v)) for k, v in params.items()
                   if k.startswith("vnp_") and k not in UNSIGNED and v not in (None, ""))
    return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in items)


def _hmac512(secret: str, data: str) -> str:
    return hmac.new(secret.encode(), data.encode("utf-8"), hashlib.sha512).hexdigest()


def query_checksum(params: Mapping[str, Any], secret: str) -> str:
    return _hmac512(secret, sign_data(params))


def verify_query(params: Mapping[str, str], secret: str) -> bool:
    given = str(params.get("vnp_SecureHash") or "")
    return bool(given) and hmac.compare_digest(given.lower(), query_checksum(params, secret))


def pipe_checksum(values: Mapping[str, Any], fields: tuple[str, ...], secret: str) -> str:
    data = "|".join("" if values.get(name) is None else str(values.get(name)) for name in fields)
    return _hmac512(secret, data)


def is_paid(params: Mapping[str, str]) -> bool:
    # VNPay: a payment succeeded only when both the response code and the transaction status are 00.
    return params.get("vnp_ResponseCode") == "00" and params.get("vnp_TransactionStatus") == "00"


class VNPayError(Exception):
    """VNPay's answer is unknown or untrustworthy: the request may have been applied."""


class VNPayUnreachable(VNPayError):
    """No request reached VNPay (the connection was refused): safe to send again later."""


@dataclass(frozen=True)
class VNPayConfig:
    pay_url: str
    api_url: str
    tmn_code: str
    hash_secret: str
    return_url: str
    timeout_seconds: float = 10.0
    attempts: int = 3


@dataclass(frozen=True)
class QueryResult:
    response_code: str
    transaction_status: str
    transaction_type: str
    amount: int | None
    transaction_no: str
    bank_code: str
    pay_date: str
    raw: dict[str, Any]

    @property
    def found(self) -> bool:
        return self.response_code == "00"

    @property
    def paid(self) -> bool:
        return self.found and self.transaction_status == "00"

    @property
    def pending(self) -> bool:
        return self.found and self.transaction_status == "01"


@dataclass(frozen=True)
class RefundResult:
    response_code: str
    message: str
    transaction_no: str
    raw: dict[str, Any]

    @property
    def succeeded(self) -> bool:
        return self.response_code == "00"


class VNPayClient:
    """One terminal (TMN code + hash secret) at one VNPay base URL: the emulator, the sandbox or production."""

    def __init__(self, config: VNPayConfig, http: httpx.AsyncClient | None = None):
        self.config = config
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_seconds, connect=3.0))

    async def close(self) -> None:
        await self._http.aclose()

    # -- payment URL ------------------------------------------------------------------------------------

    def payment_url(self, *, txn_ref: str, amount: int, order_info: str, created: datetime,
                    expires: datetime, ip_address: str, bank_code: str | None = None,
                    locale: str = "vn") -> str:
        params = {
            "vnp_Version": VERSION, "vnp_Command": "pay", "vnp_TmnCode": self.config.tmn_code,
            "vnp_Amount": vnpay_amount(amount), "vnp_CurrCode": "VND", "vnp_TxnRef": txn_ref,
            "vnp_OrderInfo": order_info, "vnp_OrderType": "other", "vnp_Locale": locale,
            "vnp_ReturnUrl": self.config.return_url, "vnp_IpAddr": ip_address,
            "vnp_CreateDate": vnpay_date(created), "vnp_ExpireDate": vnpay_date(expires),
            "vnp_BankCode": bank_code or "",
        }
        data = sign_data(params)
        return f"{self.config.pay_url}?{data}&vnp_SecureHash={_hmac512(self.config.hash_secret, data)}"

    def verify(self, params: Mapping[str, str]) -> bool:
        """An IPN or a return query: signed by our secret, for our terminal."""
        return verify_query(params, self.config.hash_secret) and params.get("vnp_TmnCode") == self.config.tmn_code

    # -- merchant web API -------------------------------------------------------------------------------

    async def querydr(self, *, txn_ref: str, transaction_date: str, order_info: str,
                      ip_address: str = "127.0.0.1") -> QueryResult:
        async def body() -> dict[str, Any]:
            request = {
                "vnp_RequestId": _request_id(), "vnp_Version": VERSION, "vnp_Command": "querydr",
                "vnp_TmnCode": self.config.tmn_code, "vnp_TxnRef": txn_ref, "vnp_OrderInfo": order_info,
                "vnp_TransactionDate": transaction_date, "vnp_CreateDate": vnpay_date(utcnow()),
                "vnp_IpAddr": ip_address,
            }
            request["vnp_SecureHash"] = pipe_checksum(request, QUERYDR_REQUEST_FIELDS, self.config.hash_secret)
            return request

        # A query changes nothing at VNPay, so every failure may be retried with a fresh request id.
        answer = await self._post(body, retry_after_send=True)
        self._check_response(answer, QUERYDR_RESPONSE_FIELDS)
        return QueryResult(
            response_code=str(answer.get("vnp_ResponseCode", "")),
            transaction_status=str(answer.get("vnp_TransactionStatus", "")),
            transaction_type=str(answer.get("vnp_TransactionType", "")),
            amount=amount_from_vnpay(str(answer.get("vnp_Amount", ""))),
            transaction_no=str(answer.get("vnp_TransactionNo", "")),
            bank_code=str(answer.get("vnp_BankCode", "")), pay_date=str(answer.get("vnp_PayDate", "")),
            raw=answer)

    async def refund(self, *, txn_ref: str, transaction_date: str, amount: int, full: bool,
                     transaction_no: str | None, created_by: str, order_info: str,
                     ip_address: str = "127.0.0.1") -> RefundResult:
        async def body() -> dict[str, Any]:
            request = {
                "vnp_RequestId": _request_id(), "vnp_Version": VERSION, "vnp_Command": "refund",
                "vnp_TmnCode": self.config.tmn_code,
                "vnp_TransactionType": REFUND_FULL if full else REFUND_PARTIAL,
                "vnp_TxnRef": txn_ref, "vnp_Amount": vnpay_amount(amount),
                "vnp_TransactionNo": transaction_no or "", "vnp_TransactionDate": transaction_date,
                "vnp_CreateBy": created_by, "vnp_CreateDate": vnpay_date(utcnow()), "vnp_IpAddr": ip_address,
                "vnp_OrderInfo": order_info,
            }
            request["vnp_SecureHash"] = pipe_checksum(request, REFUND_REQUEST_FIELDS, self.config.hash_secret)
            return request

        # A refund that may have reached VNPay is never re-sent blindly: only a refused connection is retried.
        answer = await self._post(body, retry_after_send=False)
        self._check_response(answer, REFUND_RESPONSE_FIELDS)
        return RefundResult(response_code=str(answer.get("vnp_ResponseCode", "")),
                            message=str(answer.get("vnp_Message", "")),
                            transaction_no=str(answer.get("vnp_TransactionNo", "")), raw=answer)

    async def _post(self, make_body, *, retry_after_send: bool) -> dict[str, Any]:
        last: Exception | None = None
        sent = False
        for attempt in range(1, self.config.attempts + 1):
            try:
                response = await self._http.post(self.config.api_url, json=await make_body())
                if response.status_code >= 500 and retry_after_send:
                    raise VNPayError(f"VNPay answered HTTP {response.status_code}")
                answer = response.json()
                if not isinstance(answer, dict):
                    raise VNPayError("VNPay answered something that is not a JSON object")
                return answer
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = exc  # never reached VNPay: always safe to try again
            except (httpx.HTTPError, VNPayError, ValueError) as exc:
                last = exc
                sent = True
                if not retry_after_send:
                    break
            log.warning("vnpay_call_failed", attempt=attempt, error=repr(last))
            await asyncio.sleep(min(0.2 * 2 ** attempt, 2.0))
        kind = VNPayError if sent else VNPayUnreachable
        raise kind(f"VNPay không phản hồi / VNPay unavailable: {last!r}")

    def _check_response(self, answer: dict[str, Any], fields: tuple[str, ...]) -> None:
        # VNPay leaves answers about an unknown terminal unsigned; anything else must carry our checksum.
        given = str(answer.get("vnp_SecureHash") or "").lower()
        expected = pipe_checksum(answer, fields, self.config.hash_secret)
        if not given or not hmac.compare_digest(given, expected):
            raise VNPayError(f"VNPay answer with a bad checksum (code {answer.get('vnp_ResponseCode')!r})")


def _request_id() -> str:
    # 32 alphanumerics, unique per terminal per day.
    return secrets.token_hex(16)
