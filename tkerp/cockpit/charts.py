"""Charts that gather series from several apps: the error rate per day.

Each app registers what it counts as an error with `cockpit_error_series` (holds in
`orders.cockpit`, failed stock pushes in `inventory.cockpit`; invalid tracking numbers join the
same way once they are recorded). A series answers `{local date: (errors, out of)}` for a window,
in one query or two whatever the data size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.safestring import SafeString

from tkerp.cockpit.registry import cockpit_chart
from tkerp.cockpit.svg import Series, line_chart

ERROR_DAYS = 14


@dataclass(frozen=True, slots=True)
class ErrorSeries:
    key: str
    name: str
    order: int
    compute: Callable[..., dict]


ERROR_SERIES: dict[str, ErrorSeries] = {}


def cockpit_error_series(*, key: str, name: str, order: int):
    """Register `func(*, start, end) -> {date: (errors, total)}` as a line of the error chart."""

    def register(func):
        ERROR_SERIES[key] = ErrorSeries(key=key, name=name, order=order, compute=func)
        return func

    return register


@cockpit_chart(
    key="error_rate",
    title=f"Error rate per day, {ERROR_DAYS} days",
    order=40,
    help_text="Holds over orders placed, failed stock pushes over pushes, per day.",
)
def error_rate(*, now: datetime) -> SafeString:
    today = timezone.localdate(now)
    days = [today - timedelta(days=n) for n in range(ERROR_DAYS - 1, -1, -1)]
    tz = timezone.get_current_timezone()
    start = datetime.combine(days[0], datetime.min.time(), tzinfo=tz)
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    series = []
    for n, one in enumerate(sorted(ERROR_SERIES.values(), key=lambda s: s.order), start=1):
        counts = one.compute(start=start, end=end)
        values = []
        for day in days:
            errors, total = counts.get(day, (0, 0))
            values.append(round(100 * errors / total, 1) if total else 0)
        series.append(Series(one.name, values, f"s{n}"))
    labels = [day.strftime("%d %b") for day in days]
    return line_chart(
        label="Error rate per day", series=series, x_labels=labels, label_every=2, unit="%"
    )
