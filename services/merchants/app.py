"""Wires the merchants service: its settings, routes, event handlers and indexes, in the shape all services share."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import ServiceDefinition, create_service_app
from shared.settings import ServiceSettings


class MerchantsSettings(ServiceSettings):
    service_name: str = "merchants"


def create_app(settings: MerchantsSettings | None = None) -> FastAPI:
    settings = settings or MerchantsSettings()
    definition = ServiceDefinition(
        name="merchants",
        title="Quảng Trị — Merchants",
        description="Onboarding and review of local businesses, storefront catalog, orders, cash-sale records.",
        routers=[],
        produces=("merchants.events",),
    )
    return create_service_app(definition, settings)
