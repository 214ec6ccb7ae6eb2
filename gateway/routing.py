"""The routing table: which service owns each `/v1/…` resource, and who may reach it unauthenticated.

The table is data. A path belongs to the route whose prefix is its longest leading run of whole
segments (`/v1/balance` does not own `/v1/balance_transactions`). The gateway's own `/v1/auth/…`
routes are FastAPI routes and are not in this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Anonymous(str, Enum):
    """What a caller without credentials may do on a route, as far as the gateway is concerned.

    The owning service still decides: the gateway only turns away calls that are obviously
    unauthenticated, so that a service never sees them.
    """

    NEVER = "never"
    READS = "reads"    # GET/HEAD/OPTIONS: browsing the catalogue, listings, storefronts
    ALWAYS = "always"  # payment providers' callbacks, checked by their own signatures


@dataclass(frozen=True)
class Route:
    prefix: str
    upstream: str
    anonymous: Anonymous = Anonymous.NEVER
    # Merchant secret keys (`sk_test_…`) are issued and verified by payments; elsewhere a
    # credential must be a person's token.
    api_keys: bool = False

    def allows_anonymous(self, method: str) -> bool:
        if self.anonymous is Anonymous.ALWAYS:
            return True
        return self.anonymous is Anonymous.READS and method in SAFE_METHODS


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _payments(resource: str, anonymous: Anonymous = Anonymous.NEVER) -> Route:
    return Route(f"/v1/{resource}", "payments", anonymous, api_keys=True)


ROUTES: tuple[Route, ...] = (
    Route("/v1/merchants", "merchants", Anonymous.READS),
    Route("/v1/products", "merchants", Anonymous.READS),
    Route("/v1/orders", "merchants"),
    Route("/v1/cash_sales", "merchants"),
    _payments("payment_intents"),
    _payments("refunds"),
    _payments("events"),
    _payments("webhook_endpoints"),
    _payments("balance"),
    _payments("balance_transactions"),
    _payments("settlement_reports"),
    _payments("accounts"),
    _payments("api_keys"),
    # VNPay's IPN (a GET from VNPay), the shopper's return from VNPay's page, and the bank's
    # VietQR transfer notifications: no token, each verified by its signature in payments.
    _payments("vnpay", Anonymous.ALWAYS),
    _payments("vietqr", Anonymous.ALWAYS),
    Route("/v1/listings", "tourism", Anonymous.READS),
    Route("/v1/bookings", "tourism"),
    Route("/v1/tickets", "tourism"),
    Route("/v1/insights", "insights"),
)


class RoutingTable:
    def __init__(self, routes: tuple[Route, ...] = ROUTES):
        self._by_prefix: dict[str, Route] = {}
        for route in routes:
            if not route.prefix.startswith("/v1/") or route.prefix.endswith("/"):
                raise ValueError(f"route prefix must look like /v1/<resource>: {route.prefix!r}")
            if route.prefix in self._by_prefix:
                raise ValueError(f"route prefix listed twice: {route.prefix}")
            self._by_prefix[route.prefix] = route
        self.routes = routes
        self._max_depth = max((r.prefix.count("/") for r in routes), default=0)

    def match(self, path: str) -> Route | None:
        parts = path.split("/")
        if "." in parts or ".." in parts:
            # Dot segments would let one resource's rules (anonymous reads of listings) stand in
            # for another's (`/v1/listings/../bookings`): such a path names no resource.
            return None
        # parts[0] is "" (the leading slash); try the longest candidate prefix first.
        for depth in range(min(len(parts) - 1, self._max_depth), 1, -1):
            candidate = "/".join(parts[: depth + 1])
            route = self._by_prefix.get(candidate)
            if route is not None:
                return route
        return None

    def upstream_of(self, path: str) -> str | None:
        route = self.match(path)
        return route.upstream if route else None
