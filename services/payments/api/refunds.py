"""Refunds, as Stripe's API has them: create (full or partial, never more than captured), retrieve, list."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field, model_validator

from shared.errors import NotFound
from shared.service import RuntimeDep

from services.payments import objects, refunds, store
from services.payments.api.access import Caller, owned_by, require_admin, scope
from services.payments.api.deps import ProvidersDep, list_page
from services.payments.api.idempotency import run_once
from services.payments.api.params import Amount, ListParams, Metadata, Params
from services.payments.api.requests import body_params, parse, query_params

router = APIRouter(prefix="/v1/refunds", tags=["refunds"])


class CreateRefund(Params):
    payment_intent: str
    amount: Amount | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = Field(default_factory=dict)


class ReconcileRefund(Params):
    # Absent: ask VNPay (querydr). Given: VNPay's support confirmed it; the note says how.
    outcome: Literal["succeeded", "failed"] | None = None
    note: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _note_with_outcome(self):
        if self.outcome is not None and not self.note:
            raise ValueError("cần ghi chú khi nêu kết quả / note is required with outcome")
        return self


class ListRefunds(ListParams):
    payment_intent: str | None = None


@router.post("", summary="Refund a succeeded PaymentIntent, fully or in part")
async def create(request: Request, runtime: RuntimeDep, principal: Caller, providers: ProvidersDep):
    params = await body_params(request)
    body = parse(CreateRefund, params)
    intent = await store.find_intent(runtime.db, body.payment_intent, scope(principal, None))

    async def work():
        refund = await runtime.outbox.transaction(lambda tx: store.reserve_refund(
            tx, intent, amount=body.amount, reason=body.reason, metadata=body.metadata, claimed=True))
        # Reserved already claimed by this request, so the refund worker cannot race it to VNPay.
        refund = await refunds.execute(runtime.db, runtime.outbox, providers, refund)
        return 200, objects.refund(refund)

    return await run_once(request, runtime.db, principal, params, work)


@router.get("", summary="List refunds, newest first")
async def list_refunds(request: Request, runtime: RuntimeDep, principal: Caller):
    q = parse(ListRefunds, query_params(request))
    query: dict = owned_by(principal, q.merchant)
    if q.payment_intent:
        query["payment_intent_id"] = q.payment_intent
    return await list_page(runtime.db, store.REFUNDS, query, q, "/v1/refunds", objects.refund)


@router.get("/{refund_id}", summary="Retrieve a refund")
async def retrieve(refund_id: str, runtime: RuntimeDep, principal: Caller):
    query = {"_id": refund_id, **owned_by(principal)}
    doc = await runtime.db[store.REFUNDS].find_one(query)
    if doc is None:
        raise NotFound(f"Không tìm thấy hoàn tiền {refund_id} / No such refund: '{refund_id}'", param="id")
    return objects.refund(doc, admin=principal.role == "admin")


@router.post("/{refund_id}/reconcile", summary="Admin: settle a refund held for review (querydr or a stated outcome)")
async def reconcile(refund_id: str, request: Request, runtime: RuntimeDep, principal: Caller,
                    providers: ProvidersDep):
    require_admin(principal)
    body = parse(ReconcileRefund, await body_params(request))
    refund = await refunds.reconcile_held(runtime.db, runtime.outbox, providers, refund_id, by=principal.subject,
                                          outcome=body.outcome, note=body.note)
    return objects.refund(refund, admin=True)
