"""A running gateway in front of a stand-in service: what goes through, what is turned away, and
how an upstream that is down or slow is answered."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta

import httpx
import pytest

from deploy.processes import free_port

from gateway.tests.conftest import EchoUpstream, ServerThread, all_upstreams, header_values


@pytest.fixture
def gateway(echo_upstream, start_gateway):
    echo, server = echo_upstream
    return echo, start_gateway(**all_upstreams(server.url))


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


async def test_method_path_query_body_and_end_to_end_headers_reach_the_owner(gateway):
    echo, gw = gateway
    body = b"x" * 300_000  # several chunks: streamed, not held whole
    async with httpx.AsyncClient(base_url=gw.url) as client:
        response = await client.post(
            "/v1/payment_intents/pi_1/confirm?expand[]=latest_charge&note=%C4%90%E1%BB%93ng%20H%E1%BB%9Bi",
            content=body, headers={"Authorization": "Bearer sk_test_demo", "Idempotency-Key": "idem-1",
                                   "Stripe-Version": "2024-06-20", "X-Request-Id": "req-forward-1",
                                   "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1",
                                   "Content-Type": "application/octet-stream"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["raw_path"] == "/v1/payment_intents/pi_1/confirm"
    assert seen["query"] == "expand[]=latest_charge&note=%C4%90%E1%BB%93ng%20H%E1%BB%9Bi"
    assert seen["body_length"] == len(body)
    assert header_values(seen, "authorization") == ["Bearer sk_test_demo"]  # an API key, untouched
    assert header_values(seen, "idempotency-key") == ["idem-1"]
    assert header_values(seen, "stripe-version") == ["2024-06-20"]
    assert header_values(seen, "x-request-id") == ["req-forward-1"]
    assert header_values(seen, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(seen, "x-forwarded-proto") == ["http"]
    assert header_values(seen, "x-secret-hop") == []
    assert response.headers["x-request-id"] == "req-forward-1"
    assert response.headers["x-upstream-name"] == "echo"
    assert len(response.headers.get_list("date")) == 1
    assert echo.hits["/v1/payment_intents/pi_1/confirm"] == 1


async def test_the_answer_is_streamed_as_the_service_produces_it(gateway):
    _, gw = gateway
    async with httpx.AsyncClient(base_url=gw.url) as client:
        started = time.monotonic()
        arrivals = []
        async with client.stream("GET", "/v1/listings/stream/5") as response:
            async for chunk in response.aiter_raw():
                arrivals.append((time.monotonic() - started, chunk))
    assert response.status_code == 200
    assert b"".join(c for _, c in arrivals) == b"chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"
    # The service takes ~0.8 s for all five; the first part must not wait for the last.
    assert arrivals[0][0] < 0.5 and arrivals[-1][0] >= 0.75


async def test_unknown_v1_paths_are_404_in_the_error_shape_and_root_is_left_free(gateway):
    echo, gw = gateway
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for path in ("/v1/nothing", "/v1/auth/nothing", "/v1/", "/v1/payment_intentsX", "/v1/stream/5"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert error_of(response)["code"] == "resource_missing"
        root = await client.get("/")
    assert root.status_code == 404  # no page yet, and nothing proxied: the web pages will live here
    assert sum(echo.hits.values()) == 0


async def test_obviously_unauthenticated_calls_stop_at_the_gateway(gateway, keys, other_keys):
    echo, gw = gateway
    expired = keys.issuer().issue("usr_x", "merchant", "mch_a", lifetime=timedelta(seconds=-60))
    forged = other_keys.issuer().issue("usr_x", "admin")
    async with httpx.AsyncClient(base_url=gw.url) as client:
        cases = [
            ("POST", "/v1/orders", {}, 401, "unauthenticated"),
            ("GET", "/v1/payment_intents", {}, 401, "unauthenticated"),
            ("POST", "/v1/listings", {}, 401, "unauthenticated"),
            ("GET", "/v1/payment_intents", {"Authorization": f"Bearer {expired}"}, 401, "token_expired"),
            ("GET", "/v1/listings", {"Authorization": f"Bearer {expired}"}, 401, "token_expired"),
            ("GET", "/v1/bookings", {"Authorization": f"Bearer {forged}"}, 401, "invalid_token"),
            ("GET", "/v1/orders", {"Authorization": "Bearer sk_test_abc"}, 401, "api_key_not_accepted"),
            ("GET", "/v1/insights/adoption", {"Authorization": "Token abc"}, 401, "invalid_token"),
        ]
        for method, path, headers, status, code in cases:
            response = await client.request(method, path, headers=headers)
            assert response.status_code == status, (method, path, response.text)
            assert error_of(response)["code"] == code, (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert sum(echo.hits.values()) == 0


async def test_what_the_owner_must_decide_goes_through(gateway, keys):
    echo, gw = gateway
    token = keys.issuer().issue("usr_s", "shopper")
    async with httpx.AsyncClient(base_url=gw.url) as client:
        calls = [
            ("GET", "/v1/listings", {}),  # browsing needs no account
            ("GET", "/v1/products/prd_1", {}),
            ("GET", "/v1/vnpay/ipn?vnp_TxnRef=1", {}),  # VNPay's own call, checked by signature
            ("GET", "/v1/vnpay/ipn?vnp_TxnRef=2", {"Authorization": "Bearer garbage.not.jwt"}),
            ("POST", "/v1/vietqr/notifications", {}),
            ("GET", "/v1/payment_intents", {"Authorization": "Bearer sk_test_abc"}),
            ("GET", "/v1/payment_intents", {"Authorization": "Basic c2tfdGVzdF9hYmM6"}),
            # A shopper's token is valid: whether a shopper may list intents is for payments to say.
            ("GET", "/v1/payment_intents", {"Authorization": f"Bearer {token}"}),
        ]
        for method, path, headers in calls:
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 200, (method, path, response.text)
            assert response.json()["service"] == "echo"
    assert sum(echo.hits.values()) == len(calls)


async def test_an_upstream_that_is_down_is_a_quick_503_then_the_circuit_opens_and_recovers(start_gateway):
    port = free_port()  # nothing listens here yet
    gw = start_gateway(**all_upstreams(f"http://127.0.0.1:{port}"), circuit_failure_threshold=2,
                       circuit_cooldown_seconds=1.0, upstream_retries=1)
    key = {"Authorization": "Bearer sk_test_x"}
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for _ in range(2):
            started = time.monotonic()
            response = await client.get("/v1/payment_intents", headers=key)
            assert time.monotonic() - started < 2.0
            assert response.status_code == 503
            assert error_of(response)["code"] == "service_unavailable"
            assert error_of(response)["type"] == "api_error"
        opened = await client.get("/v1/payment_intents", headers=key)
        assert opened.status_code == 503 and int(opened.headers["retry-after"]) >= 1
        # Other upstreams have their own circuits.
        assert (await client.get("/v1/listings")).status_code == 503
        echo = EchoUpstream("revived")
        server = ServerThread(echo.app(), port=port).start()
        try:
            still_open = await client.get("/v1/payment_intents", headers=key)
            assert still_open.status_code == 503 and echo.hits["/v1/payment_intents"] == 0
            await asyncio.sleep(1.1)
            probe = await client.get("/v1/payment_intents", headers=key)
            assert probe.status_code == 200 and probe.json()["service"] == "revived"
            assert (await client.get("/v1/payment_intents", headers=key)).status_code == 200
        finally:
            server.stop()


async def test_a_slow_upstream_is_a_504_within_the_timeout(echo_upstream, start_gateway):
    echo, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url), upstream_timeout_seconds=0.5)
    async with httpx.AsyncClient(base_url=gw.url) as client:
        started = time.monotonic()
        response = await client.get("/v1/listings/slow/3")
        elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert error_of(response)["code"] == "upstream_timeout"
    assert elapsed < 1.5


async def test_an_upstream_that_accepts_but_never_answers_is_a_504(start_gateway):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
    try:
        gw = start_gateway(**all_upstreams(f"http://127.0.0.1:{silent.getsockname()[1]}"),
                           upstream_timeout_seconds=0.5)
        async with httpx.AsyncClient(base_url=gw.url) as client:
            started = time.monotonic()
            response = await client.get("/v1/listings")
            assert time.monotonic() - started < 1.5
        assert response.status_code == 504
    finally:
        silent.close()


async def test_per_upstream_timeouts(echo_upstream, start_gateway):
    _, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url), upstream_timeout_seconds=0.3,
                       upstream_timeouts={"tourism": 3.0})
    async with httpx.AsyncClient(base_url=gw.url) as client:
        tourism = await client.get("/v1/listings/slow/0.6")
        merchants = await client.get("/v1/products/slow/0.6")
    assert tourism.status_code == 200
    assert merchants.status_code == 504


async def test_a_slow_upstream_does_not_hold_the_connections_of_the_others(start_gateway):
    """Tourism hangs with every connection the gateway allows an upstream; merchants still answer at once."""
    slow_echo, fast_echo = EchoUpstream("tourism"), EchoUpstream("merchants")
    slow, fast = ServerThread(slow_echo.app()).start(), ServerThread(fast_echo.app()).start()
    try:
        gw = start_gateway(**{**all_upstreams(fast.url), "tourism_url": slow.url}, upstream_max_connections=4,
                           upstream_timeout_seconds=10.0)
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            stuck = [asyncio.create_task(client.get("/v1/listings/slow/2.5")) for _ in range(4)]
            while slow_echo.hits["slow"] < 4:
                await asyncio.sleep(0.02)
            started = time.monotonic()
            other = await client.get("/v1/products")
            elapsed = time.monotonic() - started
            assert [r.status_code for r in await asyncio.gather(*stuck)] == [200] * 4
        assert other.status_code == 200 and other.json()["service"] == "merchants", other.text
        assert elapsed < 1.0, elapsed
    finally:
        slow.stop()
        fast.stop()
