"""Carrying out refunds: the provider call between reserving the amount and recording the outcome."""

from __future__ import annotations

from datetime import timedelta

import structlog
from pymongo.asynchronous.database import AsyncDatabase

from shared.clock import utcnow
from shared.errors import Conflict, NotFound, UpstreamUnavailable
from shared.outbox import Outbox

from services.payments import domain, store
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


async def reconcile_held(db: AsyncDatabase, outbox: Outbox, providers: store.Providers, refund_id: str, *,
                         by: str, outcome: str | None = None, note: str | None = None) -> dict:
    """Settles a refund held for review: by asking VNPay (querydr), or with the outcome an admin states (VNPay's
    support confirmed it). Settles once however many calls race; an already settled refund is answered as is."""
    refund = await db[store.REFUNDS].find_one({"_id": refund_id})
    if refund is None:
        raise NotFound(f"Không tìm thấy hoàn tiền {refund_id} / No such refund: '{refund_id}'", param="id")
    if refund["status"] != "pending":
        domain.check_settled_outcome(refund["status"], outcome, refund_id)
        return refund
    if not refund.get("review_reason"):
        raise Conflict(f"Hoàn tiền {refund_id} không bị giữ để xem xét (đang được xử lý) / refund {refund_id} is "
                       "not held for review (it is being processed)", code="refund_not_held")
    if outcome is not None:
        review = {"method": "manual", "resolved_by": by, "note": note}
        details = {"type": refund["payment_method"], "confirmed_by": "admin"}
        failure = None if outcome == "succeeded" else "confirmed_not_refunded"
    else:
        if refund["payment_method"] != "vnpay":
            raise Conflict("Chỉ hoàn tiền VNPay mới tra cứu được; hãy nêu kết quả / only a VNPay refund can be "
                           "looked up; state the outcome", code="refund_outcome_unknown", reason="not_vnpay")
        intent = await db[store.INTENTS].find_one({"_id": refund["payment_intent_id"]})
        paid = next(a for a in intent["vnpay_attempts"] if a["result"] == "paid")
        try:
            answer = await providers.vnpay.querydr(txn_ref=paid["txn_ref"], transaction_date=paid["create_date"],
                                                   order_info=f"Doi soat hoan tien {refund_id}")
        except VNPayError as exc:
            log.warning("refund_reconcile_vnpay_unavailable", refund=refund_id, error=repr(exc))
            raise UpstreamUnavailable("VNPay không trả lời; hãy thử lại / VNPay did not answer; try again",
                                      code="vnpay_unavailable") from None
        # Read after the query: a refund is marked sent before it goes to VNPay.
        others_succeeded, others_in_doubt = await store.other_vnpay_refunds(db, refund)
        verdict = domain.judge_held_refund(
            found=answer.found, transaction_type=answer.transaction_type,
            transaction_status=answer.transaction_status, refund_amount=refund["amount"],
            amount_received=intent["amount_received"], others_succeeded=others_succeeded,
            others_in_doubt=others_in_doubt)
        vnpay = {"response_code": answer.response_code, "transaction_type": answer.transaction_type,
                 "transaction_status": answer.transaction_status, "transaction_no": answer.transaction_no}
        log.info("refund_reconcile_querydr", refund=refund_id, verdict=verdict.outcome, reason=verdict.reason, **vnpay)
        if verdict.outcome is None:
            raise Conflict(f"Chưa xác định được kết quả hoàn tiền / the refund's outcome is still unknown: "
                           f"{verdict.message}", code="refund_outcome_unknown", reason=verdict.reason, vnpay=vnpay)
        outcome = verdict.outcome
        review = {"method": "querydr", "resolved_by": by, "note": note, "verdict": verdict.reason, "vnpay": vnpay}
        details = {"type": "vnpay", "response_code": None, "transaction_no": None, "reconciled": vnpay}
        failure = None if outcome == "succeeded" else "vnpay_no_refund"

    async def record(tx):
        return await store.finish_refund(tx, refund, succeeded=outcome == "succeeded", details=details,
                                         failure_reason=failure, providers=providers, review=review)

    settled = await outbox.transaction(record)
    current = await db[store.REFUNDS].find_one({"_id": refund_id})
    if settled is None:
        # Another call settled it meanwhile.
        domain.check_settled_outcome(current["status"], outcome, refund_id)
    return current
