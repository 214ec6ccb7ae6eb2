"""Settings read from the environment: every address and secret, with local defaults.

Production refuses to start while any secret still has its published development default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_MONGODB_URI = "mongodb://127.0.0.1:27017/?directConnection=true&retryWrites=false"


class InsecureSettingsError(ValueError):
    """Raised when production settings still carry a development default."""


class CommonSettings(BaseSettings):
    """What every process of the platform reads. Env names are the field names in upper case."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    app_env: Literal["local", "test", "production"] = "local"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self):
        if self.app_env != "production":
            return self
        defaults = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr) and isinstance(field.default, SecretStr):
                if value.get_secret_value() == field.default.get_secret_value():
                    defaults.append(name.upper())
            if isinstance(value, SecretStr) and not value.get_secret_value():
                defaults.append(name.upper())
        if defaults:
            raise InsecureSettingsError(
                "refusing to start in production with development default secrets: " + ", ".join(sorted(defaults))
            )
        return self


class ServiceSettings(CommonSettings):
    """Settings of a service that owns a database and talks to Kafka."""

    service_name: str = "service"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_partitions: int = Field(default=3, ge=1)
    # Lets several environments (or test runs) share one cluster: "staging." → "staging.payments.events".
    kafka_topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    mongodb_uri: str = LOCAL_MONGODB_URI
    mongodb_database: str = ""
    # Verifies people's tokens (the gateway signs with the private half). Empty: issued in local
    # and test by the launcher; production must set it.
    auth_public_key_pem: SecretStr = SecretStr("")
    outbox_poll_seconds: float = Field(default=0.2, gt=0)
    # On start, re-publish events sent within this window: refills a memory-only broker that
    # restarted empty (the local Tansu). Consumers are idempotent, so this is harmless; 0 = off.
    outbox_replay_on_start_seconds: float = Field(default=0, ge=0)
    consumer_max_attempts: int = Field(default=5, ge=1)
    consumer_backoff_seconds: float = Field(default=0.2, ge=0)

    @model_validator(mode="after")
    def _database_name(self):
        if not self.mongodb_database:
            object.__setattr__(self, "mongodb_database", f"qt_{self.service_name}")
        return self

    @model_validator(mode="after")
    def _refuse_empty_key_in_production(self):
        if self.app_env == "production" and not self.auth_public_key_pem.get_secret_value():
            raise InsecureSettingsError("refusing to start in production without AUTH_PUBLIC_KEY_PEM")
        return self
