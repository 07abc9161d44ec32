"""Database expressions the cockpit's widgets and charts aggregate with (PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import DateTimeField, DurationField, Func, Value


class DateBin(Func):
    """`date_bin(stride, source, origin)`: the start of the `stride`-long bin `source` falls in,
    bins counted from `origin` (so a chart's bins start where its window starts)."""

    function = "date_bin"
    output_field = DateTimeField()

    def __init__(self, stride: timedelta, expression, *, origin: datetime):
        super().__init__(
            Value(stride, output_field=DurationField()),
            expression,
            Value(origin, output_field=DateTimeField()),
        )


class Minutes(Func):
    """An integer column as an interval of that many minutes (for per-row deadlines such as
    `dispatched_at + provider.confirm_within_minutes`)."""

    template = "make_interval(mins => %(expressions)s)"
    output_field = DurationField()


class Seconds(Func):
    template = "make_interval(secs => %(expressions)s)"
    output_field = DurationField()
