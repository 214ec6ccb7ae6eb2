"""Webhook endpoints, as Stripe's API has them, and each endpoint's delivery log."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field, HttpUrl

from shared.clock import utcnow
from shared.errors import InvalidRequest, NotFound
from shared.ids import new_id
from shared.service import RuntimeDep

from services.payments import objects, store, webhooks
from services.payments.api.access import Caller, acting_for, owned_by
from services.payments.api.deps import list_page
from services.payments.api.idempotency import run_once
from services.payments.api.params import ListParams, Metadata, Params, check_metadata_size
from services.payments.api.requests import body_params, parse, query_params

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhook_endpoints"])
EVENT_TYPES = ("payment_intent.created", "payment_intent.succeeded", "payment_intent.payment_failed",
               "payment_intent.canceled", "refund.succeeded", "refund.failed", "merchant_account.activated")


class CreateEndpoint(Params):
    url: HttpUrl
    enabled_events: list[str] = Field(min_length=1)
    description: str | None = Field(default=None, max_length=5000)
    metadata: Metadata = Field(default_factory=dict)
    merchant: str | None = None  # admin: a merchant's endpoint; none = every merchant's events


class UpdateEndpoint(Params):
    url: HttpUrl | None = None
    enabled_events: list[str] | None = None
    description: str | None = Field(default=None, max_length=5000)
    disabled: bool | None = None
    metadata: Metadata | None = None


def check_events(events: list[str]) -> list[str]:
    for i, name in enumerate(events):
        if name != "*" and name not in EVENT_TYPES:
            raise InvalidRequest(f"Loại sự kiện không hợp lệ: {name} / Invalid event type: {name}",
                                 param=f"enabled_events[{i}]")
    return list(dict.fromkeys(events))


def check_url(url: str, production: bool) -> str:
    if production and not url.startswith("https://"):
        raise InvalidRequest("URL webhook phải dùng https / webhook URLs must use https", param="url")
    return url


async def find(runtime, endpoint_id: str, principal) -> dict:
    query = {"_id": endpoint_id, **owned_by(principal)}
    doc = await runtime.db[store.ENDPOINTS].find_one(query)
    if doc is None:
        raise NotFound(f"Không tìm thấy webhook {endpoint_id} / No such webhook endpoint: '{endpoint_id}'",
                       param="id")
    return doc


@router.post("", summary="Create a webhook endpoint (the signing secret is shown only now)")
async def create(request: Request, runtime: RuntimeDep, principal: Caller):
    params = await body_params(request)
    body = parse(CreateEndpoint, params)
    merchant_id = body.merchant if principal.role == "admin" else acting_for(principal, body.merchant)
    doc = {"_id": new_id("we"), "merchant_id": merchant_id,
           "url": check_url(str(body.url), runtime.settings.app_env == "production"),
           "enabled_events": check_events(body.enabled_events), "description": body.description,
           "metadata": body.metadata, "status": "enabled", "secret": webhooks.new_secret(), "created": utcnow()}

    async def work():
        await runtime.db[store.ENDPOINTS].insert_one(doc)
        return 200, objects.webhook_endpoint(doc, with_secret=True)

    return await run_once(request, runtime.db, principal, params, work)


@router.get("", summary="List webhook endpoints")
async def list_endpoints(request: Request, runtime: RuntimeDep, principal: Caller):
    q = parse(ListParams, query_params(request))
    query: dict = owned_by(principal, q.merchant)
    return await list_page(runtime.db, store.ENDPOINTS, query, q, "/v1/webhook_endpoints", objects.webhook_endpoint)


@router.get("/{endpoint_id}", summary="Retrieve a webhook endpoint")
async def retrieve(endpoint_id: str, runtime: RuntimeDep, principal: Caller):
    return objects.webhook_endpoint(await find(runtime, endpoint_id, principal))


@router.post("/{endpoint_id}", summary="Update a webhook endpoint")
async def update(endpoint_id: str, request: Request, runtime: RuntimeDep, principal: Caller):
    body = parse(UpdateEndpoint, await body_params(request))
    doc = await find(runtime, endpoint_id, principal)
    change: dict = {}
    if body.url is not None:
        change["url"] = check_url(str(body.url), runtime.settings.app_env == "production")
    if body.enabled_events is not None:
        change["enabled_events"] = check_events(body.enabled_events)
    if body.description is not None:
        change["description"] = body.description
    if body.disabled is not None:
        change["status"] = "disabled" if body.disabled else "enabled"
    if body.metadata is not None:
        change["metadata"] = {k: v for k, v in {**doc.get("metadata", {}), **body.metadata}.items() if v != ""}
        check_metadata_size(change["metadata"])
    if change:
        await runtime.db[store.ENDPOINTS].update_one({"_id": endpoint_id}, {"$set": change})
    return objects.webhook_endpoint(await find(runtime, endpoint_id, principal))


@router.delete("/{endpoint_id}", summary="Delete a webhook endpoint")
async def delete(endpoint_id: str, runtime: RuntimeDep, principal: Caller):
    await find(runtime, endpoint_id, principal)
    await runtime.db[store.ENDPOINTS].delete_one({"_id": endpoint_id})
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


class ListDeliveries(ListParams):
    status: Literal["pending", "succeeded", "failed", "abandoned"] | None = None


@router.get("/{endpoint_id}/deliveries", summary="The endpoint's delivery log: every event sent and each attempt")
async def deliveries(endpoint_id: str, request: Request, runtime: RuntimeDep, principal: Caller):
    q = parse(ListDeliveries, query_params(request))
    await find(runtime, endpoint_id, principal)
    query: dict = {"endpoint_id": endpoint_id}
    if q.status:
        query["status"] = q.status
    return await list_page(runtime.db, store.DELIVERIES, query, q, f"/v1/webhook_endpoints/{endpoint_id}/deliveries",
                           objects.webhook_delivery)
