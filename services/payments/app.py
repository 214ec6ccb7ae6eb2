"""Wires the payments service: its settings, routes, event handlers and indexes, in the shape all services share."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import ServiceDefinition, create_service_app
from shared.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    service_name: str = "payments"


def create_app(settings: PaymentsSettings | None = None) -> FastAPI:
    settings = settings or PaymentsSettings()
    definition = ServiceDefinition(
        name="payments",
        title="Quảng Trị — Payments",
        description="Stripe-compatible payments API on VNPay and VietQR: intents, refunds, events, webhooks, ledger.",
        routers=[],
        produces=("payments.events",),
    )
    return create_service_app(definition, settings)
