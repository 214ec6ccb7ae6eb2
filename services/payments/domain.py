"""The rules of payments: intent states and their transitions, refunds, IPN decisions, the ledger's entries."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from shared.errors import Conflict, InvalidRequest

PaymentMethod = Literal["vnpay", "vietqr"]
PAYMENT_METHODS: tuple[str, ...] = ("vnpay", "vietqr")
CURRENCY = "vnd"

# VNPay's vnp_Amount is at most 12 digits and carries VND ×100.
MAX_AMOUNT = 9_999_999_999
MIN_AMOUNT = 1

REQUIRES_PAYMENT_METHOD = "requires_payment_method"
REQUIRES_ACTION = "requires_action"
PROCESSING = "processing"
SUCCEEDED = "succeeded"
CANCELED = "canceled"
# States in which money may still arrive for the intent.
OPEN_STATES = (REQUIRES_PAYMENT_METHOD, REQUIRES_ACTION, PROCESSING)
# A processing intent is one the customer reports paid at VNPay: cancelling it could strand the money.
CANCELABLE_STATES = (REQUIRES_PAYMENT_METHOD, REQUIRES_ACTION)

CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned", "automatic")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")

DEFAULT_INTENT_LIFETIME = timedelta(minutes=15)
MIN_INTENT_LIFETIME = timedelta(seconds=5)
MAX_INTENT_LIFETIME = timedelta(days=1)


def check_amount(amount: int, param: str = "amount") -> int:
    if amount < MIN_AMOUNT:
        raise InvalidRequest("Số tiền phải lớn hơn 0 đồng / amount must be at least 1 VND",
                             param=param, code="amount_too_small")
    if amount > MAX_AMOUNT:
        raise InvalidRequest(f"Số tiền vượt quá {MAX_AMOUNT} đồng / amount must be at most {MAX_AMOUNT} VND",
                             param=param, code="amount_too_large")
    return amount


def check_currency(currency: str) -> str:
    if currency.lower() != CURRENCY:
        raise InvalidRequest("Chỉ hỗ trợ VND / only the currency vnd is supported", param="currency",
                             code="parameter_invalid")
    return CURRENCY


def check_methods(methods: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(methods or PAYMENT_METHODS))
    unknown = [m for m in chosen if m not in PAYMENT_METHODS]
    if unknown or not chosen:
        raise InvalidRequest(f"Phương thức thanh toán không hỗ trợ: {', '.join(unknown) or '(trống)'} / "
                             "payment_method_types must be among vnpay, vietqr", param="payment_method_types")
    return chosen


def intent_expiry(now: datetime, requested: datetime | None) -> datetime:
    if requested is None:
        return now + DEFAULT_INTENT_LIFETIME
    if not (now + MIN_INTENT_LIFETIME <= requested <= now + MAX_INTENT_LIFETIME):
        raise InvalidRequest("Thời hạn thanh toán phải từ 5 giây đến 1 ngày / expires_at must be between "
                             "5 seconds and 1 day from now", param="expires_at")
    return requested


def new_client_secret(intent_id: str) -> str:
    return f"{intent_id}_secret_{secrets.token_urlsafe(18)}"


_REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: people may type it into a transfer


def new_transfer_reference() -> str:
    """What the payer's bank carries in the transfer description so the notification finds the intent:
    short (NAPAS allows 25 characters), alphanumeric (banks strip punctuation), unguessable enough."""
    return "QT" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(10))


def vnpay_txn_ref(intent_id: str, attempt: int) -> str:
    """VNPay wants an alphanumeric vnp_TxnRef that never repeats within a day: one per payment attempt."""
    return intent_id.split("_", 1)[1] + f"A{attempt:02d}"


def check_cancelable(status: str, intent_id: str) -> None:
    if status not in CANCELABLE_STATES:
        raise InvalidRequest(
            f"Không thể hủy khoản thanh toán ở trạng thái {status} / You cannot cancel this PaymentIntent "
            f"because it has a status of {status}.", code="payment_intent_unexpected_state",
            param=None, payment_intent=intent_id)


def check_confirmable(status: str, intent_id: str) -> None:
    if status not in (REQUIRES_PAYMENT_METHOD, REQUIRES_ACTION):
        raise InvalidRequest(
            f"Không thể xác nhận khoản thanh toán ở trạng thái {status} / You cannot confirm this "
            f"PaymentIntent because it has a status of {status}.", code="payment_intent_unexpected_state")


# -- IPN (VNPay's order of checks: signature 97 → order 01 → amount 04 → already confirmed 02 → 00) ---------

class IpnAnswer(str, Enum):
    CONFIRMED = "00"
    ORDER_NOT_FOUND = "01"
    ALREADY_CONFIRMED = "02"
    INVALID_AMOUNT = "04"
    INVALID_SIGNATURE = "97"
    UNKNOWN_ERROR = "99"

    @property
    def message(self) -> str:
        return {
            "00": "Confirm Success", "01": "Order not found", "02": "Order already confirmed",
            "04": "Invalid amount", "97": "Invalid signature", "99": "Unknown error",
        }[self.value]


class IpnAction(str, Enum):
    SUCCEED = "succeed"            # the intent is paid by this attempt
    FAIL = "fail"                  # the attempt failed: the intent may be paid another way
    FLAG_LATE_PAYMENT = "flag"     # money arrived for an intent that no longer takes it: refund it
    NOTHING = "nothing"


@dataclass(frozen=True)
class IpnDecision:
    answer: IpnAnswer
    action: IpnAction


def decide_ipn(*, intent_status: str | None, attempt_amount: int | None, attempt_result: str | None,
               paid_amount: int | None, paid: bool) -> IpnDecision:
    """What to do with a correctly signed IPN, in VNPay's order: order → amount → already confirmed."""
    if intent_status is None or attempt_amount is None:
        return IpnDecision(IpnAnswer.ORDER_NOT_FOUND, IpnAction.NOTHING)
    if paid_amount is None or paid_amount != attempt_amount:
        # VNPay has recorded the money even when we answer 04: the caller flags a paid mismatch for refund.
        return IpnDecision(IpnAnswer.INVALID_AMOUNT, IpnAction.FLAG_LATE_PAYMENT if paid else IpnAction.NOTHING)
    if attempt_result is not None:
        return IpnDecision(IpnAnswer.ALREADY_CONFIRMED, IpnAction.NOTHING)
    if not paid:
        return IpnDecision(IpnAnswer.CONFIRMED, IpnAction.FAIL)
    if intent_status in OPEN_STATES:
        return IpnDecision(IpnAnswer.CONFIRMED, IpnAction.SUCCEED)
    return IpnDecision(IpnAnswer.CONFIRMED, IpnAction.FLAG_LATE_PAYMENT)


# -- refunds ------------------------------------------------------------------------------------------------

def refund_amount(requested: int | None, *, amount_received: int, amount_refunded: int) -> int:
    remaining = amount_received - amount_refunded
    amount = remaining if requested is None else requested
    check_amount(amount)
    if amount > remaining:
        raise InvalidRequest(
            f"Số tiền hoàn ({amount}) lớn hơn số còn có thể hoàn ({remaining}) / Refund amount ({amount}) is "
            f"greater than unrefunded amount on charge ({remaining})", param="amount", code="amount_too_large")
    return amount


# -- ledger (double entry: every transaction's entries sum to zero) ------------------------------------------

def merchant_payable(merchant_id: str) -> str:
    return f"merchant:{merchant_id}:payable"


def clearing_account(method: str) -> str:
    # Where the money sits before it reaches the merchant: VNPay's settlement, or the NAPAS transfer.
    return f"clearing:{method}"


@dataclass(frozen=True)
class Entry:
    account: str
    amount: int  # debit positive, credit negative


def capture_entries(merchant_id: str, method: str, amount: int) -> list[Entry]:
    return [Entry(clearing_account(method), amount), Entry(merchant_payable(merchant_id), -amount)]


def refund_entries(merchant_id: str, method: str, amount: int) -> list[Entry]:
    return [Entry(merchant_payable(merchant_id), amount), Entry(clearing_account(method), -amount)]


def balanced(entries: list[Entry]) -> bool:
    return sum(e.amount for e in entries) == 0 and all(e.amount != 0 for e in entries)


# -- refunds held for review (VNPay's answer was lost: it may or may not have refunded) ----------------------

REVIEW_OUTCOMES = ("succeeded", "failed")
VNPAY_REFUNDED_STATUS = "06"  # querydr: VNPAY sent a refund of this payment to the bank

_UNKNOWN_REASONS = {
    "vnpay_transaction_not_found": "VNPay không tìm thấy giao dịch / VNPay does not find the payment",
    "vnpay_payment_not_settled": "VNPay báo giao dịch gốc chưa thành công / VNPay reports the payment as not "
                                 "successful",
    "vnpay_refund_processing": "VNPay đang xử lý hoàn tiền / VNPay reports a refund still processing",
    "vnpay_disagrees_with_records": "VNPay báo chưa hoàn tiền nhưng sổ ghi đã có hoàn tiền thành công / VNPay "
                                    "reports no refund although a refund of this payment succeeded",
    "other_refunds_in_doubt": "Một hoàn tiền khác của khoản này cũng chưa rõ kết quả / another refund of this "
                              "payment has an unknown outcome too",
    "vnpay_refund_total_unknown": "VNPay không cho biết đã hoàn bao nhiêu; khoản này có hoàn tiền khác / VNPay "
                                  "does not report the amount refunded, and this payment has other refunds",
    "vnpay_answer_unrecognised": "Không hiểu câu trả lời của VNPay / VNPay's answer is not recognised",
}


@dataclass(frozen=True)
class RefundVerdict:
    outcome: str | None  # "succeeded" | "failed"; None: VNPay's answer does not tell
    reason: str

    @property
    def message(self) -> str:
        return _UNKNOWN_REASONS.get(self.reason, self.reason)


def judge_held_refund(*, found: bool, transaction_type: str, transaction_status: str, refund_amount: int,
                      amount_received: int, others_succeeded: int, others_in_doubt: bool) -> RefundVerdict:
    """Did a refund whose answer was lost reach VNPay? querydr reports only whether the payment has been
    refunded (type 03 partly, 02 fully; status 06), never how much: that settles it only when no other
    refund of the payment can explain what VNPay reports. `others_*`: this payment's other VNPay refunds,
    read after the query (a refund is marked sent before it is sent)."""
    if not found:
        return RefundVerdict(None, "vnpay_transaction_not_found")
    if transaction_type == "01":
        if transaction_status != "00":
            return RefundVerdict(None, "vnpay_payment_not_settled")
        if others_succeeded:
            return RefundVerdict(None, "vnpay_disagrees_with_records")
        # Paid and never refunded at VNPay: this refund did not happen.
        return RefundVerdict("failed", "vnpay_reports_no_refund")
    if transaction_type not in ("02", "03"):
        return RefundVerdict(None, "vnpay_answer_unrecognised")
    if transaction_status != VNPAY_REFUNDED_STATUS:
        return RefundVerdict(None, "vnpay_refund_processing")
    if others_in_doubt:
        return RefundVerdict(None, "other_refunds_in_doubt")
    if transaction_type == "02" and others_succeeded + refund_amount == amount_received:
        # Fully refunded, and only with this refund do our refunds add up to the whole payment.
        return RefundVerdict("succeeded", "vnpay_reports_full_refund")
    if transaction_type == "03" and others_succeeded == 0:
        # Refunded in part, and no other refund of ours reached VNPay: this one did.
        return RefundVerdict("succeeded", "vnpay_reports_refund")
    return RefundVerdict(None, "vnpay_refund_total_unknown")


def check_settled_outcome(status: str, wanted: str | None, refund_id: str) -> None:
    """A reconcile call for a refund already settled: fine (idempotent) unless it asks for the other outcome."""
    if wanted is not None and wanted != status:
        raise Conflict(f"Hoàn tiền {refund_id} đã được xác định là {status} / refund {refund_id} is already "
                       f"{status}", code="refund_already_settled", status=status)


# -- flagged payments ---------------------------------------------------------------------------------------

FLAG_OPEN = "refund_required"
FLAG_RESOLVED = "resolved"
FLAG_STATUSES = (FLAG_OPEN, FLAG_RESOLVED)
FLAG_RESOLUTIONS = ("refunded_outside", "applied", "written_off")


def check_flag_resolution(current: str | None, wanted: str, flag_id: str) -> None:
    """Resolving a flagged payment again: fine with the same resolution, refused with another."""
    if current is not None and current != wanted:
        raise Conflict(f"Khoản {flag_id} đã được xử lý là {current} / flagged payment {flag_id} is already "
                       f"resolved as {current}", code="flagged_payment_already_resolved", resolution=current)
