"""What every answer gets at the edge: rate limits, body size limits, request ids, security headers, CORS."""

from __future__ import annotations

import asyncio

import httpx

from gateway.tests.conftest import all_upstreams, header_values


async def test_a_client_over_its_budget_gets_429_with_retry_after_and_others_do_not(
        echo_upstream, start_gateway, keys):
    echo, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url), rate_limit_per_second=4.0, rate_limit_burst=3)
    issuer = keys.issuer()
    alice = {"Authorization": f"Bearer {issuer.issue('usr_alice', 'shopper')}"}
    bob = {"Authorization": f"Bearer {issuer.issue('usr_bob', 'shopper')}"}
    key = {"Authorization": "Bearer sk_test_merchant_a"}
    async with httpx.AsyncClient(base_url=gw.url) as client:
        statuses = [(await client.get("/v1/listings", headers=alice)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await client.get("/v1/listings", headers=alice)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error" and error["request_id"] == refused.headers["x-request-id"]
        assert int(refused.headers["retry-after"]) >= 1
        # Another person, an API key and an anonymous caller each have their own bucket.
        assert (await client.get("/v1/listings", headers=bob)).status_code == 200
        assert (await client.get("/v1/payment_intents", headers=key)).status_code == 200
        assert (await client.get("/v1/listings")).status_code == 200
        # Health checks are never limited (the orchestrator must always see the truth).
        assert all([(await client.get("/healthz")).status_code == 200 for _ in range(10)])
        await asyncio.sleep(0.3)  # 4 tokens a second: one is back
        assert (await client.get("/v1/listings", headers=alice)).status_code == 200
    assert echo.hits["/v1/listings"] == 6


async def test_a_forged_subject_does_not_buy_a_new_budget(echo_upstream, start_gateway, other_keys):
    _, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url), rate_limit_per_second=1.0, rate_limit_burst=2)
    async with httpx.AsyncClient(base_url=gw.url) as client:
        answers = []
        for i in range(3):
            forged = other_keys.issuer().issue(f"usr_{i}", "shopper")  # a fresh subject each time
            answers.append((await client.get("/v1/listings", headers={"Authorization": f"Bearer {forged}"})).status_code)
    # Unverifiable tokens are counted against the caller's address: 401, 401, then 429.
    assert answers == [401, 401, 429]


async def test_request_ids_are_accepted_or_made_and_passed_on(echo_upstream, start_gateway):
    _, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url))
    async with httpx.AsyncClient(base_url=gw.url) as client:
        given = await client.get("/v1/listings", headers={"X-Request-Id": "req-client-123"})
        made = await client.get("/v1/listings")
        unsafe = await client.get("/v1/listings", headers={"X-Request-Id": "bad id\twith spaces"})
        refused = await client.get("/v1/orders", headers={"X-Request-Id": "req-refused-1"})
    assert given.headers["x-request-id"] == "req-client-123"
    assert header_values(given.json(), "x-request-id") == ["req-client-123"]
    made_id = made.headers["x-request-id"]
    assert made_id.startswith("req_") and header_values(made.json(), "x-request-id") == [made_id]
    assert unsafe.headers["x-request-id"].startswith("req_")
    assert header_values(unsafe.json(), "x-request-id") == [unsafe.headers["x-request-id"]]
    assert refused.status_code == 401 and refused.json()["error"]["request_id"] == "req-refused-1"


async def test_bodies_over_the_limit_are_413_declared_or_streamed(echo_upstream, start_gateway):
    echo, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url), max_body_bytes=4096)
    key = {"Authorization": "Bearer sk_test_x"}

    async def chunked(total: int):
        for _ in range(total // 1024):
            yield b"y" * 1024

    async with httpx.AsyncClient(base_url=gw.url) as client:
        declared = await client.post("/v1/payment_intents", content=b"x" * 5000, headers=key)
        streamed = await client.post("/v1/payment_intents", content=chunked(64 * 1024), headers=key)
        form = await client.post("/v1/auth/token", content=b"username=" + b"a" * 6000 + b"&password=x",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        within = await client.post("/v1/payment_intents", content=b"x" * 4000, headers=key)
        within_chunked = await client.post("/v1/payment_intents", content=chunked(3072), headers=key)
    for response in (declared, streamed, form):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "request_too_large"
        assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
    assert within.status_code == 200 and within.json()["body_length"] == 4000
    assert within_chunked.status_code == 200 and within_chunked.json()["body_length"] == 3072
    assert echo.hits["/v1/payment_intents"] in (2, 3)  # the streamed one may have started upstream


async def test_security_headers_and_hsts_only_over_https(echo_upstream, start_gateway):
    _, server = echo_upstream
    plain = start_gateway(**all_upstreams(server.url))
    proxied = start_gateway(**all_upstreams(server.url), trust_forwarded_headers=True)
    async with httpx.AsyncClient() as client:
        for response in (await client.get(f"{plain.url}/v1/listings"), await client.get(f"{plain.url}/v1/orders"),
                         await client.get(f"{plain.url}/healthz")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
            assert "strict-transport-security" not in response.headers
        spoofed = await client.get(f"{plain.url}/healthz", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" not in spoofed.headers
        behind_tls = await client.get(f"{proxied.url}/healthz", headers={"X-Forwarded-Proto": "https"})
        assert behind_tls.headers["strict-transport-security"].startswith("max-age=")


async def test_cors_lets_the_listed_origins_in_only(echo_upstream, start_gateway):
    _, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url), cors_allow_origins="https://quangtri.example, https://web.example")
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, idempotency-key, content-type"}
    async with httpx.AsyncClient(base_url=gw.url) as client:
        allowed = await client.options("/v1/payment_intents", headers={"Origin": "https://web.example", **preflight})
        denied = await client.options("/v1/payment_intents", headers={"Origin": "https://evil.example", **preflight})
        simple = await client.get("/v1/listings", headers={"Origin": "https://quangtri.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://web.example"
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in denied.headers
    assert simple.headers["access-control-allow-origin"] == "https://quangtri.example"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def _raw_get(port: int, path: str, request_id: bytes) -> bytes:
    """A request written by hand: clients such as httpx refuse to send these header values at all."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: gw\r\nX-Request-Id: " + request_id +
                     b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


async def test_injected_or_overlong_request_ids_are_replaced_never_echoed(echo_upstream, start_gateway):
    echo, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url))
    attempts = [b"r" * 129, b"r" * 10_000, b"req-1\r\n Set-Cookie: evil=1", b"req-2\rSet-Cookie: evil=2",
                b"req-3\x00x", b"req-4\x1b[31m", b"req-5\xc3\xa9", b"req 6", b"req-7\"><script>"]
    for attempt in attempts:
        raw = await asyncio.to_thread(_raw_get, gw.port, "/v1/listings", attempt)
        head = raw.split(b"\r\n\r\n", 1)[0]
        status = int(head.split(b" ", 2)[1])
        assert status in (200, 400), (attempt, head)
        assert b"evil" not in head and attempt not in head, (attempt, head)
        if status == 200:
            ids = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"x-request-id:")]
            assert len(ids) == 1 and ids[0].startswith(b"req_"), (attempt, head)
            body = raw.split(b"\r\n\r\n", 1)[1]
            assert b"evil" not in body and attempt not in body, (attempt, body[:300])
