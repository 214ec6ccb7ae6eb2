"""PaymentIntents, as Stripe's API has them: create, retrieve, update, list, confirm, cancel."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field, HttpUrl

from shared.clock import utcnow
from shared.errors import InvalidRequest
from shared.service import RuntimeDep

from services.payments import domain, objects, store
from services.payments.api.access import Caller, acting_for, owned_by, scope
from services.payments.api.deps import ProvidersDep, list_page
from services.payments.api.idempotency import run_once
from services.payments.api.params import Amount, ListParams, Metadata, Params, check_metadata_size
from services.payments.api.requests import body_params, client_ip, parse, query_params

router = APIRouter(prefix="/v1/payment_intents", tags=["payment_intents"])
EXPANDABLE = {"latest_charge", "payment_method", "customer"}


class CreateIntent(Params):
    amount: Amount
    currency: str
    payment_method_types: list[str] | None = None
    metadata: Metadata = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=1000)
    return_url: HttpUrl | None = None
    expires_at: int | None = None  # unix seconds; ours (Stripe's Checkout has it): when the QR/link stops working
    # Our methods need nothing from the customer before their action, so every intent is confirmed on creation.
    confirm: bool | None = None
    merchant: str | None = None


class UpdateIntent(Params):
    metadata: Metadata | Literal[""] | None = None
    description: str | None = Field(default=None, max_length=1000)


class CancelIntent(Params):
    cancellation_reason: Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None = None


class ConfirmIntent(Params):
    return_url: HttpUrl | None = None


def check_expand(expand: list[str]) -> None:
    for i, path in enumerate(expand):
        if path not in EXPANDABLE:
            raise InvalidRequest(f"Thuộc tính không mở rộng được ({path}) / This property cannot be expanded "
                                 f"({path}).", param=f"expand[{i}]")


@router.post("", summary="Create a PaymentIntent")
async def create(request: Request, runtime: RuntimeDep, principal: Caller, providers: ProvidersDep):
    params = await body_params(request)
    body = parse(CreateIntent, params)
    check_expand(body.expand)
    merchant_id = acting_for(principal, body.merchant)
    domain.check_amount(body.amount)
    domain.check_currency(body.currency)
    if body.payment_method_types == []:
        raise InvalidRequest("Cần ít nhất một phương thức thanh toán / payment_method_types must not be empty",
                             param="payment_method_types")
    methods = domain.check_methods(body.payment_method_types)
    now = utcnow()
    try:
        requested = datetime.fromtimestamp(body.expires_at, timezone.utc) if body.expires_at is not None else None
    except (OverflowError, OSError, ValueError):
        raise InvalidRequest("Thời hạn thanh toán không hợp lệ / expires_at is not a valid time",
                             param="expires_at") from None
    expires_at = domain.intent_expiry(now, requested)
    account = await runtime.db[store.ACCOUNTS].find_one({"merchant_id": merchant_id})
    if account is None:
        raise InvalidRequest("Cửa hàng chưa có tài khoản thanh toán / this merchant has no payment account yet",
                             param="merchant", code="account_invalid")
    spec = store.IntentSpec(amount=body.amount, payment_method_types=methods, metadata=body.metadata,
                            description=body.description, return_url=str(body.return_url) if body.return_url else None,
                            expires_at=expires_at, ip_address=client_ip(request))

    async def work():
        intent = await runtime.outbox.transaction(lambda tx: store.create_intent(tx, account, spec, providers))
        return 200, objects.payment_intent(intent, providers.base_url)

    return await run_once(request, runtime.db, principal, params, work)


@router.get("", summary="List PaymentIntents, newest first")
async def list_intents(request: Request, runtime: RuntimeDep, principal: Caller, providers: ProvidersDep):
    q = parse(ListParams, query_params(request))
    query: dict = owned_by(principal, q.merchant)
    return await list_page(runtime.db, store.INTENTS, query, q, "/v1/payment_intents",
                           lambda d: objects.payment_intent(d, providers.base_url))


@router.get("/{intent_id}", summary="Retrieve a PaymentIntent")
async def retrieve(intent_id: str, request: Request, runtime: RuntimeDep, principal: Caller,
                   providers: ProvidersDep):
    q = parse(Params, {k: v for k, v in query_params(request).items() if k != "client_secret"})
    check_expand(q.expand)
    intent = await store.find_intent(runtime.db, intent_id, scope(principal, None))
    return objects.payment_intent(intent, providers.base_url)


@router.post("/{intent_id}", summary="Update a PaymentIntent's metadata or description")
async def update(intent_id: str, request: Request, runtime: RuntimeDep, principal: Caller,
                 providers: ProvidersDep):
    params = await body_params(request)
    body = parse(UpdateIntent, params)
    intent = await store.find_intent(runtime.db, intent_id, scope(principal, None))
    change: dict = {}
    if body.metadata == "":
        change["metadata"] = {}
    elif body.metadata:
        # Stripe's rule: an empty value removes the key, others are merged in.
        merged = {**intent.get("metadata", {}), **body.metadata}
        change["metadata"] = {k: v for k, v in merged.items() if v != ""}
        check_metadata_size(change["metadata"])
    if body.description is not None:
        change["description"] = body.description
    if change:
        await runtime.db[store.INTENTS].update_one({"_id": intent_id}, {"$set": change})
        intent = await store.find_intent(runtime.db, intent_id, None)
    return objects.payment_intent(intent, providers.base_url)


@router.post("/{intent_id}/cancel", summary="Cancel a PaymentIntent")
async def cancel(intent_id: str, request: Request, runtime: RuntimeDep, principal: Caller,
                 providers: ProvidersDep):
    params = await body_params(request)
    body = parse(CancelIntent, params)
    await store.find_intent(runtime.db, intent_id, scope(principal, None))

    # The state is checked inside the work only: a retry with the same Idempotency-Key must replay the
    # first answer, not be refused because that first request already cancelled the intent.
    async def work():
        async def change(tx):
            fresh = await store.find_intent(tx.db, intent_id, None, session=tx.session)
            domain.check_cancelable(fresh["status"], intent_id)
            return await store.cancel_intent(tx, fresh, body.cancellation_reason or "requested_by_customer",
                                             providers)
        updated = await runtime.outbox.transaction(change)
        return 200, objects.payment_intent(updated, providers.base_url)

    return await run_once(request, runtime.db, principal, params, work)


@router.post("/{intent_id}/confirm", summary="Start a new payment attempt after a failed one")
async def confirm(intent_id: str, request: Request, runtime: RuntimeDep, principal: Caller,
                  providers: ProvidersDep):
    params = await body_params(request)
    body = parse(ConfirmIntent, params)
    await store.find_intent(runtime.db, intent_id, scope(principal, None))

    async def work():  # the state is checked inside, as for cancel: a keyed retry replays
        async def change(tx):
            fresh = await store.find_intent(tx.db, intent_id, None, session=tx.session)
            domain.check_confirmable(fresh["status"], intent_id)
            if body.return_url:
                await tx.db[store.INTENTS].update_one({"_id": intent_id}, {"$set": {"return_url": str(body.return_url)}},
                                                      session=tx.session)
                fresh["return_url"] = str(body.return_url)
            return await store.confirm_intent(tx, fresh, providers)
        updated = await runtime.outbox.transaction(change)
        return 200, objects.payment_intent(updated, providers.base_url)

    return await run_once(request, runtime.db, principal, params, work)

