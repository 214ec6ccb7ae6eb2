"""The routing table: every resource DESIGN.md lists goes to its owner, matched on whole segments."""

from __future__ import annotations

import pytest

from gateway.routing import ROUTES, Anonymous, Route, RoutingTable

OWNERS = {
    "merchants": ["/v1/merchants", "/v1/products", "/v1/orders", "/v1/cash_sales"],
    "payments": ["/v1/payment_intents", "/v1/refunds", "/v1/events", "/v1/webhook_endpoints", "/v1/vnpay/ipn",
                 "/v1/vnpay/return", "/v1/vietqr/notifications", "/v1/balance", "/v1/balance_transactions",
                 "/v1/settlement_reports", "/v1/accounts", "/v1/api_keys"],
    "tourism": ["/v1/listings", "/v1/bookings", "/v1/tickets"],
    "insights": ["/v1/insights/adoption", "/v1/insights"],
}


@pytest.mark.parametrize("owner,path", [(o, p) for o, paths in OWNERS.items() for p in paths])
def test_each_resource_goes_to_its_owner(owner, path):
    table = RoutingTable()
    assert table.upstream_of(path) == owner
    assert table.upstream_of(path + "/xyz_123/cancel") == owner


@pytest.mark.parametrize("path", ["/v1/auth/token", "/v1/auth/me", "/v1", "/v1/", "/v1/payment_intentsX",
                                  "/v1/nothing", "/", "/docs", "/v2/payment_intents", "/payment_intents",
                                  "/v1/listings/../bookings", "/v1/listings/./x"])
def test_paths_the_table_does_not_own(path):
    assert RoutingTable().match(path) is None


def test_whole_segments_only():
    table = RoutingTable()
    assert table.match("/v1/balance").prefix == "/v1/balance"
    assert table.match("/v1/balance_transactions/txn_1").prefix == "/v1/balance_transactions"


def test_only_provider_callbacks_are_public_and_only_payments_take_api_keys():
    public = {r.prefix for r in ROUTES if r.anonymous is Anonymous.ALWAYS}
    assert public == {"/v1/vnpay", "/v1/vietqr"}
    assert {r.upstream for r in ROUTES if r.api_keys} == {"payments"}
    assert all(r.api_keys for r in ROUTES if r.upstream == "payments")
    browse = next(r for r in ROUTES if r.prefix == "/v1/listings")
    assert browse.allows_anonymous("GET") and not browse.allows_anonymous("POST")


def test_a_prefix_listed_twice_or_malformed_is_refused():
    with pytest.raises(ValueError):
        RoutingTable((Route("/v1/a", "x"), Route("/v1/a", "y")))
    with pytest.raises(ValueError):
        RoutingTable((Route("/v1/a/", "x"),))
