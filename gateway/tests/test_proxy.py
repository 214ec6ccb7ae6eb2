"""The proxy against a scripted transport: retries only reads that never reached the service, the
breaker, timeouts, and which headers go through."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request

from shared.errors import UpstreamUnavailable

from gateway.circuit import CircuitBreaker
from gateway.proxy import Proxy, Upstream, UpstreamTimeout
from gateway.routing import RoutingTable


def make_request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
                 query: bytes = b"") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if body:
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query,
             "headers": raw, "client": ("203.0.113.7", 50000), "scheme": "http", "server": ("gw", 80)}
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


class Script:
    """A transport that plays a list of outcomes (an exception to raise, a response or a function
    making one); the last one repeats."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request):
        self.seen.append(request)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome() if callable(outcome) else outcome


def proxy_for(script: Script, *, threshold: int = 5, retries: int = 2, trust_forwarded: bool = False) -> Proxy:
    upstream = Upstream("payments", httpx.URL("http://payments.internal:8102"), httpx.Timeout(1.0),
                        CircuitBreaker(threshold, 30.0))
    return Proxy(httpx.MockTransport(script), {"payments": upstream}, retries=retries, backoff_seconds=0,
                 trust_forwarded=trust_forwarded)


ROUTE = RoutingTable().match("/v1/payment_intents")


async def answer(response) -> tuple[int, dict[bytes, bytes], bytes]:
    messages = []

    async def send(message):
        messages.append(message)

    await response({"type": "http"}, None, send)
    start = messages[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in messages[1:])


def reply(status: int, headers=None, body: bytes = b"") -> httpx.Response:
    # A stream, as a real transport gives: not read yet when the proxy gets it.
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


def refused():
    return httpx.ConnectError("connection refused")


async def test_a_read_is_retried_when_the_connection_could_not_be_made():
    script = Script(refused(), refused(), reply(200, body=b'{"ok":true}'))
    response = await proxy_for(script).forward(make_request("GET", "/v1/payment_intents"), ROUTE)
    status, _, body = await answer(response)
    assert status == 200 and body == b'{"ok":true}'
    assert len(script.seen) == 3


async def test_a_read_gives_up_after_the_retries_with_503():
    script = Script(refused())
    with pytest.raises(UpstreamUnavailable) as caught:
        await proxy_for(script, retries=2).forward(make_request("GET", "/v1/payment_intents"), ROUTE)
    assert caught.value.status_code == 503 and caught.value.body()["upstream"] == "payments"
    assert len(script.seen) == 3


@pytest.mark.parametrize("headers", [{}, {"Idempotency-Key": "k-1"}])
async def test_a_write_is_never_retried_by_the_gateway(headers):
    script = Script(refused(), reply(200))
    with pytest.raises(UpstreamUnavailable):
        await proxy_for(script).forward(make_request("POST", "/v1/payment_intents", headers, b"amount=1000"), ROUTE)
    assert len(script.seen) == 1


async def test_a_timeout_is_504_and_not_retried():
    script = Script(httpx.ReadTimeout("slow"), reply(200))
    with pytest.raises(UpstreamTimeout) as caught:
        await proxy_for(script).forward(make_request("GET", "/v1/payment_intents"), ROUTE)
    assert caught.value.status_code == 504
    assert len(script.seen) == 1


async def test_the_circuit_opens_and_then_fails_fast_without_calling():
    script = Script(refused())
    proxy = proxy_for(script, threshold=2, retries=0)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await proxy.forward(make_request("GET", "/v1/payment_intents"), ROUTE)
    with pytest.raises(UpstreamUnavailable) as caught:
        await proxy.forward(make_request("GET", "/v1/payment_intents"), ROUTE)
    assert len(script.seen) == 2
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 30


async def test_upstream_5xx_gateway_errors_count_towards_the_circuit():
    script = Script(lambda: reply(503))
    proxy = proxy_for(script, threshold=2)
    for _ in range(2):
        status, _, _ = await answer(await proxy.forward(make_request("GET", "/v1/payment_intents"), ROUTE))
        assert status == 503
    with pytest.raises(UpstreamUnavailable):
        await proxy.forward(make_request("GET", "/v1/payment_intents"), ROUTE)


async def test_headers_end_to_end_go_through_and_hop_by_hop_ones_do_not():
    script = Script(reply(201, headers=[("Content-Type", "application/json"), ("Connection", "close, X-Up"),
                                                 ("X-Up", "hop"), ("Keep-Alive", "timeout=5"), ("Date", "yesterday"),
                                   ("Server", "uvicorn"), ("Stripe-Should-Retry", "false")], body=b"{}"))
    request = make_request("POST", "/v1/payment_intents/pi_1/confirm", {
        "Host": "api.quangtri.vn", "Authorization": "Bearer sk_test_abc", "Idempotency-Key": "key-1",
        "Stripe-Version": "2024-06-20", "Connection": "keep-alive, X-Hop", "X-Hop": "secret", "TE": "trailers",
        "Proxy-Authorization": "Basic eA==", "X-Forwarded-For": "6.6.6.6", "Content-Type": "application/x-www-form-urlencoded",
    }, b"payment_method=vnpay", query=b"expand[]=latest_charge")
    status, headers, _ = await answer(await proxy_for(script).forward(request, ROUTE))
    sent = script.seen[0]
    assert str(sent.url) == "http://payments.internal:8102/v1/payment_intents/pi_1/confirm?expand[]=latest_charge"
    assert sent.headers["authorization"] == "Bearer sk_test_abc"
    assert sent.headers["idempotency-key"] == "key-1"
    assert sent.headers["stripe-version"] == "2024-06-20"
    assert sent.headers["host"] == "payments.internal:8102"
    assert sent.headers["x-forwarded-host"] == "api.quangtri.vn"
    assert sent.headers["x-forwarded-for"] == "203.0.113.7"  # the client's own claim is not trusted
    assert sent.headers["x-forwarded-proto"] == "http"
    for hop in ("connection", "x-hop", "te", "proxy-authorization", "keep-alive", "transfer-encoding"):
        assert hop not in sent.headers
    assert sent.content == b"payment_method=vnpay"
    assert status == 201
    assert headers[b"stripe-should-retry"] == b"false"
    for hop in (b"connection", b"x-up", b"keep-alive", b"date", b"server"):
        assert hop not in headers


async def test_behind_a_trusted_balancer_the_forwarding_trail_grows():
    script = Script(reply(200))
    request = make_request("GET", "/v1/payment_intents", {"X-Forwarded-For": "198.51.100.1",
                                                          "X-Forwarded-Proto": "https"})
    await answer(await proxy_for(script, trust_forwarded=True).forward(request, ROUTE))
    assert script.seen[0].headers["x-forwarded-for"] == "198.51.100.1, 203.0.113.7"
    assert script.seen[0].headers["x-forwarded-proto"] == "https"
