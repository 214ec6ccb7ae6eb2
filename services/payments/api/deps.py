"""What payments' routes are given: the providers (public URL, VNPay terminal) and the service settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.payments.store import Providers


def providers(request: Request) -> Providers:
    return request.app.state.providers


ProvidersDep = Annotated[Providers, Depends(providers)]


def list_object(url: str, data: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}
