"""The sync side of the cockpit: shops whose order sync is failing or lagging.

`shops_sync_failing` / `shops_sync_lagging` are also the shop list's "sync" filter
(`shops.admin`), so the widget's counts and the list are the same shops.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, ExpressionWrapper, F, Q, Value
from django.db.models.fields import DateTimeField
from django.db.models.functions import Greatest

from shops.models import Platform, Shop
from tkerp.cockpit import Figure, Panel, changelist_url, cockpit_widget
from tkerp.cockpit.db import Seconds
from tkerp.cockpit.registry import local_time

#: A shop lags when its last successful pass is older than this many sync intervals (the shop
#: list's "lag" column turns red at the same point).
LAG_INTERVALS = 3
#: At most this many problem shops are named on the widget (the link lists them all).
ROWS_SHOWN = 6


def q_sync_failing() -> Q:
    return Q(is_active=True, consecutive_sync_failures__gt=0)


def shops_with_lag_deadline(queryset=None):
    """Shops annotated with `lag_after`: when their sync counts as lagging."""
    queryset = Shop.objects.all() if queryset is None else queryset
    interval = Greatest(F("sync_interval_seconds"), Value(60)) * Value(LAG_INTERVALS)
    return queryset.alias(
        lag_after=ExpressionWrapper(
            F("last_sync_success_at") + Seconds(interval), output_field=DateTimeField()
        )
    )


def q_sync_lagging(*, now: datetime) -> Q:
    """Active platform shops (not the manual/CSV kind) not synced for `LAG_INTERVALS` intervals
    (or never); needs `shops_with_lag_deadline`."""
    return (
        Q(is_active=True)
        & ~Q(platform=Platform.MANUAL)
        & (Q(last_sync_success_at__isnull=True) | Q(lag_after__lt=now))
    )


@cockpit_widget(key="sync", title="Order sync", order=50, permission="shops.view_shop")
def sync(*, now: datetime) -> Panel:
    shops = shops_with_lag_deadline()
    counts = shops.aggregate(
        failing=Count("pk", filter=q_sync_failing()),
        lagging=Count("pk", filter=q_sync_lagging(now=now)),
    )
    problems = shops.filter(q_sync_failing() | q_sync_lagging(now=now)).order_by(
        "-consecutive_sync_failures", F("last_sync_success_at").asc(nulls_first=True), "name"
    )[:ROWS_SHOWN]
    rows = [
        {
            "name": shop.name,
            "detail": (
                f"failed {shop.consecutive_sync_failures} times in a row"
                if shop.consecutive_sync_failures
                else "lagging"
            ),
            "when": (
                f"last success {local_time(shop.last_sync_success_at, now=now)}"
                if shop.last_sync_success_at
                else "never synced"
            ),
            "tone": "bad" if shop.consecutive_sync_failures else "warn",
        }
        for shop in problems
    ]
    return Panel(
        figures=[
            Figure(
                label="shops failing",
                value=counts["failing"],
                tone="bad",
                url=changelist_url(Shop, sync="failing"),
            ),
            Figure(
                label="shops lagging",
                value=counts["lagging"],
                tone="warn",
                url=changelist_url(Shop, sync="lagging"),
            ),
        ],
        rows=rows,
        empty_text="Every shop is in sync.",
    )
