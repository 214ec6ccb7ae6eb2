"""Merchant payment accounts (opened by an admin or by merchant.approved) and their secret API keys."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from pydantic import AliasChoices, Field
from pymongo.errors import DuplicateKeyError

from shared.errors import Forbidden, NotFound
from shared.service import RuntimeDep

from services.payments import objects, store
from services.payments.api.access import Caller, acting_for, owned_by, require_admin
from services.payments.api.deps import ProvidersDep, list_page
from services.payments.api.params import ListParams, Params
from services.payments.api.requests import body_params, parse, query_params

router = APIRouter(tags=["accounts"])


class OpenAccount(Params):
    merchant_id: str = Field(min_length=1, max_length=64)
    display_name: str = Field(min_length=1, max_length=200)
    commune_code: int = Field(gt=0)
    sector: str = Field(min_length=1, max_length=64)
    bank_bin: str = Field(pattern=r"^\d{6}$")
    bank_account_no: str = Field(pattern=r"^[0-9A-Za-z]{1,19}$")
    bank_account_name: str = Field(min_length=1, max_length=100)


@router.post("/v1/accounts", summary="Open a merchant's payment account (admin; once per merchant)")
async def open_account(request: Request, runtime: RuntimeDep, principal: Caller, providers: ProvidersDep):
    require_admin(principal)
    body = parse(OpenAccount, await body_params(request))
    details = store.AccountDetails(**body.model_dump(exclude={"expand"}))
    try:
        doc, _ = await runtime.outbox.transaction(lambda tx: store.open_account(tx, details, providers))
    except DuplicateKeyError:
        # merchant.approved opened it at the same moment: the same account either way.
        doc = await runtime.db[store.ACCOUNTS].find_one({"merchant_id": body.merchant_id})
    return objects.account(doc, providers.base_url)


@router.get("/v1/accounts", summary="Payment accounts (a merchant sees its own)")
async def list_accounts(request: Request, runtime: RuntimeDep, principal: Caller, providers: ProvidersDep):
    q = parse(ListParams, query_params(request))
    query: dict = owned_by(principal, q.merchant)
    return await list_page(runtime.db, store.ACCOUNTS, query, q, "/v1/accounts",
                           lambda d: objects.account(d, providers.base_url))


@router.get("/v1/accounts/{account_id}", summary="Retrieve a payment account")
async def retrieve_account(account_id: str, runtime: RuntimeDep, principal: Caller, providers: ProvidersDep):
    doc = await runtime.db[store.ACCOUNTS].find_one({"_id": account_id, **owned_by(principal)})
    if doc is None:
        raise NotFound(f"Không tìm thấy tài khoản {account_id} / No such account: '{account_id}'", param="id")
    return objects.account(doc, providers.base_url)


class RollKey(Params):
    # `merchant` like every other payments route; `merchant_id` as the accounts body names it.
    merchant: str | None = Field(default=None, validation_alias=AliasChoices("merchant", "merchant_id"))
    # Stripe's roll: how long the old key keeps working, so servers can switch without downtime.
    expires_in: int = Field(default=0, ge=0, le=7 * 24 * 3600)


@router.post("/v1/api_keys/roll", summary="Issue a new secret key (shown once); older keys stop working")
async def roll_key(request: Request, runtime: RuntimeDep, principal: Caller):
    if principal.via == "api_key":
        # A leaked key must not be able to lock its merchant out: rolling needs a person's sign-in.
        raise Forbidden("Cần đăng nhập để đổi khóa / rolling keys needs a signed-in person, not an API key")
    body = parse(RollKey, await body_params(request))
    merchant_id = acting_for(principal, body.merchant)
    if await runtime.db[store.ACCOUNTS].find_one({"merchant_id": merchant_id}, projection={"_id": 1}) is None:
        raise NotFound("Cửa hàng chưa có tài khoản thanh toán / this merchant has no payment account yet",
                       param="merchant")
    doc, secret = await store.roll_api_key(runtime.db, merchant_id, timedelta(seconds=body.expires_in))
    return {"id": doc["_id"], "object": "api_key", "secret": secret, "merchant": merchant_id,
            "created": objects.unix(doc["created"]), "livemode": False,
            "previous_keys_expire_at": objects.unix(doc["created"] + timedelta(seconds=body.expires_in))}
