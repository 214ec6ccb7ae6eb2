"""Fixtures for payments' tests: the running stack, tokens minted with its key, fresh merchants with keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from shared.auth import TokenIssuer

@dataclass
class Merchant:
    merchant_id: str
    secret_key: str
    token: str
    account: dict

    @property
    def key_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}


@pytest.fixture(scope="session")
def issuer(stack) -> TokenIssuer:
    return TokenIssuer(stack.private_key)


@pytest.fixture(scope="session")
def service_url(stack) -> str:
    return stack.config.service_url("payments")


@pytest.fixture(scope="session")
def api_url(stack) -> str:
    """The base URL merchants use: the gateway, the platform's one origin."""
    return stack.config.gateway_url


@pytest.fixture(scope="session")
def vnpay_env(stack) -> dict[str, str]:
    return stack.service_env("payments")


@pytest.fixture(scope="session")
def admin_headers(issuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('admin-tests', 'admin')}"}


async def open_merchant(service_url: str, issuer: TokenIssuer, admin_headers: dict, *, bank_bin: str = "970436",
                        account_no: str = "0451000123456") -> Merchant:
    merchant_id = f"mch_T{uuid.uuid4().hex[:20].upper()}"
    async with httpx.AsyncClient(base_url=service_url, timeout=30) as client:
        opened = await client.post("/v1/accounts", headers=admin_headers, json={
            "merchant_id": merchant_id, "display_name": "Cà phê Đồng Hới", "commune_code": 19042,
            "sector": "food", "bank_bin": bank_bin, "bank_account_no": account_no,
            "bank_account_name": "Nguyễn Văn An"})
        assert opened.status_code == 200, opened.text
        token = issuer.issue(f"user-{merchant_id}", "merchant", merchant_id)
        rolled = await client.post("/v1/api_keys/roll", headers={"Authorization": f"Bearer {token}"})
        assert rolled.status_code == 200, rolled.text
    return Merchant(merchant_id, rolled.json()["secret"], token, opened.json())


@pytest.fixture
async def merchant(service_url, issuer, admin_headers) -> Merchant:
    return await open_merchant(service_url, issuer, admin_headers)


@pytest.fixture
async def other_merchant(service_url, issuer, admin_headers) -> Merchant:
    return await open_merchant(service_url, issuer, admin_headers, bank_bin="970415", account_no="113366668888")
