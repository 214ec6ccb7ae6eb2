"""Reconciliation: open intents past their time are asked about with querydr and settled, failed or closed.

Safe on several replicas: each intent is claimed with one atomic update before VNPay is asked, and every
outcome is applied with the same conditional updates as the IPN, so a late IPN and this job agree.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from shared.clock import utcnow
from shared.outbox import Outbox

from services.payments import domain, store
from services.payments.settlement import apply_vnpay_result
from services.payments.vnpay import VNPayError, vnpay_amount

log = structlog.get_logger(__name__)

CLAIM = timedelta(seconds=60)
RETRY = timedelta(seconds=30)


async def claim_due(db: AsyncDatabase, grace: timedelta) -> dict | None:
    now = utcnow()
    return await db[store.INTENTS].find_one_and_update(
        {"status": {"$in": list(domain.OPEN_STATES)}, "reconcile_at": {"$lte": now - grace}},
        {"$set": {"reconcile_at": now + CLAIM}}, sort=[("reconcile_at", 1)], return_document=ReturnDocument.AFTER)


async def reconcile_once(db: AsyncDatabase, outbox: Outbox, providers: store.Providers, *,
                         grace: timedelta = timedelta(seconds=2), batch: int = 20) -> list[tuple[str, str]]:
    """One pass; returns (intent id, outcome) for every intent this replica handled."""
    handled = []
    for _ in range(batch):
        intent = await claim_due(db, grace)
        if intent is None:
            break
        try:
            outcome = await _reconcile(db, outbox, providers, intent)
        except VNPayError as exc:
            log.warning("reconcile_vnpay_unavailable", intent=intent["_id"], error=repr(exc))
            await db[store.INTENTS].update_one({"_id": intent["_id"]}, {"$set": {"reconcile_at": utcnow() + RETRY}})
            outcome = "retry_later"
        handled.append((intent["_id"], outcome))
        log.info("intent_reconciled", intent=intent["_id"], outcome=outcome)
    return handled


async def _reconcile(db: AsyncDatabase, outbox: Outbox, providers: store.Providers, intent: dict) -> str:
    unresolved = [a for a in intent.get("vnpay_attempts", []) if a["result"] is None]
    for attempt in unresolved:
        answer = await providers.vnpay.querydr(txn_ref=attempt["txn_ref"], transaction_date=attempt["create_date"],
                                               order_info=f"Doi soat {intent['_id']}")
        if answer.paid or (answer.found and answer.transaction_status not in ("01", "")):
            # Settled or declined at VNPay: apply it exactly as its IPN would have been applied.
            await apply_vnpay_result(outbox, providers, {
                "vnp_TxnRef": attempt["txn_ref"], "vnp_Amount": vnpay_amount(answer.amount or 0),
                "vnp_ResponseCode": "00" if answer.paid else answer.transaction_status,
                "vnp_TransactionStatus": answer.transaction_status, "vnp_TransactionNo": answer.transaction_no,
                "vnp_BankCode": answer.bank_code, "vnp_PayDate": answer.pay_date, "vnp_CardType": "",
            })
    current = await db[store.INTENTS].find_one({"_id": intent["_id"]})
    if current["status"] not in domain.OPEN_STATES:
        return current["status"]
    if current["expires_at"] > utcnow():
        # Paid by the customer's account (processing) but not yet at VNPay: ask again at the expiry.
        await db[store.INTENTS].update_one({"_id": intent["_id"]}, {"$set": {"reconcile_at": current["expires_at"]}})
        return "waiting"

    async def close(tx):
        return await store.cancel_intent(tx, current, "abandoned", providers, states=domain.OPEN_STATES)

    closed = await outbox.transaction(close)
    return domain.CANCELED if closed else "changed"
