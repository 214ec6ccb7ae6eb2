"""Payments' documents, indexes and atomic state changes; every change writes its events in the same transaction."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from shared.clock import to_vn, utcnow
from shared.errors import InvalidRequest, NotFound
from shared.events import EventData
from shared.events.payments import (
    MerchantAccountActivated, PaymentIntentCanceled, PaymentIntentCreated, PaymentIntentPaymentFailed,
    PaymentIntentSucceeded, RefundFailed, RefundSucceeded,
)
from shared.ids import new_id
from shared.outbox import Transaction

from services.payments import domain, objects, vietqr
from services.payments.vnpay import VNPayClient, vnpay_date

ACCOUNTS = "accounts"
API_KEYS = "api_keys"
INTENTS = "payment_intents"
REFUNDS = "refunds"
EVENTS = "events"
ENDPOINTS = "webhook_endpoints"
DELIVERIES = "webhook_deliveries"
IDEMPOTENCY = "idempotency_keys"
LEDGER = "ledger"
BANK_TRANSFERS = "bank_transfers"
FLAGGED = "flagged_payments"

API_VERSION = "2026-10-28.endive"
IDEMPOTENCY_TTL = timedelta(hours=24)


async def ensure_indexes(db: AsyncDatabase) -> None:
    await db[ACCOUNTS].create_index("merchant_id", unique=True)
    await db[API_KEYS].create_index("secret_hash", unique=True)
    await db[API_KEYS].create_index([("merchant_id", ASCENDING), ("created", DESCENDING)])
    await db[INTENTS].create_index([("merchant_id", ASCENDING), ("_id", DESCENDING)])
    # An order or booking gets one intent, however often its event is delivered.
    await db[INTENTS].create_index("source_key", unique=True,
                                   partialFilterExpression={"source_key": {"$type": "string"}})
    await db[INTENTS].create_index("vnpay_txn_refs")
    await db[INTENTS].create_index("vietqr.reference", unique=True,
                                   partialFilterExpression={"vietqr.reference": {"$type": "string"}})
    await db[INTENTS].create_index([("status", ASCENDING), ("reconcile_at", ASCENDING)])
    await db[REFUNDS].create_index([("merchant_id", ASCENDING), ("_id", DESCENDING)])
    await db[REFUNDS].create_index("payment_intent_id")
    await db[REFUNDS].create_index("source_key", unique=True,
                                   partialFilterExpression={"source_key": {"$type": "string"}})
    await db[REFUNDS].create_index([("status", ASCENDING), ("process_after", ASCENDING)])
    await db[EVENTS].create_index([("merchant_id", ASCENDING), ("_id", DESCENDING)])
    await db[EVENTS].create_index([("type", ASCENDING), ("_id", DESCENDING)])
    await db[ENDPOINTS].create_index([("merchant_id", ASCENDING), ("_id", DESCENDING)])
    await db[DELIVERIES].create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])
    await db[DELIVERIES].create_index([("endpoint_id", ASCENDING), ("_id", DESCENDING)])
    await db[IDEMPOTENCY].create_index("created", expireAfterSeconds=int(IDEMPOTENCY_TTL.total_seconds()))
    await db[LEDGER].create_index([("merchant_id", ASCENDING), ("_id", DESCENDING)])
    await db[LEDGER].create_index([("merchant_id", ASCENDING), ("vn_date", ASCENDING)])
    # One capture per intent and one entry per refund, whatever retries happen.
    await db[LEDGER].create_index("source", unique=True)
    await db[FLAGGED].create_index([("merchant_id", ASCENDING), ("_id", DESCENDING)])
    await db[FLAGGED].create_index("key", unique=True)


@dataclass(frozen=True)
class Providers:
    """What the state changes need from outside the database: our public URL and the VNPay terminal."""

    base_url: str
    vnpay: VNPayClient


# -- events -------------------------------------------------------------------------------------------------

async def record_event(tx: Transaction, data: EventData, stripe_type: str, stripe_object: dict[str, Any],
                       merchant_id: str | None) -> str:
    """The CloudEvent for Kafka and the Stripe Event for /v1/events and webhooks: one id, one transaction."""
    envelope = tx.emit(data)
    endpoints = await tx.db[ENDPOINTS].find(
        {"status": "enabled", "merchant_id": {"$in": [merchant_id, None]},
         "enabled_events": {"$in": ["*", stripe_type]}}, projection={"_id": 1}, session=tx.session).to_list(None)
    await tx.db[EVENTS].insert_one({
        "_id": envelope.id, "type": stripe_type, "merchant_id": merchant_id, "object": stripe_object,
        "created": envelope.time, "api_version": API_VERSION, "pending_webhooks": len(endpoints),
    }, session=tx.session)
    if endpoints:
        await tx.db[DELIVERIES].insert_many([{
            "_id": new_id("whd"), "event_id": envelope.id, "endpoint_id": e["_id"], "merchant_id": merchant_id,
            "status": "pending", "attempts": 0, "next_attempt_at": envelope.time, "created": envelope.time,
            "log": [],
        } for e in endpoints], session=tx.session)
    return envelope.id


# -- accounts and API keys ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AccountDetails:
    merchant_id: str
    display_name: str
    commune_code: int
    sector: str
    bank_bin: str
    bank_account_no: str
    bank_account_name: str


async def open_account(tx: Transaction, details: AccountDetails, providers: Providers) -> tuple[dict, bool]:
    """Opens a merchant's payment account once; later calls return the account already open."""
    existing = await tx.db[ACCOUNTS].find_one({"merchant_id": details.merchant_id}, session=tx.session)
    if existing:
        return existing, False
    static = vietqr.payload(bank_bin=details.bank_bin, account_no=details.bank_account_no,
                            merchant_name=details.bank_account_name)
    doc = {"_id": new_id("acct"), **details.__dict__, "vietqr_static_payload": static, "created": utcnow()}
    await tx.db[ACCOUNTS].insert_one(doc, session=tx.session)
    await record_event(tx, MerchantAccountActivated(merchant_id=details.merchant_id, account_id=doc["_id"],
                                                    vietqr_static_payload=static),
                       "merchant_account.activated", objects.account(doc, providers.base_url), details.merchant_id)
    return doc, True


def hash_secret_key(secret: str) -> str:
    # Keys carry 32 random bytes: a plain SHA-256 cannot be brute-forced, and lookups stay one index probe.
    return hashlib.sha256(secret.encode()).hexdigest()


async def roll_api_key(db: AsyncDatabase, merchant_id: str, grace: timedelta) -> tuple[dict, str]:
    now = utcnow()
    secret = "sk_test_" + secrets.token_urlsafe(32)
    doc = {"_id": new_id("key"), "merchant_id": merchant_id, "secret_hash": hash_secret_key(secret),
           "last4": secret[-4:], "created": now, "expires_at": None}
    await db[API_KEYS].insert_one(doc)
    # Older keys stop working now, or after the grace period the merchant asked for (Stripe's expires_in).
    await db[API_KEYS].update_many(
        {"merchant_id": merchant_id, "_id": {"$ne": doc["_id"]},
         "$or": [{"expires_at": None}, {"expires_at": {"$gt": now + grace}}]},
        {"$set": {"expires_at": now + grace}})
    return doc, secret


async def merchant_of_key(db: AsyncDatabase, secret: str) -> str | None:
    doc = await db[API_KEYS].find_one({"secret_hash": hash_secret_key(secret)})
    if not doc or (doc["expires_at"] is not None and doc["expires_at"] <= utcnow()):
        return None
    return doc["merchant_id"]


# -- payment intents ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IntentSpec:
    amount: int
    payment_method_types: list[str]
    metadata: dict[str, str]
    description: str | None
    return_url: str | None
    expires_at: datetime
    ip_address: str
    source_type: str | None = None  # "order" | "booking": what the intent pays for
    source_id: str | None = None
    commune_code: int | None = None
    sector: str | None = None


def _vnpay_attempt(intent: dict, providers: Providers, attempt: int, now: datetime) -> dict:
    txn_ref = domain.vnpay_txn_ref(intent["_id"], attempt)
    url = providers.vnpay.payment_url(
        txn_ref=txn_ref, amount=intent["amount"], order_info=f"Thanh toan {intent['_id']}", created=now,
        expires=intent["expires_at"], ip_address=intent.get("ip_address") or "127.0.0.1")
    return {"txn_ref": txn_ref, "create_date": vnpay_date(now), "amount": intent["amount"], "url": url,
            "result": None}


def _intent_event_fields(intent: dict) -> dict:
    return {"payment_intent_id": intent["_id"], "merchant_id": intent["merchant_id"], "amount": intent["amount"],
            "reference_type": intent.get("source_type"), "reference_id": intent.get("source_id")}


async def create_intent(tx: Transaction, account: dict, spec: IntentSpec, providers: Providers) -> dict:
    now = utcnow()
    intent_id = new_id("pi")
    intent: dict[str, Any] = {
        "_id": intent_id, "merchant_id": account["merchant_id"], "amount": spec.amount,
        "payment_method_types": spec.payment_method_types, "metadata": spec.metadata,
        "description": spec.description, "return_url": spec.return_url, "created": now,
        "expires_at": spec.expires_at, "client_secret": domain.new_client_secret(intent_id),
        # Our methods need no card details, so a new intent goes straight to the customer's action.
        "status": domain.REQUIRES_ACTION, "amount_received": 0, "amount_refunded": 0,
        "ip_address": spec.ip_address, "commune_code": spec.commune_code or account["commune_code"],
        "sector": spec.sector or account["sector"], "vnpay": None, "vnpay_attempts": [], "vnpay_txn_refs": [],
        "vietqr": None, "reconcile_at": spec.expires_at,
    }
    if spec.source_type:
        intent.update(source_type=spec.source_type, source_id=spec.source_id,
                      source_key=f"{spec.source_type}:{spec.source_id}")
    if "vnpay" in spec.payment_method_types:
        attempt = _vnpay_attempt(intent, providers, 1, now)
        intent.update(vnpay=attempt, vnpay_attempts=[attempt], vnpay_txn_refs=[attempt["txn_ref"]])
    if "vietqr" in spec.payment_method_types:
        reference = domain.new_transfer_reference()
        intent["vietqr"] = {"reference": reference, "bank_bin": account["bank_bin"],
                            "account_no": account["bank_account_no"],
                            "payload": vietqr.payload(bank_bin=account["bank_bin"],
                                                      account_no=account["bank_account_no"], amount=spec.amount,
                                                      purpose=reference,
                                                      merchant_name=account["bank_account_name"])}
    await tx.db[INTENTS].insert_one(intent, session=tx.session)
    await record_event(tx, PaymentIntentCreated(**_intent_event_fields(intent),
                                                payment_method_types=spec.payment_method_types),
                       "payment_intent.created", objects.payment_intent(intent, providers.base_url),
                       intent["merchant_id"])
    return intent


async def find_intent(db: AsyncDatabase, intent_id: str, merchant_id: str | None, session=None) -> dict:
    query: dict[str, Any] = {"_id": intent_id}
    if merchant_id is not None:
        query["merchant_id"] = merchant_id
    intent = await db[INTENTS].find_one(query, session=session)
    if not intent:
        raise NotFound(f"Không tìm thấy khoản thanh toán {intent_id} / No such payment_intent: '{intent_id}'",
                       param="intent")
    return intent


async def cancel_intent(tx: Transaction, intent: dict, reason: str, providers: Providers,
                        states: tuple[str, ...] = domain.CANCELABLE_STATES) -> dict | None:
    """Cancels an intent that can still be cancelled; None when it already could not (caller decides).
    Reconciliation may also close a `processing` intent once VNPay confirmed it was never paid."""
    now = utcnow()
    updated = await tx.db[INTENTS].find_one_and_update(
        {"_id": intent["_id"], "status": {"$in": list(states)}},
        {"$set": {"status": domain.CANCELED, "canceled_at": now, "cancellation_reason": reason,
                  "reconcile_at": None}},
        return_document=ReturnDocument.AFTER, session=tx.session)
    if updated is None:
        return None
    await record_event(tx, PaymentIntentCanceled(**_intent_event_fields(updated), cancellation_reason=reason),
                       "payment_intent.canceled", objects.payment_intent(updated, providers.base_url),
                       updated["merchant_id"])
    return updated


async def confirm_intent(tx: Transaction, intent: dict, providers: Providers) -> dict:
    """A new attempt after a failed one: a fresh VNPay transaction (VNPay never reuses a TxnRef in a day)."""
    now = utcnow()
    update: dict[str, Any] = {"status": domain.REQUIRES_ACTION, "last_payment_error": None}
    push: dict[str, Any] = {}
    if intent.get("vnpay") and intent["status"] == domain.REQUIRES_PAYMENT_METHOD:
        if intent["expires_at"] <= now:
            raise InvalidRequest("Khoản thanh toán đã hết hạn / this PaymentIntent has expired",
                                 code="payment_intent_unexpected_state")
        attempt = _vnpay_attempt(intent, providers, len(intent["vnpay_attempts"]) + 1, now)
        update["vnpay"] = attempt
        push = {"vnpay_attempts": attempt, "vnpay_txn_refs": attempt["txn_ref"]}
    change: dict[str, Any] = {"$set": update}
    if push:
        change["$push"] = push
    updated = await tx.db[INTENTS].find_one_and_update(
        {"_id": intent["_id"], "status": intent["status"]}, change,
        return_document=ReturnDocument.AFTER, session=tx.session)
    if updated is None:
        raise InvalidRequest("Khoản thanh toán vừa thay đổi, hãy thử lại / the PaymentIntent changed meanwhile; "
                             "retry", code="payment_intent_unexpected_state")
    return updated


async def succeed_intent(tx: Transaction, intent: dict, *, method: str, details: dict,
                         providers: Providers, txn_ref: str | None = None) -> dict | None:
    """Marks an open intent paid, writes the capture to the ledger; None if it was no longer open."""
    now = utcnow()
    query: dict[str, Any] = {"_id": intent["_id"], "status": {"$in": list(domain.OPEN_STATES)}}
    update: dict[str, Any] = {
        "status": domain.SUCCEEDED, "amount_received": intent["amount"], "succeeded_at": now,
        "payment_method": method, "payment_method_details": {"type": method, method: details},
        "last_payment_error": None, "reconcile_at": None,
    }
    array_filters = None
    if txn_ref:
        query["vnpay_attempts"] = {"$elemMatch": {"txn_ref": txn_ref, "result": None}}
        update["vnpay_attempts.$[a].result"] = "paid"
        array_filters = [{"a.txn_ref": txn_ref}]
    updated = await tx.db[INTENTS].find_one_and_update(query, {"$set": update}, array_filters=array_filters,
                                                       return_document=ReturnDocument.AFTER, session=tx.session)
    if updated is None:
        return None
    await write_ledger(tx, merchant_id=updated["merchant_id"], kind="capture", source=updated["_id"],
                       payment_intent_id=updated["_id"], method=method, amount=updated["amount"], at=now)
    await record_event(tx, PaymentIntentSucceeded(
        **_intent_event_fields(updated), payment_method=method, commune_code=updated.get("commune_code"),
        sector=updated.get("sector"), captured_at=now),
        "payment_intent.succeeded", objects.payment_intent(updated, providers.base_url), updated["merchant_id"])
    return updated


async def fail_attempt(tx: Transaction, intent: dict, *, txn_ref: str, code: str, message: str,
                       providers: Providers) -> dict | None:
    """A VNPay attempt that did not pay: the intent waits for another attempt (Stripe's requires_payment_method)."""
    error = {"type": "card_error", "code": code, "message": message, "payment_method_type": "vnpay"}
    query = {"_id": intent["_id"], "vnpay_attempts": {"$elemMatch": {"txn_ref": txn_ref, "result": None}}}
    update: dict[str, Any] = {"vnpay_attempts.$[a].result": "failed"}
    current = intent.get("vnpay") or {}
    is_current = current.get("txn_ref") == txn_ref and intent["status"] in domain.OPEN_STATES
    if is_current:
        query["status"] = {"$in": list(domain.OPEN_STATES)}
        update.update(status=domain.REQUIRES_PAYMENT_METHOD, last_payment_error=error)
    updated = await tx.db[INTENTS].find_one_and_update(query, {"$set": update}, array_filters=[{"a.txn_ref": txn_ref}],
                                                       return_document=ReturnDocument.AFTER, session=tx.session)
    if updated is None or not is_current:
        return updated
    await record_event(tx, PaymentIntentPaymentFailed(**_intent_event_fields(updated), failure_code=code,
                                                      failure_message=message),
                       "payment_intent.payment_failed", objects.payment_intent(updated, providers.base_url),
                       updated["merchant_id"])
    return updated


async def mark_processing(db: AsyncDatabase, intent_id: str) -> None:
    # No IPN within two minutes of a paid return: reconciliation asks VNPay (querydr) instead of waiting.
    now = utcnow()
    await db[INTENTS].update_one({"_id": intent_id, "status": domain.REQUIRES_ACTION},
                                 [{"$set": {"status": domain.PROCESSING, "processing_since": now,
                                            "reconcile_at": {"$min": ["$reconcile_at", now + timedelta(minutes=2)]}}}])


async def flag_payment(tx: Transaction, *, key: str, kind: str, amount: int, merchant_id: str | None,
                       intent_id: str | None, details: dict) -> bool:
    """Money that arrived but cannot settle an intent (wrong amount, too late, unknown reference): kept for
    refund by people, once per provider transaction."""
    if await tx.db[FLAGGED].find_one({"key": key}, projection={"_id": 1}, session=tx.session):
        return False
    await tx.db[FLAGGED].insert_one({
        "_id": new_id("flag"), "key": key, "kind": kind, "amount": amount, "merchant_id": merchant_id,
        "payment_intent_id": intent_id, "details": details, "status": "refund_required", "created": utcnow(),
    }, session=tx.session)
    return True


# -- refunds ------------------------------------------------------------------------------------------------

REFUND_CLAIM_LEASE = timedelta(minutes=2)

async def reserve_refund(tx: Transaction, intent: dict, *, amount: int | None, reason: str | None,
                         metadata: dict[str, str], source_key: str | None = None, claimed: bool = False) -> dict:
    """Creates a pending refund and takes its amount off the intent atomically: concurrent refunds can never
    add up to more than was captured. `claimed`: the caller sends it to the provider itself, so the worker
    leaves it alone for a lease (and takes it over only if the caller died half-way)."""
    if intent["status"] != domain.SUCCEEDED:
        raise InvalidRequest(f"Chỉ hoàn tiền khoản đã thanh toán (trạng thái: {intent['status']}) / This "
                             "PaymentIntent has not succeeded, so it cannot be refunded",
                             param="payment_intent", code="payment_intent_unexpected_state")
    fresh = await tx.db[INTENTS].find_one({"_id": intent["_id"]}, session=tx.session)
    value = domain.refund_amount(amount, amount_received=fresh["amount_received"],
                                 amount_refunded=fresh["amount_refunded"])
    updated = await tx.db[INTENTS].find_one_and_update(
        {"_id": intent["_id"], "status": domain.SUCCEEDED,
         "$expr": {"$lte": [{"$add": ["$amount_refunded", value]}, "$amount_received"]}},
        {"$inc": {"amount_refunded": value}}, return_document=ReturnDocument.AFTER, session=tx.session)
    if updated is None:
        raise InvalidRequest("Số tiền hoàn vượt quá số đã thu / Refund amount is greater than the unrefunded "
                             "amount", param="amount", code="amount_too_large")
    now = utcnow()
    refund = {
        "_id": new_id("re"), "merchant_id": intent["merchant_id"], "payment_intent_id": intent["_id"],
        "amount": value, "reason": reason, "metadata": metadata, "status": "pending", "created": now,
        "payment_method": intent.get("payment_method"),
        "process_after": now + REFUND_CLAIM_LEASE if claimed else now,
        # Full only when it is the first refund and takes everything (VNPay refuses a full one after a partial).
        "full": fresh["amount_refunded"] == 0 and value == fresh["amount_received"],
        "source_type": intent.get("source_type"), "source_id": intent.get("source_id"),
    }
    if source_key:
        refund["source_key"] = source_key
    await tx.db[REFUNDS].insert_one(refund, session=tx.session)
    return refund


async def claim_refund(db: AsyncDatabase, refund_id: str | None = None, lease: timedelta = REFUND_CLAIM_LEASE):
    """Takes one pending refund for this worker (or this request), so no two replicas call VNPay for it."""
    now = utcnow()
    query: dict[str, Any] = {"status": "pending", "process_after": {"$lte": now}}
    if refund_id:
        query["_id"] = refund_id
    return await db[REFUNDS].find_one_and_update(query, {"$set": {"process_after": now + lease}},
                                                 sort=[("process_after", ASCENDING)],
                                                 return_document=ReturnDocument.AFTER)


async def finish_refund(tx: Transaction, refund: dict, *, succeeded: bool, details: dict,
                        failure_reason: str | None, providers: Providers, review: dict | None = None) -> dict | None:
    """Records a pending refund's outcome once; None if it was no longer pending. `review`: how a refund held
    for review was settled (by whom, how, why); it then settles only a refund still held."""
    now = utcnow()
    status = "succeeded" if succeeded else "failed"
    query: dict[str, Any] = {"_id": refund["_id"], "status": "pending"}
    update: dict[str, Any] = {"status": status, "destination_details": details, "failure_reason": failure_reason,
                              "finished_at": now}
    if review is not None:
        query["review_reason"] = refund["review_reason"]
        update.update(review={**review, "reason": refund["review_reason"], "outcome": status, "resolved_at": now},
                      review_reason=None)
    updated = await tx.db[REFUNDS].find_one_and_update(query, {"$set": update},
                                                       return_document=ReturnDocument.AFTER, session=tx.session)
    if updated is None:
        return None
    fields = {"refund_id": updated["_id"], "payment_intent_id": updated["payment_intent_id"],
              "merchant_id": updated["merchant_id"], "amount": updated["amount"],
              "reference_type": updated.get("source_type"), "reference_id": updated.get("source_id")}
    if succeeded:
        await write_ledger(tx, merchant_id=updated["merchant_id"], kind="refund", source=updated["_id"],
                           payment_intent_id=updated["payment_intent_id"], method=updated["payment_method"],
                           amount=updated["amount"], at=now)
        await record_event(tx, RefundSucceeded(**fields), "refund.succeeded", objects.refund(updated),
                           updated["merchant_id"])
    else:
        # The money never left: give the amount back to the intent so it can be refunded again.
        await tx.db[INTENTS].update_one({"_id": updated["payment_intent_id"]},
                                        {"$inc": {"amount_refunded": -updated["amount"]}}, session=tx.session)
        await record_event(tx, RefundFailed(**fields, failure_reason=failure_reason or "unknown"),
                           "refund.failed", objects.refund(updated), updated["merchant_id"])
    return updated


async def other_vnpay_refunds(db: AsyncDatabase, refund: dict) -> tuple[int, bool]:
    """The payment's other refunds as VNPay may know them: the amount that succeeded there, and whether any
    other may have reached it without our knowing (pending and already sent)."""
    others = await db[REFUNDS].find(
        {"payment_intent_id": refund["payment_intent_id"], "_id": {"$ne": refund["_id"]}},
        projection={"status": 1, "amount": 1, "sent_to_provider_at": 1, "review_reason": 1}).to_list(None)
    succeeded = sum(r["amount"] for r in others if r["status"] == "succeeded")
    in_doubt = any(r["status"] == "pending" and (r.get("sent_to_provider_at") or r.get("review_reason"))
                   for r in others)
    return succeeded, in_doubt


# -- flagged payments ---------------------------------------------------------------------------------------

async def resolve_flagged(tx: Transaction, flag_id: str, *, resolution: str, note: str, by: str) -> dict:
    """Marks a flagged payment resolved once; again with the same resolution it answers it unchanged."""
    updated = await tx.db[FLAGGED].find_one_and_update(
        {"_id": flag_id, "status": domain.FLAG_OPEN},
        {"$set": {"status": domain.FLAG_RESOLVED,
                  "resolution": {"type": resolution, "note": note, "resolved_by": by, "resolved_at": utcnow()}}},
        return_document=ReturnDocument.AFTER, session=tx.session)
    if updated is not None:
        return updated
    current = await tx.db[FLAGGED].find_one({"_id": flag_id}, session=tx.session)
    if current is None:
        raise NotFound(f"Không tìm thấy khoản bị gắn cờ {flag_id} / No such flagged payment: '{flag_id}'", param="id")
    domain.check_flag_resolution((current.get("resolution") or {}).get("type"), resolution, flag_id)
    return current


# -- ledger -------------------------------------------------------------------------------------------------

async def write_ledger(tx: Transaction, *, merchant_id: str, kind: str, source: str, payment_intent_id: str,
                       method: str, amount: int, at: datetime) -> None:
    entries = (domain.capture_entries if kind == "capture" else domain.refund_entries)(merchant_id, method, amount)
    if not domain.balanced(entries):
        raise ValueError(f"unbalanced ledger transaction for {source}")
    await tx.db[LEDGER].insert_one({
        "_id": new_id("txn"), "merchant_id": merchant_id, "kind": kind, "source": source,
        "payment_intent_id": payment_intent_id, "method": method, "amount": amount, "created": at,
        # Settlement days are Vietnamese days.
        "vn_date": to_vn(at).date().isoformat(),
        "entries": [{"account": e.account, "amount": e.amount} for e in entries],
    }, session=tx.session)


async def merchant_balance(db: AsyncDatabase, merchant_id: str) -> int:
    """What the platform owes the merchant: the credit side of its payable account."""
    account = domain.merchant_payable(merchant_id)
    rows = await (await db[LEDGER].aggregate([
        {"$match": {"merchant_id": merchant_id}}, {"$unwind": "$entries"},
        {"$match": {"entries.account": account}},
        {"$group": {"_id": None, "total": {"$sum": "$entries.amount"}}},
    ])).to_list(None)
    return -rows[0]["total"] if rows else 0


async def settlement_days(db: AsyncDatabase, merchant_id: str, date_from: str | None,
                          date_to: str | None) -> list[dict]:
    match: dict[str, Any] = {"merchant_id": merchant_id}
    if date_from or date_to:
        match["vn_date"] = {k: v for k, v in (("$gte", date_from), ("$lte", date_to)) if v}
    rows = await (await db[LEDGER].aggregate([
        {"$match": match},
        {"$group": {
            "_id": "$vn_date",
            "gross": {"$sum": {"$cond": [{"$eq": ["$kind", "capture"]}, "$amount", 0]}},
            "refunded": {"$sum": {"$cond": [{"$eq": ["$kind", "refund"]}, "$amount", 0]}},
            "payments": {"$sum": {"$cond": [{"$eq": ["$kind", "capture"]}, 1, 0]}},
            "refunds": {"$sum": {"$cond": [{"$eq": ["$kind", "refund"]}, 1, 0]}},
        }},
        {"$sort": {"_id": 1}},
    ])).to_list(None)
    opening = 0
    if rows:
        before = await (await db[LEDGER].aggregate([
            {"$match": {"merchant_id": merchant_id, "vn_date": {"$lt": rows[0]["_id"]}}},
            {"$group": {"_id": None,
                        "net": {"$sum": {"$cond": [{"$eq": ["$kind", "capture"]}, "$amount",
                                                   {"$multiply": ["$amount", -1]}]}}}},
        ])).to_list(None)
        opening = before[0]["net"] if before else 0
    days = []
    for row in rows:
        net = row["gross"] - row["refunded"]
        days.append({"date": row["_id"], "gross": row["gross"], "refunded": row["refunded"], "net": net,
                     "payments": row["payments"], "refunds": row["refunds"], "opening_balance": opening,
                     "closing_balance": opening + net})
        opening += net
    return days


# -- lists (Stripe's cursor pagination over time-sortable ids, newest first) -------------------------------

async def page(db: AsyncDatabase, collection: str, query: dict[str, Any], *, limit: int,
               starting_after: str | None, ending_before: str | None) -> tuple[list[dict], bool]:
    query = dict(query)
    if starting_after:
        query["_id"] = {"$lt": starting_after}
        cursor = db[collection].find(query).sort("_id", DESCENDING).limit(limit + 1)
        docs = await cursor.to_list(None)
        return docs[:limit], len(docs) > limit
    if ending_before:
        query["_id"] = {"$gt": ending_before}
        cursor = db[collection].find(query).sort("_id", ASCENDING).limit(limit + 1)
        docs = await cursor.to_list(None)
        return list(reversed(docs[:limit])), len(docs) > limit
    docs = await db[collection].find(query).sort("_id", DESCENDING).limit(limit + 1).to_list(None)
    return docs[:limit], len(docs) > limit
