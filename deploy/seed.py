"""Quảng Trị demo data for `./dev up`: seeded through the platform's own APIs, safe to run again."""

from __future__ import annotations

import httpx

from gateway.identity import DEMO_MERCHANT_ID, demo_credentials

# A café in Đồng Hới ward with a Vietcombank account (BIN 970436); the bank details are made up.
DEMO_MERCHANT = {
    "merchant_id": DEMO_MERCHANT_ID,
    "display_name": "Cà phê Nhật Lệ",
    "commune_code": 19189,
    "sector": "food_beverage",
    "bank_bin": "970436",
    "bank_account_no": "0451000123456",
    "bank_account_name": "CA PHE NHAT LE",
}


class SeedFailed(RuntimeError):
    pass


def _expect(response: httpx.Response, what: str) -> dict:
    if response.status_code >= 300:
        raise SeedFailed(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


def _sign_in(client: httpx.Client, role: str) -> dict[str, str]:
    user = demo_credentials()[role]
    token = _expect(client.post("/v1/auth/token", data=user), f"sign in as demo {role}")["access_token"]
    return {"Authorization": f"Bearer {token}"}


def seed_demo(stack) -> dict:
    """Returns the `demo` part of stack.json: a user for every role and a demo merchant's secret key.

    The gateway seeds the demo users itself (DEMO_USERS_SEED); here the admin opens the demo
    merchant's payment account (idempotent per merchant id) and the merchant rolls a fresh secret
    key, the way a merchant would from its dashboard.
    """
    with httpx.Client(base_url=stack.config.gateway_url, timeout=30) as client:
        admin = _sign_in(client, "admin")
        _expect(client.post("/v1/accounts", headers=admin, json=DEMO_MERCHANT), "open the demo merchant's account")
        merchant = _sign_in(client, "merchant")
        key = _expect(client.post("/v1/api_keys/roll", headers=merchant), "roll the demo merchant's key")["secret"]
    return {"users": demo_credentials(), "merchant_id": DEMO_MERCHANT_ID, "merchant_secret_key": key}
