"""The gateway's settings: where each upstream service lives, and its own limits and keys.

Env names are the field names in upper case (AUTH_PRIVATE_KEY_PEM, RATE_LIMIT_PER_SECOND, …).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.auth import public_key_pem_of
from shared.settings import LOCAL_MONGODB_URI, CommonSettings, InsecureSettingsError


class GatewaySettings(CommonSettings):
    merchants_url: str = "http://127.0.0.1:8101"
    payments_url: str = "http://127.0.0.1:8102"
    tourism_url: str = "http://127.0.0.1:8103"
    insights_url: str = "http://127.0.0.1:8104"

    # Upstream calls. The read timeout bounds the wait for the answer's headers and for each
    # chunk after; the connect timeout is short because a service that is down refuses at once
    # and one that is unreachable should not hold a client for the whole read budget.
    upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    # Per-upstream read timeouts over the default, as JSON: UPSTREAM_TIMEOUTS='{"insights": 30}'.
    upstream_timeouts: dict[str, float] = Field(default_factory=dict)
    # Extra attempts for GET/HEAD/OPTIONS when the connection could not be made; never for writes.
    upstream_retries: int = Field(default=2, ge=0, le=5)
    upstream_retry_backoff_seconds: float = Field(default=0.05, ge=0)
    # Per upstream: each service has its own pool, so one that hangs cannot take the others' connections.
    upstream_max_connections: int = Field(default=200, ge=1)
    upstream_max_keepalive: int = Field(default=50, ge=0)
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_cooldown_seconds: float = Field(default=10.0, gt=0)

    # Identity: people's accounts live in the gateway's own database.
    mongodb_uri: str = LOCAL_MONGODB_URI
    mongodb_database: str = "qt_gateway"
    auth_private_key_pem: SecretStr = SecretStr("")
    # Derived from the private key when empty; services get the same value from their env.
    auth_public_key_pem: str = ""
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # argon2id cost. RFC 9106's second recommendation (64 MiB, t=3) by default; tests lower it.
    password_hash_memory_kib: int = Field(default=65536, ge=8)
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_parallelism: int = Field(default=4, ge=1)
    # At most this many hashes at once: each takes the memory above, and a burst of sign-ins
    # must not take the process' memory or both cores with it.
    password_hash_concurrency: int = Field(default=2, ge=1)
    # Seeds the demo accounts (gateway.identity.DEMO_USERS) at start-up. Never in production.
    demo_users_seed: bool = False

    # Per-client token buckets, kept in memory by each gateway instance.
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    # Sign-in attempts per client address and user name: slows password guessing.
    signin_attempts_per_minute: float = Field(default=10.0, gt=0)
    signin_burst: int = Field(default=10, ge=1)
    rate_limit_max_clients: int = Field(default=100_000, ge=100)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Comma-separated origins allowed to call the API from a browser ("" = same origin only).
    cors_allow_origins: str = ""
    # Behind a load balancer that sets X-Forwarded-For/Proto: trust them for the client address,
    # rate limits and HSTS. Off when the gateway is the edge, so a client cannot pick its own IP.
    trust_forwarded_headers: bool = False

    openapi_cache_seconds: float = Field(default=30.0, ge=0)
    openapi_fetch_timeout_seconds: float = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _keys(self):
        private = self.auth_private_key_pem.get_secret_value()
        if private and not self.auth_public_key_pem:
            object.__setattr__(self, "auth_public_key_pem", public_key_pem_of(private))
        if self.app_env == "production" and self.demo_users_seed:
            raise InsecureSettingsError("refusing to seed demo users (DEMO_USERS_SEED) in production")
        unknown = set(self.upstream_timeouts) - set(self.upstreams())
        if unknown:
            raise ValueError(f"UPSTREAM_TIMEOUTS names unknown upstreams: {', '.join(sorted(unknown))}")
        return self

    def upstreams(self) -> dict[str, str]:
        return {"merchants": self.merchants_url, "payments": self.payments_url,
                "tourism": self.tourism_url, "insights": self.insights_url}

    def read_timeout(self, upstream: str) -> float:
        return self.upstream_timeouts.get(upstream, self.upstream_timeout_seconds)

    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]
