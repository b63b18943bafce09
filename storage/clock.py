"""The one clock of the database: naive UTC.

Every datetime column holds naive UTC (SQLite has no time zones, and mixing aware and naive
values makes comparisons raise), so everything that writes or compares times calls `utcnow`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time as a naive UTC datetime."""
    return datetime.now(UTC).replace(tzinfo=None)


def as_naive_utc(value: datetime) -> datetime:
    """The same instant as naive UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)
