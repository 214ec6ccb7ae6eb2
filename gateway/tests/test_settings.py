"""The gateway's settings: keys, production refusals, and the env shapes operators write."""

from __future__ import annotations

import pytest

from gateway.settings import GatewaySettings


def test_the_public_key_is_derived_from_the_private_one(keys):
    settings = GatewaySettings(auth_private_key_pem=keys.private_pem)
    assert settings.auth_public_key_pem == keys.public_pem


def test_production_refuses_a_missing_key_and_demo_users(keys):
    # pydantic wraps the refusal (a ValueError) in its ValidationError, itself a ValueError.
    with pytest.raises(ValueError, match="AUTH_PRIVATE_KEY_PEM"):
        GatewaySettings(app_env="production")
    with pytest.raises(ValueError, match="DEMO_USERS_SEED"):
        GatewaySettings(app_env="production", auth_private_key_pem=keys.private_pem, demo_users_seed=True)
    assert GatewaySettings(app_env="production", auth_private_key_pem=keys.private_pem).demo_users_seed is False


def test_env_shapes(monkeypatch, keys):
    monkeypatch.setenv("AUTH_PRIVATE_KEY_PEM", keys.private_pem)
    monkeypatch.setenv("UPSTREAM_TIMEOUTS", '{"insights": 30}')
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example, https://b.example,")
    monkeypatch.setenv("DEMO_USERS_SEED", "true")
    settings = GatewaySettings()
    assert settings.read_timeout("insights") == 30 and settings.read_timeout("payments") == 10
    assert settings.cors_origins() == ["https://a.example", "https://b.example"]
    assert settings.demo_users_seed is True
    monkeypatch.setenv("UPSTREAM_TIMEOUTS", '{"paymentz": 30}')
    with pytest.raises(ValueError, match="paymentz"):
        GatewaySettings()
