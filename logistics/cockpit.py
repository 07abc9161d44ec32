"""The parcels side of the cockpit: what waits for a label, label batches running, providers
late to acknowledge a parcel or to send its tracking.

The querysets here are also the shipment list's filters (`logistics.admin`), so each count and
its list are the same parcels.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, ExpressionWrapper, F, Q
from django.db.models.fields import DateTimeField
from django.db.models.functions import TruncDate

from logistics.batches import batch_progress_bar, label_batch_ready_parcels
from logistics.models import (
    LabelBatch,
    LabelBatchItemStatus,
    LabelBatchStatus,
    Shipment,
    ShipmentStatus,
    TrackingAttemptResult,
    TrackingException,
    TrackingPushAttempt,
)
from tkerp.cockpit import Figure, Panel, changelist_url, cockpit_widget
from tkerp.cockpit.charts import cockpit_error_series
from tkerp.cockpit.db import Minutes

#: Running batches shown with their progress bar (the link lists them all).
BATCHES_SHOWN = 4
LIVE_BATCH_STATUSES = (LabelBatchStatus.QUEUED, LabelBatchStatus.RUNNING)
#: Parcel states in which a provider still owes us tracking.
AWAITING_TRACKING = (ShipmentStatus.SENT_TO_PROVIDER, ShipmentStatus.CONFIRMED)


def shipments_with_provider_deadlines(queryset=None):
    """Parcels annotated with `ack_due` (dispatched + the provider's confirm window) and
    `tracking_due` (acknowledged + its tracking window)."""
    queryset = Shipment.objects.all() if queryset is None else queryset
    return queryset.alias(
        ack_due=ExpressionWrapper(
            F("dispatched_at") + Minutes(F("provider__confirm_within_minutes")),
            output_field=DateTimeField(),
        ),
        tracking_due=ExpressionWrapper(
            F("acknowledged_at") + Minutes(F("provider__tracking_within_minutes")),
            output_field=DateTimeField(),
        ),
    )


def q_provider_late_ack(*, now: datetime) -> Q:
    """Handed to a provider, neither accepted nor refused within its confirm window."""
    return Q(
        provider__isnull=False,
        dispatched_at__isnull=False,
        acknowledged_at__isnull=True,
        rejected_at__isnull=True,
        ack_due__lt=now,
    ) & ~Q(status=ShipmentStatus.CANCELLED)


def q_provider_late_tracking(*, now: datetime) -> Q:
    """Accepted by its provider, still without a tracking number past its tracking window."""
    return Q(
        provider__isnull=False,
        acknowledged_at__isnull=False,
        tracking_number="",
        status__in=AWAITING_TRACKING,
        tracking_due__lt=now,
    )


@cockpit_widget(
    key="labels", title="Awaiting label", order=15, permission="logistics.view_shipment"
)
def labels(*, now: datetime) -> Panel:
    counts = label_batch_ready_parcels().aggregate(
        ready=Count("pk"), late=Count("pk", filter=Q(order__ship_by__lt=now))
    )
    return Panel(
        figures=[
            Figure(
                label="parcels ready to print",
                value=counts["ready"],
                tone="warn",
                url=changelist_url(Shipment, label="ready"),
            ),
            Figure(
                label="of them past ship-by",
                value=counts["late"],
                tone="bad",
                url=changelist_url(Shipment, label="late"),
            ),
        ]
    )


@cockpit_widget(
    key="batches",
    title="Label batches running",
    order=70,
    permission="logistics.view_labelbatch",
    template="admin/cockpit/widget_batches.html",
)
def batches(*, now: datetime) -> Panel:
    live = LabelBatch.objects.filter(status__in=LIVE_BATCH_STATUSES)
    shown = (
        live.select_related("shop")
        .annotate(
            items_total=Count("items"),
            items_done=Count("items", filter=Q(items__status=LabelBatchItemStatus.LABELLED)),
            items_failed=Count("items", filter=Q(items__status=LabelBatchItemStatus.FAILED)),
        )
        .order_by("created_at", "pk")[:BATCHES_SHOWN]
    )
    rows = [
        {
            "batch": batch,
            "name": f"{batch} · {batch.shop.name}" if batch.shop_id else str(batch),
            # The admin's one progress bar (tkerp.jobs.ProgressBar), drawn compact here.
            "progress": batch_progress_bar(
                total=batch.items_total,
                done=batch.items_done,
                failed=batch.items_failed,
                status=batch.status,
            ),
        }
        for batch in shown
    ]
    running = live.count()
    return Panel(
        figures=[
            Figure(
                label="running or queued",
                value=running,
                url=changelist_url(LabelBatch, status__in=",".join(LIVE_BATCH_STATUSES)),
            )
        ],
        rows=rows,
        empty_text="No batch is printing.",
    )


@cockpit_widget(key="providers", title="Providers", order=80, permission="logistics.view_shipment")
def providers(*, now: datetime) -> Panel:
    counts = shipments_with_provider_deadlines().aggregate(
        ack=Count("pk", filter=q_provider_late_ack(now=now)),
        tracking=Count("pk", filter=q_provider_late_tracking(now=now)),
    )
    return Panel(
        figures=[
            Figure(
                label="late to acknowledge",
                value=counts["ack"],
                tone="bad",
                url=changelist_url(Shipment, provider_late="ack"),
            ),
            Figure(
                label="late to send tracking",
                value=counts["tracking"],
                tone="bad",
                url=changelist_url(Shipment, provider_late="tracking"),
            ),
        ]
    )


@cockpit_widget(
    key="on_their_way", title="Parcels in trouble", order=85, permission="logistics.view_shipment"
)
def on_their_way(*, now: datetime) -> Panel:
    """What the tracking poll marked wrong with parcels on their way (logistics.tracking_events):
    each kind links to the parcel list's tracking-exception filter."""
    kinds = [kind for kind in TrackingException if kind]
    counts = Shipment.objects.exclude(tracking_exception="").aggregate(
        **{kind.value: Count("pk", filter=Q(tracking_exception=kind)) for kind in kinds}
    )
    return Panel(
        figures=[
            Figure(
                label=kind.label.lower(),
                value=counts[kind.value],
                tone="bad",
                url=changelist_url(Shipment, tracking_exception=kind.value),
            )
            for kind in kinds
        ]
    )


@cockpit_error_series(key="invalid_tracking", name="invalid tracking", order=20)
def invalid_tracking_per_day(*, start: datetime, end: datetime) -> dict:
    """Tracking write-backs a platform rejected as invalid, over write-back calls, per day."""
    rows = (
        TrackingPushAttempt.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            errors=Count("pk", filter=Q(result=TrackingAttemptResult.REJECTED)), total=Count("pk")
        )
        .order_by()
    )
    return {row["day"]: (row["errors"], row["total"]) for row in rows}
