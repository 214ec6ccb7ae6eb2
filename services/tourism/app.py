"""Wires the tourism service: its settings, routes, event handlers and indexes, in the shape all services share."""

from __future__ import annotations

from fastapi import FastAPI

from shared.service import ServiceDefinition, create_service_app
from shared.settings import ServiceSettings


class TourismSettings(ServiceSettings):
    service_name: str = "tourism"


def create_app(settings: TourismSettings | None = None) -> FastAPI:
    settings = settings or TourismSettings()
    definition = ServiceDefinition(
        name="tourism",
        title="Quảng Trị — Tourism",
        description="Attraction listings, dated availability, hold → pay → confirm bookings, e-tickets, gate check-in.",
        routers=[],
        produces=("tourism.events",),
    )
    return create_service_app(definition, settings)
