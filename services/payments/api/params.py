"""Parameter types every payments resource shares: metadata, expand, list cursors."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Stripe's limits: 50 keys, keys up to 40 characters, values up to 500.
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[^.$\[\]][^.\[\]]*$")]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]


def _at_most_50(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 50:
        raise ValueError("tối đa 50 khóa / at most 50 keys")
    return value


Metadata = Annotated[dict[MetadataKey, MetadataValue], AfterValidator(_at_most_50)]


class Params(BaseModel):
    """Unknown parameters are refused, as Stripe does, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    expand: list[str] = Field(default_factory=list)


class ListParams(Params):
    limit: int = Field(default=10, ge=1, le=100)
    starting_after: str | None = None
    ending_before: str | None = None
    merchant: str | None = None  # admin only: one merchant's objects
