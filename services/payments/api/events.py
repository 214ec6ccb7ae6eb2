"""Events, as Stripe's API has them: every change to an object, newest first."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request

from shared.errors import NotFound
from shared.service import RuntimeDep

from services.payments import objects, store
from services.payments.api.access import Caller, owned_by
from services.payments.api.deps import list_page
from services.payments.api.params import ListParams
from services.payments.api.requests import parse, query_params

router = APIRouter(prefix="/v1/events", tags=["events"])


class ListEvents(ListParams):
    type: str | None = None
    types: list[str] | None = None


@router.get("", summary="List events, newest first")
async def list_events(request: Request, runtime: RuntimeDep, principal: Caller):
    q = parse(ListEvents, query_params(request))
    query: dict = owned_by(principal, q.merchant)
    if q.type:
        # Stripe's wildcard: `payment_intent.*`
        query["type"] = {"$regex": "^" + re.escape(q.type[:-1])} if q.type.endswith("*") else q.type
    elif q.types:
        query["type"] = {"$in": q.types}
    return await list_page(runtime.db, store.EVENTS, query, q, "/v1/events", objects.event)


@router.get("/{event_id}", summary="Retrieve an event")
async def retrieve(event_id: str, runtime: RuntimeDep, principal: Caller):
    query = {"_id": event_id, **owned_by(principal)}
    doc = await runtime.db[store.EVENTS].find_one(query)
    if doc is None:
        raise NotFound(f"Không tìm thấy sự kiện {event_id} / No such event: '{event_id}'", param="id")
    return objects.event(doc)
