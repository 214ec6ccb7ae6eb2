"""The emulator's state and behaviour: the terminal, its payments, IPN delivery with VNPay's retries."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import httpx

from .settings import EmulatorSettings
from .signing import signed_query_string, verify_query

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
VNP_DATE_FORMAT = "%Y%m%d%H%M%S"
VNP_VERSION = "2.1.0"
# VNPay keeps a payment window of 15 minutes when the merchant sends no vnp_ExpireDate.
DEFAULT_PAYMENT_WINDOW = timedelta(minutes=15)
# The merchant's IPN answers that end VNPay's retries: 00 confirmed, 02 already confirmed.
IPN_FINAL_RSP_CODES = frozenset({"00", "02"})
BODY_KEEP_CHARS = 1000


async def send_attempt(attempt: dict[str, Any], request: Coroutine[Any, Any, httpx.Response]) -> httpx.Response | None:
    """Send one delivery (IPN or bank notification) and record its outcome in `attempt`; None if no answer."""
    try:
        response = await request
    except httpx.TimeoutException:
        attempt["error"] = "timeout"
        return None
    except httpx.HTTPError as exc:
        attempt["error"] = f"{type(exc).__name__}: {exc}"
        return None
    attempt["status_code"] = response.status_code
    attempt["body"] = response.text[:BODY_KEEP_CHARS]
    return response

REQUIRED_PAY_FIELDS = (
    "vnp_Version", "vnp_Command", "vnp_TmnCode", "vnp_Amount", "vnp_CurrCode", "vnp_TxnRef",
    "vnp_OrderInfo", "vnp_OrderType", "vnp_Locale", "vnp_ReturnUrl", "vnp_IpAddr", "vnp_CreateDate",
)
TXN_REF_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
BANK_CODE_RE = re.compile(r"^[A-Za-z0-9]{3,20}$")

# Codes shown on the error page, as VNPay's /paymentv2/Payment/Error.html?code=… does.
PAGE_ERRORS = {
    "01": "Giao dịch đã tồn tại và đã hoàn tất / Transaction already exists and is completed",
    "03": "Dữ liệu gửi sang không đúng định dạng / Invalid data format",
    "11": "Đã hết hạn chờ thanh toán / The payment window has expired",
    "70": "Sai chữ ký / Invalid signature",
    "72": "Không tìm thấy website (vnp_TmnCode) / Unknown terminal (vnp_TmnCode)",
    "94": "Giao dịch bị trùng lặp: vnp_TxnRef đã dùng trong ngày với số tiền khác / "
          "Duplicate transaction: vnp_TxnRef already used today with a different amount",
}

Outcome = Literal["approve", "decline"]


def vn_now() -> datetime:
    return datetime.now(VN_TZ).replace(microsecond=0)


def utc_iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_vnp_date(value: datetime) -> str:
    return value.astimezone(VN_TZ).strftime(VNP_DATE_FORMAT)


def parse_vnp_date(text: str) -> datetime | None:
    if len(text) != 14 or not text.isdigit():
        return None
    try:
        return datetime.strptime(text, VNP_DATE_FORMAT).replace(tzinfo=VN_TZ)
    except ValueError:
        return None


def append_query(url: str, query: str) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{query}"


class PaymentError(Exception):
    """A payment URL or a payment action refused; `code` is VNPay's error page code."""

    def __init__(self, code: str, detail: str = "", field: str | None = None, status: int = 400) -> None:
        self.code = code
        self.message = PAGE_ERRORS.get(code, "Lỗi / Error")
        self.detail = detail
        self.field = field
        self.status = status
        super().__init__(f"{code}: {self.message} {detail}".strip())

    def to_json(self) -> dict[str, Any]:
        return {
            "error": {"code": self.code, "message": self.message, "detail": self.detail, "field": self.field}
        }


def _invalid(name: str, vi: str, en: str) -> PaymentError:
    return PaymentError("03", f"{name} {vi} / {name} {en}", name)


@dataclass
class Terminal:
    """A merchant connection at VNPay: TMN code, hash secret, and the IPN URL registered for it."""

    tmn_code: str
    hash_secret: str
    ipn_url: str


@dataclass
class Delivery:
    """One delivery of a notification (IPN or bank transfer), made of one or more attempts."""

    index: int
    delay_seconds: float = 0.0
    state: str = "scheduled"  # scheduled | delivering | confirmed | failed | cancelled
    attempts: list[dict[str, Any]] = field(default_factory=list)
    first_attempt: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "state": self.state,
            "delay_seconds": self.delay_seconds,
            "attempts": list(self.attempts),
        }


@dataclass
class Refund:
    request_id: str
    transaction_type: str  # 02 full, 03 partial
    amount: int  # VND × 100, as vnp_Amount
    transaction_no: str
    create_by: str
    create_date: str
    order_info: str
    refunded_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "vnp_RequestId": self.request_id,
            "vnp_TransactionType": self.transaction_type,
            "vnp_Amount": str(self.amount),
            "amount_vnd": self.amount // 100,
            "vnp_TransactionNo": self.transaction_no,
            "vnp_CreateBy": self.create_by,
            "vnp_CreateDate": self.create_date,
            "vnp_OrderInfo": self.order_info,
            "refunded_at": utc_iso(self.refunded_at),
        }


@dataclass
class Payment:
    """One vnp_TxnRef on a terminal, from the first time its payment URL was opened."""

    tmn_code: str
    txn_ref: str
    amount: int  # VND × 100, as vnp_Amount
    order_info: str
    order_type: str
    locale: str
    return_url: str
    ip_addr: str
    create_date: str
    expire_at: datetime
    requested_bank_code: str
    token: str
    received_at: datetime
    status: str = "pending"  # pending | approved | declined | expired
    response_code: str | None = None
    transaction_status: str = "01"
    transaction_no: str | None = None
    bank_code: str | None = None
    bank_tran_no: str | None = None
    card_type: str | None = None
    pay_date: str | None = None
    refunds: list[Refund] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def amount_vnd(self) -> int:
        return self.amount // 100

    @property
    def refunded(self) -> int:
        return sum(refund.amount for refund in self.refunds)

    def result_fields(self) -> dict[str, str]:
        """The vnp_* fields VNPay signs onto the IPN and the return URL (without vnp_SecureHash)."""
        fields = {
            "vnp_Amount": str(self.amount),
            "vnp_BankCode": self.bank_code,
            "vnp_BankTranNo": self.bank_tran_no,
            "vnp_CardType": self.card_type,
            "vnp_OrderInfo": self.order_info,
            "vnp_PayDate": self.pay_date,
            "vnp_ResponseCode": self.response_code,
            "vnp_TmnCode": self.tmn_code,
            "vnp_TransactionNo": self.transaction_no,
            "vnp_TransactionStatus": self.transaction_status,
            "vnp_TxnRef": self.txn_ref,
        }
        return {key: value for key, value in fields.items() if value not in (None, "")}

    def to_json(self) -> dict[str, Any]:
        return {
            "tmn_code": self.tmn_code,
            "txn_ref": self.txn_ref,
            "status": self.status,
            "amount_vnd": self.amount_vnd,
            "order_info": self.order_info,
            "order_type": self.order_type,
            "locale": self.locale,
            "create_date": self.create_date,
            "expire_date": format_vnp_date(self.expire_at),
            "requested_bank_code": self.requested_bank_code or None,
            "return_url": self.return_url,
            "received_at": utc_iso(self.received_at),
            "result": self.result_fields() if self.status != "pending" else None,
            "refunded_vnd": self.refunded // 100,
            "refunds": [refund.to_json() for refund in self.refunds],
            "ipn_deliveries": [delivery.to_json() for delivery in self.deliveries],
        }


class Emulator:
    """All state lives here, in memory; `lock` guards every check-then-change on it."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.terminal = Terminal(
            tmn_code=settings.vnpay_tmn_code,
            hash_secret=settings.vnpay_hash_secret.get_secret_value(),
            ipn_url=settings.vnpay_emulator_ipn_url,
        )
        self.ipn_retries = settings.vnpay_emulator_ipn_retries
        self.ipn_retry_seconds = settings.vnpay_emulator_ipn_retry_seconds
        self.bank_notify_url = settings.bank_notify_url
        self.bank_notify_secret = settings.bank_notify_secret.get_secret_value()
        self.bank_notify_retries = settings.bank_notify_retries
        self.bank_notify_retry_seconds = settings.bank_notify_retry_seconds
        self.lock = asyncio.Lock()
        self.http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task] = set()
        self.reset_state()

    def reset_state(self) -> None:
        self.payments: dict[tuple[str, str], Payment] = {}
        self.by_token: dict[str, Payment] = {}
        self.request_ids: dict[tuple[str, str], datetime] = {}
        self.transfers: dict[str, Any] = {}
        # VNPay's transaction numbers are 8-digit and unique; start somewhere random so two runs differ.
        self._numbers = itertools.count(random.randrange(10_000_000, 90_000_000))

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        timeout = self.settings.vnpay_emulator_http_timeout_seconds
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)))

    async def stop(self) -> None:
        await self._cancel_tasks()
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reset(self) -> None:
        await self._cancel_tasks()
        async with self.lock:
            self.reset_state()

    def next_number(self) -> str:
        return str(next(self._numbers))

    def terminal_for(self, tmn_code: str) -> Terminal | None:
        return self.terminal if tmn_code == self.terminal.tmn_code else None

    def find_payment(self, txn_ref: str, tmn_code: str | None = None) -> Payment | None:
        return self.payments.get((tmn_code or self.terminal.tmn_code, txn_ref))

    # -- the payment URL -----------------------------------------------------------------------

    @staticmethod
    def parse_query(query: str) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key in params:
                raise PaymentError("03", f"Tham số {key} lặp lại / parameter {key} is repeated", key)
            params[key] = value
        return params

    def validate_payment_params(self, params: dict[str, str]) -> tuple[Terminal, datetime]:
        """Check a payment URL's parameters the way VNPay does; returns the terminal and expiry."""
        terminal = self.terminal_for(params.get("vnp_TmnCode", ""))
        if terminal is None:
            raise PaymentError("72", f"vnp_TmnCode={params.get('vnp_TmnCode', '')!r}", "vnp_TmnCode")
        if not verify_query(params, terminal.hash_secret):
            raise PaymentError("70", "vnp_SecureHash không khớp / does not match", "vnp_SecureHash")
        for name in REQUIRED_PAY_FIELDS:
            if not params.get(name):
                raise _invalid(name, "thiếu", "is required")
        fixed = {"vnp_Version": VNP_VERSION, "vnp_Command": "pay", "vnp_CurrCode": "VND"}
        for name, expected in fixed.items():
            if params[name] != expected:
                raise _invalid(name, f"phải là {expected}", f"must be {expected}")
        if params["vnp_Locale"] not in ("vn", "en"):
            raise _invalid("vnp_Locale", "phải là vn hoặc en", "must be vn or en")
        amount = params["vnp_Amount"]
        if not amount.isdigit() or len(amount) > 12 or int(amount) <= 0 or int(amount) % 100:
            raise _invalid("vnp_Amount", "phải là số tiền VND × 100", "must be the VND amount × 100")
        if not TXN_REF_RE.match(params["vnp_TxnRef"]):
            raise _invalid("vnp_TxnRef", "gồm 1–100 ký tự A-Za-z0-9-_", "must be 1–100 of A-Za-z0-9-_")
        if urlsplit(params["vnp_ReturnUrl"]).scheme not in ("http", "https"):
            raise _invalid("vnp_ReturnUrl", "phải là URL http(s)", "must be an http(s) URL")
        bank_code = params.get("vnp_BankCode", "")
        if bank_code and not BANK_CODE_RE.match(bank_code):
            raise _invalid("vnp_BankCode", "không hợp lệ", "is invalid")
        created = parse_vnp_date(params["vnp_CreateDate"])
        if created is None:
            raise _invalid("vnp_CreateDate", "phải là yyyyMMddHHmmss GMT+7", "must be yyyyMMddHHmmss GMT+7")
        expire_at = created + DEFAULT_PAYMENT_WINDOW
        if params.get("vnp_ExpireDate"):
            parsed = parse_vnp_date(params["vnp_ExpireDate"])
            if parsed is None or parsed <= created:
                raise _invalid("vnp_ExpireDate", "phải là yyyyMMddHHmmss sau vnp_CreateDate",
                               "must be yyyyMMddHHmmss after vnp_CreateDate")
            expire_at = parsed
        if vn_now() > expire_at:
            raise PaymentError("11", f"vnp_ExpireDate={format_vnp_date(expire_at)}", "vnp_ExpireDate")
        return terminal, expire_at

    async def open_payment(self, params: dict[str, str]) -> Payment:
        """Accept a signed payment URL: a new TxnRef becomes a pending payment; reopening the same
        pending one (same amount) shows it again."""
        terminal, expire_at = self.validate_payment_params(params)
        key = (terminal.tmn_code, params["vnp_TxnRef"])
        now = vn_now()
        async with self.lock:
            existing = self.payments.get(key)
            if existing is not None and existing.received_at.astimezone(VN_TZ).date() == now.date():
                if existing.amount != int(params["vnp_Amount"]):
                    raise PaymentError("94", f"vnp_TxnRef={key[1]}", "vnp_TxnRef")
                if existing.status != "pending":
                    raise _completed(existing)
                return existing
            if existing is not None:
                self.by_token.pop(existing.token, None)
            payment = Payment(
                tmn_code=terminal.tmn_code,
                txn_ref=key[1],
                amount=int(params["vnp_Amount"]),
                order_info=params["vnp_OrderInfo"],
                order_type=params["vnp_OrderType"],
                locale=params["vnp_Locale"],
                return_url=params["vnp_ReturnUrl"],
                ip_addr=params["vnp_IpAddr"],
                create_date=params["vnp_CreateDate"],
                expire_at=expire_at,
                requested_bank_code=params.get("vnp_BankCode", ""),
                token=secrets.token_urlsafe(16),
                received_at=datetime.now(timezone.utc),
            )
            self.payments[key] = payment
            self.by_token[payment.token] = payment
            return payment

    async def complete(
        self,
        payment: Payment,
        outcome: Outcome,
        bank_code: str | None = None,
        card_type: str | None = None,
    ) -> Payment:
        """Settle a pending payment once: approved (00/00), cancelled by the customer (24/02), or,
        when its window closed while the page was open, expired (11/02)."""
        async with self.lock:
            if payment.status != "pending":
                raise _completed(payment)
            payment.pay_date = format_vnp_date(vn_now())
            if vn_now() > payment.expire_at:
                outcome_fields = ("expired", "11", "02")
            elif outcome == "approve":
                outcome_fields = ("approved", "00", "00")
            else:
                outcome_fields = ("declined", "24", "02")
            payment.status, payment.response_code, payment.transaction_status = outcome_fields
            if payment.status == "approved":
                payment.transaction_no = self.next_number()
                default_bank, default_card = _method_for(payment.requested_bank_code)
                payment.bank_code = bank_code or default_bank
                payment.card_type = card_type or default_card
                payment.bank_tran_no = f"VNP{payment.transaction_no}"
            else:
                # As at VNPay: a payment that never reached a bank carries TransactionNo 0 and no BankTranNo.
                payment.transaction_no = "0"
                payment.bank_code = bank_code or "VNPAY"
                payment.card_type = card_type or "QRCODE"
            return payment

    def return_url(self, payment: Payment) -> str:
        return append_query(payment.return_url, self.signed_result_query(payment))

    def signed_result_query(self, payment: Payment) -> str:
        return signed_query_string(payment.result_fields(), self.terminal.hash_secret)

    # -- IPN ---------------------------------------------------------------------------------------

    def schedule_ipn(
        self, payment: Payment, deliveries: int, delay_seconds: float
    ) -> tuple[list[Delivery], asyncio.Task | None]:
        """Deliver the IPN `deliveries` times, one after the other, after `delay_seconds`; runs as a
        background task so a late delivery never holds up the caller."""
        if deliveries <= 0:
            return [], None
        records = []
        for _ in range(deliveries):
            record = Delivery(index=len(payment.deliveries) + 1, delay_seconds=delay_seconds)
            payment.deliveries.append(record)
            records.append(record)
        task = self.spawn(self._deliver_ipn_series(payment, records, delay_seconds))
        return records, task

    async def _deliver_ipn_series(
        self, payment: Payment, records: list[Delivery], delay_seconds: float
    ) -> None:
        try:
            if delay_seconds > 0:
                await asyncio.sleep(delay_seconds)
            for record in records:
                await self._deliver_ipn(payment, record)
        finally:
            for record in records:
                if not record.done.is_set():
                    record.state = "cancelled"
                    record.first_attempt.set()
                    record.done.set()

    async def _deliver_ipn(self, payment: Payment, record: Delivery) -> None:
        record.state = "delivering"
        url = append_query(self.terminal.ipn_url, self.signed_result_query(payment))
        attempts = 1 + self.ipn_retries
        try:
            for number in range(1, attempts + 1):
                attempt = await self._ipn_attempt(url, number)
                record.attempts.append(attempt)
                record.first_attempt.set()
                if not attempt["retry"]:
                    record.state = "confirmed"
                    return
                if number < attempts:
                    await asyncio.sleep(self.ipn_retry_seconds)
            record.state = "failed"
        except asyncio.CancelledError:
            record.state = "cancelled"
            raise
        finally:
            record.first_attempt.set()
            record.done.set()

    async def _ipn_attempt(self, url: str, number: int) -> dict[str, Any]:
        attempt: dict[str, Any] = {
            "attempt": number, "at": utc_iso(datetime.now(timezone.utc)), "url": url,
            "status_code": None, "body": None, "rsp_code": None, "message": None,
            "error": None, "retry": True,
        }
        assert self.http is not None, "the emulator's HTTP client starts with the app"
        response = await send_attempt(attempt, self.http.get(url))
        if response is None:
            return attempt
        try:
            answer = json.loads(response.text)
        except ValueError:
            attempt["error"] = "not JSON"
            return attempt
        if not isinstance(answer, dict):
            attempt["error"] = "not a JSON object"
            return attempt
        attempt["rsp_code"] = None if answer.get("RspCode") is None else str(answer.get("RspCode"))
        attempt["message"] = answer.get("Message")
        attempt["retry"] = not (response.is_success and attempt["rsp_code"] in IPN_FINAL_RSP_CODES)
        return attempt

    async def wait_for_ipn(self, payment: Payment, timeout: float) -> bool:
        """Wait until every IPN delivery of the payment has finished; False on timeout."""
        pending = [record.done.wait() for record in payment.deliveries if not record.done.is_set()]
        if not pending:
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending), timeout)
            return True
        return False


def _completed(payment: Payment) -> PaymentError:
    return PaymentError("01", f"vnp_TxnRef={payment.txn_ref} ({payment.status})", "vnp_TxnRef", status=409)


def _method_for(requested_bank_code: str) -> tuple[str, str]:
    """Bank code and card type reported for an approved payment, from what the merchant asked for."""
    code = requested_bank_code.upper()
    if code == "VNPAYQR":
        return "NCB", "QRCODE"
    if code == "INTCARD":
        return "VISA", "CREDIT"
    if code in ("", "VNBANK"):
        return "NCB", "ATM"
    return code, "ATM"
