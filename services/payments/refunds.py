"""Carrying out refunds: the provider call between reserving the amount and recording the outcome."""

from __future__ import annotations

from datetime import timedelta

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from shared.clock import utcnow
from shared.outbox import Outbox

from services.payments import store
from services.payments.vnpay import VNPayError, VNPayUnreachable

log = structlog.get_logger(__name__)

RETRY_UNREACHABLE = timedelta(seconds=30)
# A refund whose VNPay outcome is unknown is never re-sent by itself: sending it twice could pay twice.
HOLD_FOR_REVIEW = timedelta(days=3650)


async def execute(db: AsyncDatabase, outbox: Outbox, providers: store.Providers, refund: dict) -> dict:
    """Sends one claimed, pending refund to its provider and records the outcome. Returns the refund."""
    intent = await db[store.INTENTS].find_one({"_id": refund["payment_intent_id"]})
    if refund["payment_method"] == "vnpay":
        if refund.get("sent_to_provider_at"):
            # An earlier run sent it and stopped before recording VNPay's answer (a crash, a lost lease):
            # sending it again could refund twice, so people look at it (VNPay's portal has the truth).
            log.error("refund_outcome_unknown", refund=refund["_id"], reason="sent_before_and_not_recorded")
            await _hold(db, refund, HOLD_FOR_REVIEW, "provider_outcome_unknown")
            return await db[store.REFUNDS].find_one({"_id": refund["_id"]})
        paid = next(a for a in intent["vnpay_attempts"] if a["result"] == "paid")
        details = intent["payment_method_details"]["vnpay"]
        # Written before the call, so whoever takes this refund over later knows VNPay may have it.
        await db[store.REFUNDS].update_one({"_id": refund["_id"], "status": "pending"},
                                           {"$set": {"sent_to_provider_at": utcnow()}})
        try:
            answer = await providers.vnpay.refund(
                txn_ref=paid["txn_ref"], transaction_date=paid["create_date"], amount=refund["amount"],
                full=refund["full"], transaction_no=details.get("transaction_no"), created_by="payments",
                order_info=f"Hoan tien {refund['_id']}")
        except VNPayUnreachable as exc:
            log.warning("refund_vnpay_unreachable", refund=refund["_id"], error=repr(exc))
            # Never reached VNPay: safe to send again later.
            await db[store.REFUNDS].update_one({"_id": refund["_id"], "status": "pending"},
                                               {"$unset": {"sent_to_provider_at": ""}})
            await _hold(db, refund, RETRY_UNREACHABLE, None)
            return await db[store.REFUNDS].find_one({"_id": refund["_id"]})
        except VNPayError as exc:
            log.error("refund_outcome_unknown", refund=refund["_id"], error=repr(exc))
            await _hold(db, refund, HOLD_FOR_REVIEW, "provider_outcome_unknown")
            return await db[store.REFUNDS].find_one({"_id": refund["_id"]})
        succeeded = answer.succeeded
        outcome = {"type": "vnpay", "response_code": answer.response_code, "transaction_no": answer.transaction_no}
        failure = None if succeeded else f"vnpay_{answer.response_code}"
    else:
        # A VietQR payment went straight to the merchant's bank account: the merchant transfers the money back,
        # and the refund records it against the merchant's balance.
        succeeded, failure = True, None
        outcome = {"type": "bank_transfer", "bank_bin": intent["vietqr"]["bank_bin"],
                   "account_no": intent["vietqr"]["account_no"]}

    async def record(tx):
        return await store.finish_refund(tx, refund, succeeded=succeeded, details=outcome, failure_reason=failure,
                                         providers=providers)

    await outbox.transaction(record)
    return await db[store.REFUNDS].find_one({"_id": refund["_id"]})


async def _hold(db: AsyncDatabase, refund: dict, delay: timedelta, reason: str | None) -> None:
    await db[store.REFUNDS].update_one({"_id": refund["_id"], "status": "pending"},
                                       {"$set": {"process_after": utcnow() + delay, "review_reason": reason}})


async def process_pending(db: AsyncDatabase, outbox: Outbox, providers: store.Providers, batch: int = 10) -> int:
    """The worker's pass: refunds reserved by event handlers, or left by a request that stopped half-way."""
    done = 0
    for _ in range(batch):
        refund = await store.claim_refund(db)
        if refund is None:
            break
        await execute(db, outbox, providers, refund)
        done += 1
    return done
