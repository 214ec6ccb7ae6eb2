"""The gateway's settings: where each upstream service lives, and its own limits and keys."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class GatewaySettings(CommonSettings):
    merchants_url: str = "http://127.0.0.1:8101"
    payments_url: str = "http://127.0.0.1:8102"
    tourism_url: str = "http://127.0.0.1:8103"
    insights_url: str = "http://127.0.0.1:8104"
    upstream_timeout_seconds: float = Field(default=10.0, gt=0)

    def upstreams(self) -> dict[str, str]:
        return {"merchants": self.merchants_url, "payments": self.payments_url,
                "tourism": self.tourism_url, "insights": self.insights_url}
