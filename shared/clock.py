"""Time: stored in UTC, shown in Asia/Ho_Chi_Minh."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def utcnow() -> datetime:
    # Mongo keeps milliseconds; truncating here makes a stored and re-read time compare equal.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def as_utc(value: datetime) -> datetime:
    """A datetime from Mongo comes back naive (UTC); make it aware."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def to_vn(value: datetime) -> datetime:
    return as_utc(value).astimezone(VN_TZ)
