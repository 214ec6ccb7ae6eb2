"""Wires the insights service: its settings, routes, event handlers and indexes, in the shape all services share."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import ServiceDefinition, create_service_app
from shared.settings import ServiceSettings


class InsightsSettings(ServiceSettings):
    service_name: str = "insights"


def create_app(settings: InsightsSettings | None = None) -> FastAPI:
    settings = settings or InsightsSettings()
    definition = ServiceDefinition(
        name="insights",
        title="Quảng Trị — Insights",
        description="The province's read model of cashless adoption by commune, sector and day, fed only by events.",
        routers=[],
        produces=(),
    )
    return create_service_app(definition, settings)
