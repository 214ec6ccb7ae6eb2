"""The bank side of VietQR: a customer scans a NAPAS QR and pays; the bank notifies the merchant, signed."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .emulator import VN_TZ, Delivery, Emulator, send_attempt, utc_iso
from .emvco import EmvcoError, parse_vietqr
from .signing import bank_signature_header

SIGNATURE_HEADER = "X-Bank-Signature"
MAX_BACKOFF_SECONDS = 30.0


class ScanError(ValueError):
    """A scan refused; `field` names the request field or the payload's EMVCo tag."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "message": self.message}}


@dataclass
class BankTransfer:
    id: str
    notification: dict[str, Any]
    raw_body: bytes
    service_code: str
    point_of_initiation: str
    deliveries: list[Delivery] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "notification": self.notification,
            "service_code": self.service_code,
            "point_of_initiation": self.point_of_initiation,
            "deliveries": [delivery.to_json() for delivery in self.deliveries],
        }


class Bank:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._sequence = itertools.count(1)

    def _new_id(self) -> str:
        # Sortable like a core-banking reference: FT + GMT+7 timestamp + sequence.
        return f"FT{datetime.now(VN_TZ):%y%m%d%H%M%S}{next(self._sequence):06d}"

    async def scan(
        self,
        payload: str,
        amount: int | None = None,
        bank_transaction_id: str | None = None,
        description: str | None = None,
        deliveries: int = 1,
    ) -> BankTransfer:
        try:
            qr = parse_vietqr(payload)
        except EmvcoError as exc:
            raise ScanError(f"payload.{exc.field}", exc.message) from exc
        if qr.amount is None and amount is None:
            raise ScanError("amount", "QR không có số tiền (tag 54), hãy gửi amount / the QR has no amount: send one")
        if qr.amount is not None and amount is not None and amount != qr.amount:
            raise ScanError("amount", f"QR cố định số tiền {qr.amount} / the QR fixes the amount")
        async with self.emulator.lock:
            transfer_id = bank_transaction_id or self._new_id()
            if transfer_id in self.emulator.transfers:
                raise ScanError("bank_transaction_id", f"{transfer_id} đã dùng / already used", status=409)
            notification = {
                "id": transfer_id,
                "bank_bin": qr.bank_bin,
                "account_no": qr.account_no,
                "amount": qr.amount if qr.amount is not None else amount,
                "reference": qr.purpose,
                "description": description if description is not None else qr.purpose,
                "transferred_at": utc_iso(datetime.now(timezone.utc)),
            }
            raw = json.dumps(notification, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            transfer = BankTransfer(transfer_id, notification, raw, qr.service_code, qr.point_of_initiation)
            self.emulator.transfers[transfer_id] = transfer
        for index in range(1, deliveries + 1):
            record = Delivery(index=index)
            transfer.deliveries.append(record)
            await self._deliver(transfer, record)
        return transfer

    async def _deliver(self, transfer: BankTransfer, record: Delivery) -> None:
        record.state = "delivering"
        attempts = 1 + self.emulator.bank_notify_retries
        try:
            for number in range(1, attempts + 1):
                attempt = await self._attempt(transfer, number)
                record.attempts.append(attempt)
                if not attempt["retry"]:
                    record.state = "confirmed"
                    return
                if number < attempts:
                    backoff = self.emulator.bank_notify_retry_seconds * 2 ** (number - 1)
                    await asyncio.sleep(min(backoff, MAX_BACKOFF_SECONDS))
            record.state = "failed"
        finally:
            record.first_attempt.set()
            record.done.set()

    async def _attempt(self, transfer: BankTransfer, number: int) -> dict[str, Any]:
        # Each attempt is signed afresh so that the receiver's timestamp tolerance holds on retries.
        secret = self.emulator.bank_notify_secret
        signature = bank_signature_header(secret, int(time.time()), transfer.raw_body)
        attempt: dict[str, Any] = {
            "attempt": number, "at": utc_iso(datetime.now(timezone.utc)),
            "url": self.emulator.bank_notify_url, "signature": signature, "status_code": None, "body": None, "error": None, "retry": True,
        }
        assert self.emulator.http is not None, "the emulator's HTTP client starts with the app"
        response = await send_attempt(attempt, self.emulator.http.post(
            self.emulator.bank_notify_url, content=transfer.raw_body,
            headers={"Content-Type": "application/json; charset=utf-8", SIGNATURE_HEADER: signature}))
        if response is None:
            return attempt
        attempt["retry"] = not response.is_success
        return attempt
