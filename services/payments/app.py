"""Wires the payments service: its settings, routes, event handlers, workers and indexes, in the shape all services share."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from pydantic import Field, SecretStr

from shared.service import PeriodicJob, Runtime, ServiceDefinition, create_service_app
from shared.settings import ServiceSettings

from services.payments import reconciliation, refunds, store, webhooks
from services.payments.api import (
    accounts, events, ledger, payment_intents, refunds as refunds_api, vietqr as vietqr_api, vnpay as vnpay_api,
    webhook_endpoints,
)
from services.payments.handlers import event_handlers
from services.payments.vnpay import VNPayClient, VNPayConfig


class PaymentsSettings(ServiceSettings):
    service_name: str = "payments"
    # Our public address (the gateway), for links we hand out: QR images, return pages.
    public_base_url: str = "http://127.0.0.1:8000"
    vnpay_pay_url: str = "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"
    vnpay_api_url: str = "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction"
    vnpay_tmn_code: str = "QTDEMO01"
    vnpay_hash_secret: SecretStr = SecretStr("QTDEMOSECRETQTDEMOSECRETQTDEMO00")
    vnpay_return_url: str = "http://127.0.0.1:8000/v1/vnpay/return"
    vnpay_timeout_seconds: float = Field(default=10.0, gt=0)
    bank_notify_secret: SecretStr = SecretStr("QTDEMOBANKSECRET")
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=12, ge=1)
    webhook_retry_base_seconds: float = Field(default=2.0, gt=0)
    reconcile_every_seconds: float = Field(default=3.0, gt=0)
    reconcile_grace_seconds: float = Field(default=2.0, ge=0)
    refund_worker_seconds: float = Field(default=1.0, gt=0)


def create_app(settings: PaymentsSettings | None = None) -> FastAPI:
    settings = settings or PaymentsSettings()
    vnpay = VNPayClient(VNPayConfig(
        pay_url=settings.vnpay_pay_url, api_url=settings.vnpay_api_url, tmn_code=settings.vnpay_tmn_code,
        hash_secret=settings.vnpay_hash_secret.get_secret_value(), return_url=settings.vnpay_return_url,
        timeout_seconds=settings.vnpay_timeout_seconds))
    providers = store.Providers(base_url=settings.public_base_url.rstrip("/"), vnpay=vnpay)
    webhook_http = httpx.AsyncClient(timeout=httpx.Timeout(settings.webhook_timeout_seconds, connect=3.0),
                                     follow_redirects=False)

    async def deliver_webhooks(runtime: Runtime) -> None:
        await webhooks.deliver_due(runtime.db, webhook_http, max_attempts=settings.webhook_max_attempts,
                                   base_seconds=settings.webhook_retry_base_seconds)

    async def reconcile(runtime: Runtime) -> None:
        await reconciliation.reconcile_once(runtime.db, runtime.outbox, providers,
                                            grace=timedelta(seconds=settings.reconcile_grace_seconds))

    async def send_refunds(runtime: Runtime) -> None:
        await refunds.process_pending(runtime.db, runtime.outbox, providers)

    definition = ServiceDefinition(
        name="payments",
        title="Quảng Trị — Payments",
        description="Stripe-compatible payments API on VNPay and VietQR: intents, refunds, events, webhooks, ledger.",
        routers=[payment_intents.router, refunds_api.router, events.router, webhook_endpoints.router,
                 vnpay_api.router, vietqr_api.router, ledger.router, accounts.router],
        produces=("payments.events",),
        handlers=event_handlers(providers),
        ensure_indexes=store.ensure_indexes,
        jobs=(PeriodicJob("webhooks", settings.webhook_poll_seconds, deliver_webhooks),
              PeriodicJob("reconciliation", settings.reconcile_every_seconds, reconcile),
              PeriodicJob("refunds", settings.refund_worker_seconds, send_refunds)),
        on_shutdown=(webhook_http.aclose, vnpay.close),
    )
    app = create_service_app(definition, settings)
    app.state.providers = providers
    return app
