"""The range of datetimes tkerp accepts from outside: platforms' answers, imported files.

Python's datetime ends at years 1 and 9999, so a time at either edge stores fine but cannot be
shown in a tenant's time zone: "0001-01-01T00:00Z" (some systems' null date) read for a seller in
New York overflows, and every page listing that order fails. Nothing real tkerp handles happens
before 2000 or after 2100; one bound, kept here, keeps such values out where they come in:
`shops.platforms.base.parse_iso_datetime` and `orders.ingest` check it (an importer of dated rows
should too).
"""

from __future__ import annotations

from datetime import UTC, datetime

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def datetime_in_range(value: datetime) -> bool:
    """Whether the timezone-aware `value` lies in [EARLIEST, LATEST); a naive one never does."""
    if value.tzinfo is None or value.utcoffset() is None:
        return False
    try:
        return EARLIEST <= value < LATEST
    except OverflowError:
        return False


def datetime_range_text() -> str:
    """The accepted range in words, for error messages."""
    return f"between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
