"""Applying what the providers report — VNPay's IPN and return, querydr answers, bank transfer notices — to intents."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.outbox import Outbox, Transaction

from services.payments import domain, store
from services.payments.domain import IpnAction, IpnAnswer
from services.payments.vnpay import amount_from_vnpay, is_paid

log = structlog.get_logger(__name__)


def _attempt(intent: dict | None, txn_ref: str) -> dict | None:
    if intent is None:
        return None
    return next((a for a in intent.get("vnpay_attempts", []) if a["txn_ref"] == txn_ref), None)


async def apply_vnpay_result(outbox: Outbox, providers: store.Providers, result: Mapping[str, str]) -> IpnAnswer:
    """One VNPay transaction outcome (from an IPN or from querydr), applied once; the answer is the IPN's RspCode.
    The signature has been checked by the caller."""
    txn_ref = str(result.get("vnp_TxnRef", ""))
    paid = is_paid(result)
    paid_amount = amount_from_vnpay(str(result.get("vnp_Amount", "")))

    async def apply(tx: Transaction) -> IpnAnswer:
        intent = await tx.db[store.INTENTS].find_one({"vnpay_txn_refs": txn_ref}, session=tx.session) \
            if txn_ref else None
        attempt = _attempt(intent, txn_ref)
        decision = domain.decide_ipn(
            intent_status=intent["status"] if intent else None, attempt_amount=attempt["amount"] if attempt else None,
            attempt_result=attempt["result"] if attempt else None, paid_amount=paid_amount, paid=paid)
        if decision.action is IpnAction.NOTHING:
            return decision.answer
        assert intent is not None
        details = {"transaction_no": result.get("vnp_TransactionNo"), "bank_code": result.get("vnp_BankCode"),
                   "card_type": result.get("vnp_CardType"), "pay_date": result.get("vnp_PayDate"),
                   "txn_ref": txn_ref}
        if decision.action is IpnAction.SUCCEED:
            if await store.succeed_intent(tx, intent, method="vnpay", details=details, providers=providers,
                                          txn_ref=txn_ref) is None:
                return IpnAnswer.ALREADY_CONFIRMED
        elif decision.action is IpnAction.FAIL:
            code = f"vnpay_{result.get('vnp_ResponseCode', '')}"
            await store.fail_attempt(tx, intent, txn_ref=txn_ref, code=code,
                                     message=f"VNPay từ chối giao dịch (mã {result.get('vnp_ResponseCode')}) / "
                                             "VNPay did not complete the payment", providers=providers)
        else:
            kind = "amount_mismatch" if decision.answer is IpnAnswer.INVALID_AMOUNT else "late_payment"
            await store.flag_payment(tx, key=f"vnpay:{txn_ref}:{result.get('vnp_TransactionNo')}", kind=kind,
                                     amount=paid_amount or 0, merchant_id=intent["merchant_id"],
                                     intent_id=intent["_id"], details={**details, "expected": attempt["amount"]})
            if kind == "late_payment":
                await tx.db[store.INTENTS].update_one(
                    {"_id": intent["_id"], "vnpay_attempts.txn_ref": txn_ref},
                    {"$set": {"vnpay_attempts.$.result": "flagged"}}, session=tx.session)
            log.warning("vnpay_payment_flagged", kind=kind, txn_ref=txn_ref, intent=intent["_id"])
        return decision.answer

    try:
        return await outbox.transaction(apply)
    except DuplicateKeyError:
        # A concurrent delivery of the same result won the race (flag or ledger unique keys).
        return IpnAnswer.ALREADY_CONFIRMED


async def handle_ipn(outbox: Outbox, providers: store.Providers, params: Mapping[str, str]) -> IpnAnswer:
    if not providers.vnpay.verify(params):
        return IpnAnswer.INVALID_SIGNATURE
    try:
        return await apply_vnpay_result(outbox, providers, params)
    except Exception as exc:  # noqa: BLE001 - VNPay retries on 99; the trace goes to our log
        log.exception("vnpay_ipn_failed", error=repr(exc))
        return IpnAnswer.UNKNOWN_ERROR


async def handle_return(db: AsyncDatabase, providers: store.Providers, params: Mapping[str, str]) -> dict | None:
    """The customer's browser back from VNPay: for showing a result only. A paid return marks the intent
    `processing` until the IPN (or querydr) settles it, and brings reconciliation forward."""
    if not providers.vnpay.verify(params):
        return None
    intent = await db[store.INTENTS].find_one({"vnpay_txn_refs": str(params.get("vnp_TxnRef", ""))})
    if intent and is_paid(params) and intent["status"] == domain.REQUIRES_ACTION:
        await store.mark_processing(db, intent["_id"])
        intent = await db[store.INTENTS].find_one({"_id": intent["_id"]})
    return intent


# -- VietQR bank notifications ------------------------------------------------------------------------------

SIGNATURE_TOLERANCE_SECONDS = 300
_REFERENCE = re.compile(r"QT[2-9A-HJ-NP-Z]{10}")


def verify_bank_signature(header: str, raw_body: bytes, secret: str, now: float | None = None) -> bool:
    try:
        parts = dict(item.strip().split("=", 1) for item in header.split(",") if item.strip())
    except ValueError:
        return False
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or abs((now or time.time()) - int(t)) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), t.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1.lower())


@dataclass(frozen=True)
class BankTransfer:
    id: str
    bank_bin: str
    account_no: str
    amount: int
    reference: str
    description: str
    transferred_at: str


async def apply_bank_transfer(outbox: Outbox, providers: store.Providers, transfer: BankTransfer) -> str:
    """Settles the intent the transfer names, once per bank transaction id. Returns what happened."""
    reference = transfer.reference.strip().upper()
    if not _REFERENCE.fullmatch(reference):
        # Some banking apps let the payer edit the purpose: look for our reference inside the description.
        found = _REFERENCE.search(transfer.description.upper())
        reference = found.group(0) if found else reference

    async def apply(tx: Transaction) -> str:
        if await tx.db[store.BANK_TRANSFERS].find_one({"_id": transfer.id}, session=tx.session):
            return "duplicate"
        intent = await tx.db[store.INTENTS].find_one({"vietqr.reference": reference}, session=tx.session) \
            if reference else None
        outcome = _transfer_outcome(intent, transfer)
        await tx.db[store.BANK_TRANSFERS].insert_one(
            {"_id": transfer.id, **transfer.__dict__, "payment_intent_id": intent["_id"] if intent else None,
             "outcome": outcome, "received_at": utcnow()}, session=tx.session)
        details = {"bank_transaction_id": transfer.id, "bank_bin": transfer.bank_bin,
                   "account_no": transfer.account_no, "reference": transfer.reference,
                   "transferred_at": transfer.transferred_at}
        if outcome == "succeeded":
            assert intent is not None
            if await store.succeed_intent(tx, intent, method="vietqr", details=details,
                                          providers=providers) is not None:
                return outcome
            outcome = "late_payment"
        await store.flag_payment(tx, key=f"bank:{transfer.id}", kind=outcome, amount=transfer.amount,
                                 merchant_id=intent["merchant_id"] if intent else None,
                                 intent_id=intent["_id"] if intent else None, details=details)
        log.warning("bank_transfer_flagged", kind=outcome, bank_transaction=transfer.id)
        return outcome

    try:
        return await outbox.transaction(apply)
    except DuplicateKeyError:
        return "duplicate"


def _transfer_outcome(intent: dict[str, Any] | None, transfer: BankTransfer) -> str:
    if intent is None or not intent.get("vietqr"):
        return "unmatched"
    qr = intent["vietqr"]
    if (qr["bank_bin"], qr["account_no"]) != (transfer.bank_bin, transfer.account_no):
        return "wrong_account"
    if transfer.amount != intent["amount"]:
        return "amount_mismatch"
    if intent["status"] not in domain.OPEN_STATES:
        return "late_payment"
    return "succeeded"
