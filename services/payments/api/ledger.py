"""The ledger as merchants see it: balance, balance transactions, daily settlement reports, flagged payments."""

from __future__ import annotations

import datetime as dt

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field, field_validator

from shared.errors import NotFound
from shared.service import RuntimeDep

from services.payments import objects, store
from services.payments.api.access import Caller, acting_for, owned_by, require_admin
from services.payments.api.deps import list_object, list_page
from services.payments.api.params import ListParams, Params
from services.payments.api.requests import body_params, parse, query_params

router = APIRouter(tags=["ledger"])


class BalanceParams(Params):
    merchant: str | None = None


@router.get("/v1/balance", summary="What the platform owes the merchant (captured minus refunded)")
async def balance(request: Request, runtime: RuntimeDep, principal: Caller):
    q = parse(BalanceParams, query_params(request))
    merchant_id = acting_for(principal, q.merchant)
    amount = await store.merchant_balance(runtime.db, merchant_id)
    return {"object": "balance", "livemode": False, "merchant": merchant_id,
            "available": [{"amount": amount, "currency": "vnd"}], "pending": [{"amount": 0, "currency": "vnd"}]}


class ListTransactions(ListParams):
    payment_intent: str | None = None
    type: str | None = None


@router.get("/v1/balance_transactions", summary="Ledger transactions (captures and refunds), newest first")
async def list_transactions(request: Request, runtime: RuntimeDep, principal: Caller):
    q = parse(ListTransactions, query_params(request))
    query: dict = owned_by(principal, q.merchant)
    if q.payment_intent:
        query["payment_intent_id"] = q.payment_intent
    if q.type:
        query["kind"] = {"charge": "capture", "refund": "refund"}.get(q.type, q.type)
    return await list_page(runtime.db, store.LEDGER, query, q, "/v1/balance_transactions", objects.balance_transaction)


@router.get("/v1/balance_transactions/{txn_id}", summary="Retrieve a ledger transaction")
async def retrieve_transaction(txn_id: str, runtime: RuntimeDep, principal: Caller):
    doc = await runtime.db[store.LEDGER].find_one({"_id": txn_id, **owned_by(principal)})
    if doc is None:
        raise NotFound(f"Không tìm thấy giao dịch {txn_id} / No such balance transaction: '{txn_id}'", param="id")
    return objects.balance_transaction(doc)


class ReportParams(Params):
    merchant: str | None = None
    date_from: str | None = None
    date_to: str | None = None

    @field_validator("date_from", "date_to")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            dt.date.fromisoformat(value)
        return value


@router.get("/v1/settlement_reports", summary="Daily settlement per merchant (days in Asia/Ho_Chi_Minh)")
async def settlement_reports(request: Request, runtime: RuntimeDep, principal: Caller):
    q = parse(ReportParams, query_params(request))
    merchant_id = acting_for(principal, q.merchant)
    days = await store.settlement_days(runtime.db, merchant_id, q.date_from, q.date_to)
    data = [{"id": f"sr_{merchant_id}_{d['date']}", "object": "settlement_report", "merchant": merchant_id,
             "currency": "vnd", **d} for d in reversed(days)]
    return list_object("/v1/settlement_reports", data, False)


class ListFlagged(ListParams):
    status: Literal["refund_required", "resolved"] | None = None


class ResolveFlagged(Params):
    resolution: Literal["refunded_outside", "applied", "written_off"]
    note: str = Field(min_length=1, max_length=1000)


@router.get("/v1/balance/flagged_payments",
            summary="Money received that could not settle an intent (wrong amount, too late, unmatched): to refund")
async def flagged_payments(request: Request, runtime: RuntimeDep, principal: Caller):
    q = parse(ListFlagged, query_params(request))
    query: dict = owned_by(principal, q.merchant)
    if q.status:
        query["status"] = q.status
    admin = principal.role == "admin"
    return await list_page(runtime.db, store.FLAGGED, query, q, "/v1/balance/flagged_payments",
                           lambda d: objects.flagged_payment(d, admin=admin))


@router.post("/v1/balance/flagged_payments/{flag_id}/resolve", summary="Admin: mark a flagged payment resolved")
async def resolve_flagged(flag_id: str, request: Request, runtime: RuntimeDep, principal: Caller):
    require_admin(principal)
    body = parse(ResolveFlagged, await body_params(request))
    doc = await runtime.outbox.transaction(lambda tx: store.resolve_flagged(
        tx, flag_id, resolution=body.resolution, note=body.note, by=principal.subject))
    return objects.flagged_payment(doc, admin=True)
