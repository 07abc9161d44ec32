"""A provider's scorecard: how fast and how reliably it handled the parcels dispatched to it.

Over the parcels dispatched in the last N days (7 and 30 on the provider's admin page), in one
SQL query each: median and p95 minutes from dispatch to acknowledgement and to shipping
(`percentile_cont`), and the share of parcels rejected, with an invalid tracking number
reported, and late (acknowledged after `confirm_within_minutes`, or still not at that moment;
shipped after `tracking_within_minutes` of acknowledging, or still not, unless intercepted).

Invalid tracking is what `provider_tracking_invalid_record` wrote: the provider API's ship
endpoint records there each tracking number it refuses (an order event
`shipment.tracking_invalid` naming the parcel).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from logistics.models import Provider, Shipment
from orders.events import order_event_add
from orders.models import EventSource, OrderEvent

TRACKING_INVALID_EVENT = "shipment.tracking_invalid"
WINDOWS = (7, 30)


@dataclass(frozen=True)
class Scorecard:
    days: int
    parcels: int
    acknowledge_median_minutes: float | None
    acknowledge_p95_minutes: float | None
    ship_median_minutes: float | None
    ship_p95_minutes: float | None
    rejected_percent: float | None
    invalid_tracking_percent: float | None
    late_percent: float | None


def provider_tracking_invalid_record(
    *, shipment: Shipment, tracking_number: str, reason: str
) -> OrderEvent:
    """Record that the provider sent a tracking number tkerp refused (the scorecard counts the
    parcels that had one). Call it from the door that refused it."""
    return order_event_add(
        order=shipment.order,
        kind=TRACKING_INVALID_EVENT,
        message=f"Tracking number refused for parcel {shipment.reference}: {reason}"[:500],
        data={
            "shipment": shipment.pk,
            "provider": shipment.provider_id,
            "tracking_number": tracking_number[:64],
        },
        source=EventSource.PROVIDER,
    )


_SQL = """
WITH parcels AS (
    SELECT s.id, s.status, s.intercept_state, s.dispatched_at, s.acknowledged_at,
           s.rejected_at, s.shipped_at,
           extract(epoch FROM s.acknowledged_at - s.dispatched_at) AS ack_seconds,
           extract(epoch FROM s.shipped_at - s.dispatched_at) AS ship_seconds,
           s.dispatched_at + p.confirm_within_minutes * interval '1 minute' AS ack_due,
           s.acknowledged_at + p.tracking_within_minutes * interval '1 minute' AS ship_due
    FROM {shipment} s JOIN {provider} p ON p.id = s.provider_id
    WHERE s.tenant_id = %(tenant)s AND s.provider_id = %(provider)s
      AND s.dispatched_at >= %(since)s
),
invalid AS (
    SELECT DISTINCT (e.data ->> 'shipment')::bigint AS shipment_id
    FROM {event} e
    WHERE e.tenant_id = %(tenant)s AND e.kind = %(invalid_kind)s AND e.created_at >= %(since)s
)
SELECT
    count(*),
    -- minutes from dispatch to acknowledging, then to shipping: median and p95
    percentile_cont(0.5) WITHIN GROUP (ORDER BY ack_seconds)
        FILTER (WHERE acknowledged_at IS NOT NULL) / 60,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY ack_seconds)
        FILTER (WHERE acknowledged_at IS NOT NULL) / 60,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY ship_seconds)
        FILTER (WHERE shipped_at IS NOT NULL) / 60,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY ship_seconds)
        FILTER (WHERE shipped_at IS NOT NULL) / 60,
    count(*) FILTER (WHERE rejected_at IS NOT NULL),
    count(*) FILTER (WHERE invalid.shipment_id IS NOT NULL),
    count(*) FILTER (WHERE
        coalesce(acknowledged_at, rejected_at, %(now)s) > ack_due
        OR (acknowledged_at IS NOT NULL AND intercept_state = '' AND status <> 'cancelled'
            AND coalesce(shipped_at, %(now)s) > ship_due)
    )
FROM parcels LEFT JOIN invalid ON invalid.shipment_id = parcels.id
"""


def _round(value) -> float | None:
    return None if value is None else round(float(value), 1)


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def provider_scorecard(*, provider: Provider, days: int, now: datetime | None = None) -> Scorecard:
    """The provider's figures over the parcels dispatched in the last `days` days."""
    now = now or timezone.now()
    sql = _SQL.format(
        shipment=connection.ops.quote_name(Shipment._meta.db_table),
        provider=connection.ops.quote_name(Provider._meta.db_table),
        event=connection.ops.quote_name(OrderEvent._meta.db_table),
    )
    params = {
        "tenant": provider.tenant_id,
        "provider": provider.pk,
        "since": now - timedelta(days=days),
        "now": now,
        "invalid_kind": TRACKING_INVALID_EVENT,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        parcels, ack50, ack95, ship50, ship95, rejected, invalid, late = cursor.fetchone()
    return Scorecard(
        days=days,
        parcels=parcels,
        acknowledge_median_minutes=_round(ack50),
        acknowledge_p95_minutes=_round(ack95),
        ship_median_minutes=_round(ship50),
        ship_p95_minutes=_round(ship95),
        rejected_percent=_percent(rejected, parcels),
        invalid_tracking_percent=_percent(invalid, parcels),
        late_percent=_percent(late, parcels),
    )


def provider_scorecards(*, provider: Provider, now: datetime | None = None) -> list[Scorecard]:
    now = now or timezone.now()
    return [provider_scorecard(provider=provider, days=days, now=now) for days in WINDOWS]
