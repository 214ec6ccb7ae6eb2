"""The gateway in front of the real services (the whole local stack): the authorization matrix,
request ids reaching the services' logs, and the merged OpenAPI of the services' real documents.

The matrix covers the gateway's own routes and, for every routed resource, the gateway's decision
(turned away here, or passed to its owner — seen in the owner's log). The payments rows (no
cross-merchant read or write) run against the payments routes that exist in this checkout.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from shared.auth import TokenIssuer

from gateway.routing import ROUTES, Anonymous, RoutingTable
from gateway.tests.conftest import KeyPair

pytestmark = pytest.mark.stack

ROLES = ("shopper", "merchant", "operator", "official", "admin")


@dataclass
class People:
    tokens: dict[str, str]          # a real, signed-in account per role (+ "other_merchant")
    usernames: dict[str, str]
    merchant_ids: dict[str, str]


@pytest.fixture(scope="module")
def people(stack) -> People:
    """Real accounts for every role, made through the gateway by an admin, then signed in."""
    issuer = TokenIssuer(stack.private_key)
    suffix = uuid.uuid4().hex[:8]
    bootstrap = {"Authorization": f"Bearer {issuer.issue(f'usr_bootstrap_{suffix}', 'admin')}"}
    merchant_ids = {"merchant": f"mch_matrix_a_{suffix}", "other_merchant": f"mch_matrix_b_{suffix}"}
    tokens, usernames = {}, {}
    with httpx.Client(base_url=stack.config.gateway_url, timeout=10) as client:
        for who in (*ROLES, "other_merchant"):
            role = "merchant" if who == "other_merchant" else who
            username, password = f"{who.replace('_', '.')}.{suffix}@matrix.test", f"Matrix-{suffix}-pass"
            body = {"username": username, "password": password, "role": role,
                    "merchant_id": merchant_ids.get(who)}
            created = client.post("/v1/auth/users", json=body, headers=bootstrap)
            assert created.status_code == 201, created.text
            signed_in = client.post("/v1/auth/token", data={"username": username, "password": password})
            assert signed_in.status_code == 200, signed_in.text
            tokens[who] = signed_in.json()["access_token"]
            usernames[who] = username
        for merchant_id in merchant_ids.values():
            # The merchants' payment accounts, opened by the platform's admin (as merchant.approved would).
            opened = client.post("/v1/accounts", headers=bootstrap, json={
                "merchant_id": merchant_id, "display_name": "Matrix", "commune_code": 19189, "sector": "retail",
                "bank_bin": "970436", "bank_account_no": "0451000999999", "bank_account_name": "MATRIX"})
            assert opened.status_code == 200, opened.text
    return People(tokens, usernames, merchant_ids)


@pytest.fixture(scope="module")
def bad_tokens(stack) -> dict[str, str]:
    issuer = TokenIssuer(stack.private_key)
    return {"expired": issuer.issue("usr_expired", "merchant", "mch_demo_quangtri", lifetime=timedelta(seconds=-5)),
            "wrong_key": KeyPair.generate().issuer().issue("usr_forged", "admin")}


def call(client: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response:
    """One request, waiting out a 429 as a well-behaved client would: the anonymous and bad-token
    rows all share this machine's address, hence one rate-limit bucket."""
    for _ in range(20):
        response = client.request(method, url, **kwargs)
        if response.status_code != 429:
            return response
        time.sleep(float(response.headers.get("retry-after", "1")))
    return response


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def service_request_ids(stack, service: str) -> set[str]:
    path = stack.config.run_dir / "logs" / f"{service}.log"
    ids = set()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                ids.add(json.loads(line).get("request_id"))
            except ValueError:
                continue
    return ids


def wait_for_ids(stack, service: str, wanted: set[str], seconds: float = 5.0) -> set[str]:
    """The ids among `wanted` that the service logged (it logs just after answering)."""
    deadline = time.monotonic() + seconds
    while True:
        seen = service_request_ids(stack, service) & wanted
        if seen == wanted or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def test_gateway_routes_for_every_role_and_bad_credential(stack, people, bad_tokens):
    credentials = {"none": None, **bad_tokens, **people.tokens, "api_key": "sk_test_notarealkey"}
    with httpx.Client(base_url=stack.config.gateway_url, timeout=10) as client:
        for who, token in credentials.items():
            me = call(client, "GET", "/v1/auth/me", headers=bearer(token))
            if who in people.tokens:
                assert me.status_code == 200, (who, me.text)
                assert me.json()["username"] == people.usernames[who]
                assert me.json()["merchant_id"] == people.merchant_ids.get(who)
            else:
                assert me.status_code == 401, who
                assert me.json()["error"]["type"] == "authentication_error"

            new = {"username": f"made.by.{who.replace('_', '.')}.{uuid.uuid4().hex[:6]}", "password": "Created-2025!",
                   "role": "shopper"}
            created = call(client, "POST", "/v1/auth/users", json=new, headers=bearer(token))
            expected = 201 if who == "admin" else 403 if who in people.tokens else 401
            assert created.status_code == expected, (who, created.text)
        refused = client.post("/v1/auth/token", data={"username": people.usernames["admin"], "password": "nope"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_credentials"


def test_every_routed_resource_is_stopped_or_passed_to_its_owner_as_it_should(stack, people, bad_tokens):
    credentials = {"none": None, **bad_tokens, **people.tokens, "api_key": "sk_test_notarealkey"}
    table = RoutingTable()
    expect_forwarded: dict[str, set[str]] = {}
    expect_stopped: dict[str, set[str]] = {}
    with httpx.Client(base_url=stack.config.gateway_url, timeout=10) as client:
        for route in ROUTES:
            for method in ("GET", "POST"):
                for who, token in credentials.items():
                    rid = f"req-matrix-{uuid.uuid4().hex[:12]}"
                    response = call(client, method, f"{route.prefix}/matrix_probe", headers={
                        **bearer(token), "X-Request-Id": rid})
                    assert response.headers["x-request-id"] == rid
                    if route.anonymous is Anonymous.ALWAYS:
                        stopped = False
                    elif who == "none":
                        stopped = not route.allows_anonymous(method)
                    elif who in bad_tokens:
                        stopped = True
                    elif who == "api_key":
                        stopped = not route.api_keys
                    else:
                        stopped = False
                    if stopped:
                        assert response.status_code == 401, (method, route.prefix, who, response.text)
                        expect_stopped.setdefault(route.upstream, set()).add(rid)
                    else:
                        # The owner answers (its own rules decide); never the gateway's 401.
                        assert response.status_code != 401 or who in ("api_key",), (method, route.prefix, who)
                        expect_forwarded.setdefault(route.upstream, set()).add(rid)
                    assert table.upstream_of(route.prefix) == route.upstream
    for service, ids in expect_forwarded.items():
        assert wait_for_ids(stack, service, ids) == ids, f"{service} did not see every forwarded call"
    for service, ids in expect_stopped.items():
        assert not (service_request_ids(stack, service) & ids), f"{service} saw calls the gateway should stop"


def test_request_id_reaches_the_service_log_and_comes_back(stack, people):
    rid = f"req-propagation-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=stack.config.gateway_url, timeout=10) as client:
        response = client.get("/v1/listings", headers={"X-Request-Id": rid, **bearer(people.tokens["shopper"])})
    assert response.headers["x-request-id"] == rid
    assert wait_for_ids(stack, "tourism", {rid}) == {rid}
    gateway_log = (stack.config.run_dir / "logs" / "gateway.log").read_text(errors="replace")
    assert f'"request_id": "{rid}"' in gateway_log


def test_merged_openapi_has_every_routed_service_path_once(stack):
    with httpx.Client(timeout=10) as client:
        merged = client.get(f"{stack.config.gateway_url}/openapi.json").json()
        for service in ("merchants", "payments", "tourism", "insights"):
            own = client.get(f"{stack.config.service_url(service)}/openapi.json").json()
            routed = [p for p in own.get("paths", {}) if RoutingTable().upstream_of(p) == service]
            for path in routed:
                assert path in merged["paths"], (service, path)
                for method, operation in merged["paths"][path].items():
                    assert operation["x-upstream"] == service
                    assert method in own["paths"][path]
            not_routed = [p for p in own.get("paths", {}) if RoutingTable().upstream_of(p) is None]
            assert not any(p in merged["paths"] and p not in ("/healthz", "/readyz") for p in not_routed)
        assert {"/v1/auth/token", "/v1/auth/me", "/v1/auth/users"} <= set(merged["paths"])
        ids = [op["operationId"] for item in merged["paths"].values() for op in item.values()]
        assert len(ids) == len(set(ids))
        assert "x-unavailable-services" not in merged["info"]
        assert client.get(f"{stack.config.gateway_url}/docs").headers["content-type"].startswith("text/html")


# --- payments: the resources that exist in this checkout ------------------------------------------------

def _payments_paths(stack) -> set[str]:
    with httpx.Client(timeout=10) as client:
        return set(client.get(f"{stack.config.service_url('payments')}/openapi.json").json().get("paths", {}))


@pytest.fixture(scope="module")
def payment_intents(stack):
    if "/v1/payment_intents" not in _payments_paths(stack):
        pytest.skip("payments does not serve /v1/payment_intents in this checkout yet")


def test_payment_intents_by_role_and_no_cross_merchant_access(stack, people, bad_tokens, payment_intents):
    create = {"amount": "150000", "currency": "vnd", "payment_method_types[]": "vietqr",
              "description": "Vé tham quan Động Phong Nha"}
    with httpx.Client(base_url=stack.config.gateway_url, timeout=15) as client:
        own = client.post("/v1/payment_intents", data=create,
                          headers={**bearer(people.tokens["merchant"]), "Idempotency-Key": uuid.uuid4().hex})
        assert own.status_code == 200, own.text
        intent = own.json()
        assert intent["id"].startswith("pi_") and intent["amount"] == 150000

        mine = client.get(f"/v1/payment_intents/{intent['id']}", headers=bearer(people.tokens["merchant"]))
        assert mine.status_code == 200 and mine.json()["id"] == intent["id"]
        listed = client.get("/v1/payment_intents", headers=bearer(people.tokens["merchant"]))
        assert listed.status_code == 200 and intent["id"] in [i["id"] for i in listed.json()["data"]]

        other = bearer(people.tokens["other_merchant"])
        assert client.get(f"/v1/payment_intents/{intent['id']}", headers=other).status_code in (403, 404)
        others_list = client.get("/v1/payment_intents", headers=other)
        assert others_list.status_code == 200
        assert intent["id"] not in [i["id"] for i in others_list.json()["data"]]
        cancel = client.post(f"/v1/payment_intents/{intent['id']}/cancel", headers=other)
        assert cancel.status_code in (403, 404)

        shopper = bearer(people.tokens["shopper"])
        assert client.post("/v1/payment_intents", data=create, headers=shopper).status_code == 403
        assert client.get("/v1/payment_intents", headers=shopper).status_code == 403
        for token in (None, bad_tokens["expired"], bad_tokens["wrong_key"]):
            assert client.get("/v1/payment_intents", headers=bearer(token)).status_code == 401
            assert client.post("/v1/payment_intents", data=create, headers=bearer(token)).status_code == 401
            assert client.get(f"/v1/payment_intents/{intent['id']}", headers=bearer(token)).status_code == 401

        secret = (stack.demo or {}).get("merchant_secret_key")
        if secret:
            by_key = client.get("/v1/payment_intents", headers=bearer(secret))
            assert by_key.status_code == 200
