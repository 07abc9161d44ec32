"""The dates tkerp accepts from outside: years 2000 to 2100, in UTC.

A date and time far outside that (year 1, year 9999) is stored by PostgreSQL, but shown in a
tenant's time zone it no longer fits Python's `datetime` (years 1..9999): every list showing it
is then an error page for the whole tenant ("0001-01-01T00:00Z", some systems' null date, read
for a seller in New York). Nothing real tkerp handles happens outside those years, so every door
checks this one bound where values come in: platforms' answers
(`shops.platforms.base.parse_iso_datetime`, the TikTok connector, `orders.ingest`), CSV imports
(`orders.resources`), admin forms (`tkerp.admin`) and API cursors (`tkerp.api.pagination`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.exceptions import ValidationError

DATETIME_MIN = datetime(2000, 1, 1, tzinfo=UTC)
DATETIME_MAX = datetime(2100, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
RANGE_TEXT = f"{DATETIME_MIN.year}-{DATETIME_MAX.year}"


def datetime_in_range(value: datetime) -> bool:
    """True when `value` falls in the years 2000 to 2100 in UTC. A naive value is read as UTC
    (an offset of hours cannot move it across the bounds' years by more than a day)."""
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    try:
        return DATETIME_MIN <= value <= DATETIME_MAX
    except OverflowError:  # an offset that takes year 1 or 9999 past Python's range
        return False


def datetime_range_text() -> str:
    """The accepted range in words, for error messages."""
    return f"between {DATETIME_MIN:%Y-%m-%d} and {DATETIME_MAX:%Y-%m-%d} (UTC)"


def validate_datetime_in_range(value) -> None:
    """Django validator: refuse a date and time outside the years 2000 to 2100."""
    if isinstance(value, datetime) and not datetime_in_range(value):
        raise ValidationError(
            "Enter a date and time in the years %(range)s.",
            code="datetime_out_of_range",
            params={"range": RANGE_TEXT},
        )
