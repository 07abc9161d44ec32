"""Handing parcels to their provider: a parcel of a 3PL's or supplier's warehouse is dispatched
once the carrier rules have had their say, and the provider hears of it (`shipment.created`).

`shipments_dispatch` selects by state (pending, never dispatched, its warehouse run by an active
provider, its order open and with no cancellation asked), so it is safe to run twice: the split
calls it for the parcels it just made, and the provider sweep every minute catches the rest (an
order released from a hold, a lost task). `shipment_changed` tells the provider of a change to a
parcel it already has (`shipment.updated`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from logistics.models import Shipment, ShipmentStatus
from logistics.webhooks import SHIPMENT_CREATED, SHIPMENT_UPDATED, provider_event_emit
from orders.events import order_event_add
from orders.models import CancellationStatus, EventSource, OrderStatus
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from shops.models import Tenant

DISPATCHABLE_ORDER_STATUSES = (OrderStatus.READY, OrderStatus.ALLOCATED)
DISPATCH_BATCH = 500
_CANCEL_ASKED = (
    CancellationStatus.PENDING,
    CancellationStatus.APPROVED,
    CancellationStatus.AUTO_CANCELLED,
)


def shipments_dispatchable(*, shipment_ids: Collection[int] | None = None):
    """Parcels waiting to go to their provider (in the tenant in scope)."""
    parcels = Shipment.objects.filter(
        status=ShipmentStatus.PENDING,
        dispatched_at__isnull=True,
        rules_applied_at__isnull=False,
        tracking_number="",
        warehouse__provider__isnull=False,
        warehouse__provider__is_active=True,
        order__status__in=DISPATCHABLE_ORDER_STATUSES,
    ).exclude(order__cancel_requests__status__in=_CANCEL_ASKED)
    if shipment_ids is not None:
        parcels = parcels.filter(pk__in=list(shipment_ids))
    return parcels


def shipments_dispatch(
    *, tenant: Tenant, shipment_ids: Collection[int] | None = None, limit: int = DISPATCH_BATCH
) -> list[int]:
    """Give every dispatchable parcel (of `shipment_ids`, else any) to its warehouse's provider:
    `provider`, `status=sent_to_provider` and `dispatched_at` (which starts the acknowledgement
    clock) are set in one conditional update, then each gets its `shipment.created` event and
    an order event. Returns the ids dispatched now."""
    with tenant_context(tenant), transaction.atomic():
        candidates = list(
            shipments_dispatchable(shipment_ids=shipment_ids)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        if not candidates:
            return []
        now = timezone.now()
        locked = list(
            Shipment.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(pk__in=candidates, status=ShipmentStatus.PENDING, dispatched_at__isnull=True)
            .select_related("warehouse__provider", "order", "service__carrier")
            .order_by("pk")
        )
        for shipment in locked:
            shipment.provider = shipment.warehouse.provider
            shipment.status = ShipmentStatus.SENT_TO_PROVIDER
            shipment.dispatched_at = now
        Shipment.objects.bulk_update(locked, ["provider", "status", "dispatched_at"])
        Shipment.objects.filter(pk__in=[s.pk for s in locked]).update(updated_at=now)
        for shipment in locked:
            order_event_add(
                order=shipment.order,
                kind="shipment.sent_to_provider",
                message=f"Parcel {shipment.reference} sent to {shipment.provider.name}",
                data={"shipment": shipment.pk, "provider": shipment.provider.code},
                source=EventSource.SYSTEM,
            )
            provider_event_emit(
                shipment=shipment, event_type=SHIPMENT_CREATED, key=f"{shipment.pk}-created"
            )
        return [shipment.pk for shipment in locked]


def shipment_changed(*, shipment: Shipment, change: str) -> None:
    """Tell the provider that holds `shipment` that it changed (`shipment.updated`, with
    `change` saying what: "lines", "service", "acknowledged"...). Nothing for a parcel no
    provider has. Call it inside the transaction that made the change."""
    if shipment.dispatched_at is None or shipment.provider_id is None:
        return
    provider_event_emit(shipment=shipment, event_type=SHIPMENT_UPDATED, extra={"change": change})
