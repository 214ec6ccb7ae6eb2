"""What payments' routes are given: the providers (public URL, VNPay terminal) and the service settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from pymongo.asynchronous.database import AsyncDatabase

from services.payments import store
from services.payments.api.params import ListParams
from services.payments.store import Providers


def providers(request: Request) -> Providers:
    return request.app.state.providers


ProvidersDep = Annotated[Providers, Depends(providers)]


def list_object(url: str, data: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


async def list_page(db: AsyncDatabase, collection: str, query: dict, q: ListParams, url: str,
                    render: Callable[[dict], dict]) -> dict:
    """One page of a collection, newest first, as a Stripe list object."""
    docs, more = await store.page(db, collection, query, limit=q.limit, starting_after=q.starting_after,
                                  ending_before=q.ending_before)
    return list_object(url, [render(d) for d in docs], more)
