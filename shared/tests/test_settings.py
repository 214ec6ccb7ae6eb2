"""Settings come from the environment, and production refuses development defaults."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from shared.settings import CommonSettings, ServiceSettings


class PaymentsLike(ServiceSettings):
    service_name: str = "payments"
    vnpay_hash_secret: SecretStr = SecretStr("dev-only-secret")


def test_addresses_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("MONGODB_URI", "mongodb://mongo-payments:27017/?replicaSet=rs0")
    s = PaymentsLike()
    assert s.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert s.mongodb_uri.startswith("mongodb://mongo-payments")
    assert s.mongodb_database == "qt_payments"


def test_local_defaults_carry_retry_writes_false(monkeypatch):
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert "retryWrites=false" in PaymentsLike().mongodb_uri


def test_production_refuses_a_default_secret(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("AUTH_PUBLIC_KEY_PEM", "-----BEGIN PUBLIC KEY-----x")
    with pytest.raises(ValidationError, match="VNPAY_HASH_SECRET"):
        PaymentsLike()
    monkeypatch.setenv("VNPAY_HASH_SECRET", "a-real-secret-from-the-vault")
    assert PaymentsLike().vnpay_hash_secret.get_secret_value() == "a-real-secret-from-the-vault"


def test_production_refuses_an_empty_secret(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("AUTH_PUBLIC_KEY_PEM", "")
    monkeypatch.setenv("VNPAY_HASH_SECRET", "a-real-secret")
    with pytest.raises(ValidationError, match="AUTH_PUBLIC_KEY_PEM"):
        PaymentsLike()


def test_local_accepts_defaults_and_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("APP_ENV", "local")
    assert PaymentsLike().vnpay_hash_secret.get_secret_value() == "dev-only-secret"
    monkeypatch.setenv("APP_ENV", "prod")
    with pytest.raises(ValidationError, match="app_env"):
        CommonSettings()
    monkeypatch.setenv("APP_ENV", "local")
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", "bad prefix!")
    with pytest.raises(ValidationError, match="kafka_topic_prefix"):
        ServiceSettings()
