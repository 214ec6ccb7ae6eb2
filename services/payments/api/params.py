"""Parameter types every payments resource shares: metadata, expand, list cursors."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from shared.errors import InvalidRequest

# Stripe's limits: 50 keys, keys up to 40 characters, values up to 500. MongoDB refuses a NUL in a key.
METADATA_MAX_KEYS = 50
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40,
                                               pattern=r"^[^.$\[\]\x00][^.\[\]\x00]*$")]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]


def _at_most_50(value: dict[str, str]) -> dict[str, str]:
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError("tối đa 50 khóa / at most 50 keys")
    return value


_WHOLE = re.compile(r"-?\d{1,20}")


def _whole_number(value: Any) -> Any:
    """Stripe's integers: a JSON integer or a form field of digits. Never true/false, 1.5, "1.5" or "1.0"
    (pydantic's lax mode would take true as 1 and "1.0" as 1: a 1-đồng intent from a typo)."""
    if isinstance(value, (bool, float)):
        raise ValueError("phải là số nguyên đồng / must be a whole number of VND")
    if isinstance(value, str):
        if not _WHOLE.fullmatch(value.strip()):
            raise ValueError("phải là số nguyên đồng / must be a whole number of VND")
        return int(value)
    return value


Amount = Annotated[int, BeforeValidator(_whole_number)]


def check_metadata_size(metadata: dict[str, str]) -> None:
    """Stripe's 50-key limit holds for the metadata an update leaves, not only for what it sends."""
    if len(metadata) > METADATA_MAX_KEYS:
        raise InvalidRequest(f"Metadata tối đa {METADATA_MAX_KEYS} khóa / metadata can have at most "
                             f"{METADATA_MAX_KEYS} keys", param="metadata")


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
