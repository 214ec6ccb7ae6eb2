"""Sign-in and accounts: demo users for every role, the token's claims, the same answer for every
wrong credential, admin-only account creation, idempotent seeding, and hashes that are argon2id."""

from __future__ import annotations

import httpx
import jwt
import pytest

from shared.auth import AUDIENCE, ISSUER, TokenVerifier

from gateway.identity import DEMO_MERCHANT_ID, DEMO_USERS, demo_credentials
from gateway.tests.conftest import all_upstreams


@pytest.fixture
def gateway(echo_upstream, start_gateway):
    _, server = echo_upstream
    return start_gateway(**all_upstreams(server.url), signin_attempts_per_minute=600.0, signin_burst=100)


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/token", data={"username": username, "password": password})


async def test_every_demo_user_signs_in_and_gets_a_short_lived_token_of_its_role(gateway, keys):
    verifier = TokenVerifier(keys.public_pem)
    assert set(demo_credentials()) == {"shopper", "merchant", "operator", "official", "admin"}
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for demo in DEMO_USERS:
            response = await sign_in(client, demo.username, demo.password)
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {"access_token", "token_type", "expires_in"}
            assert body["token_type"] == "bearer" and body["expires_in"] == 15 * 60
            assert response.headers["cache-control"] == "no-store"
            principal = verifier.verify(body["access_token"])
            assert principal.role == demo.role
            assert principal.merchant_id == (DEMO_MERCHANT_ID if demo.role == "merchant" else None)
            claims = jwt.decode(body["access_token"], keys.public_pem, algorithms=["EdDSA"], audience=AUDIENCE,
                                issuer=ISSUER)
            assert claims["exp"] - claims["iat"] == 15 * 60 and claims["jti"]
            assert jwt.get_unverified_header(body["access_token"])["alg"] == "EdDSA"
            me = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
            assert me.status_code == 200
            assert me.json()["username"] == demo.username and me.json()["role"] == demo.role
            assert me.json()["id"] == claims["sub"] and "password_hash" not in me.text


async def test_unknown_user_and_wrong_password_get_the_same_answer(gateway):
    demo = DEMO_USERS[0]
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        wrong = await sign_in(client, demo.username, demo.password + "x")
        unknown = await sign_in(client, "nobody@demo.quangtri.vn", demo.password)
        empty = await sign_in(client, demo.username, "")
        case = await sign_in(client, demo.username.upper(), demo.password)  # user names ignore case
        missing = await client.post("/v1/auth/token", data={"username": demo.username})
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    strip = lambda r: {k: v for k, v in r.json()["error"].items() if k != "request_id"}  # noqa: E731
    assert strip(wrong) == strip(unknown)
    assert strip(wrong)["code"] == "invalid_credentials" and strip(wrong)["type"] == "authentication_error"
    assert empty.status_code in (400, 401)
    assert case.status_code == 200
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "password"


async def test_sign_in_attempts_are_limited_per_address_and_user_name(echo_upstream, start_gateway):
    _, server = echo_upstream
    gw = start_gateway(**all_upstreams(server.url), signin_attempts_per_minute=2.0, signin_burst=3)
    demo = DEMO_USERS[0]
    async with httpx.AsyncClient(base_url=gw.url) as client:
        tries = [(await sign_in(client, demo.username, "guess")).status_code for _ in range(4)]
        other_user = await sign_in(client, DEMO_USERS[1].username, DEMO_USERS[1].password)
    assert tries == [401, 401, 401, 429]
    assert other_user.status_code == 200


async def test_me_needs_a_valid_token_of_a_live_account(gateway, keys, other_keys):
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        missing = await client.get("/v1/auth/me")
        api_key = await client.get("/v1/auth/me", headers={"Authorization": "Bearer sk_test_abc"})
        forged = await client.get("/v1/auth/me", headers={
            "Authorization": f"Bearer {other_keys.issuer().issue('usr_x', 'admin')}"})
        ghost = await client.get("/v1/auth/me", headers={
            "Authorization": f"Bearer {keys.issuer().issue('usr_deleted', 'shopper')}"})
    assert [r.status_code for r in (missing, api_key, forged, ghost)] == [401, 401, 401, 401]
    assert missing.json()["error"]["code"] == "unauthenticated"


async def test_only_an_admin_creates_accounts_and_they_can_sign_in(gateway):
    creds = demo_credentials()
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        tokens = {role: (await sign_in(client, c["username"], c["password"])).json()["access_token"]
                  for role, c in creds.items()}
        new = {"username": "ban.ve.phongnha", "password": "Phong-Nha-2025!", "role": "operator",
               "display_name": "Quầy vé Phong Nha"}
        for role in ("shopper", "merchant", "operator", "official"):
            refused = await client.post("/v1/auth/users", json=new, headers={"Authorization": f"Bearer {tokens[role]}"})
            assert refused.status_code == 403, role
        assert (await client.post("/v1/auth/users", json=new)).status_code == 401
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        created = await client.post("/v1/auth/users", json=new, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json()["id"].startswith("usr_") and created.json()["role"] == "operator"
        again = await client.post("/v1/auth/users", json={**new, "username": "BAN.VE.PHONGNHA"}, headers=admin)
        assert again.status_code == 409 and again.json()["error"]["param"] == "username"
        signed_in = await sign_in(client, new["username"], new["password"])
        assert signed_in.status_code == 200
        bad = [
            ({**new, "username": "mer1", "role": "merchant"}, "merchant_id"),
            ({**new, "username": "mer2", "role": "merchant", "merchant_id": "shop-1"}, "merchant_id"),
            ({**new, "username": "sho1", "role": "shopper", "merchant_id": "mch_x"}, "merchant_id"),
            ({**new, "username": "rol1", "role": "superuser"}, "role"),
            ({**new, "username": "pas1", "password": "short"}, "password"),
            ({**new, "username": "Có dấu"}, "username"),
            ({**new, "username": "ext1", "extra": True}, "extra"),
        ]
        for body, param in bad:
            response = await client.post("/v1/auth/users", json=body, headers=admin)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"]["param"] == param
        merchant = await client.post("/v1/auth/users", headers=admin, json={
            **new, "username": "chu.cua.hang", "role": "merchant", "merchant_id": "mch_01OTHERSHOP"})
        assert merchant.status_code == 201 and merchant.json()["merchant_id"] == "mch_01OTHERSHOP"


async def test_seeding_is_idempotent_and_stores_argon2id_hashes_only(gateway, mongo, unique):
    from gateway.identity import Identity, Passwords, UserStore
    import argon2

    users = mongo[f"qt_gateway_{unique}"]["users"]
    docs = await users.find({}).to_list()
    assert len(docs) == len(DEMO_USERS)
    assert all(d["password_hash"].startswith("$argon2id$") for d in docs)
    assert not any(demo.password in str(d) for d in docs for demo in DEMO_USERS)
    identity = Identity(UserStore(mongo[f"qt_gateway_{unique}"]),
                        Passwords(argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1), 1), issuer=None)
    assert await identity.seed_demo_users() == 0
    assert await users.count_documents({}) == len(DEMO_USERS)
