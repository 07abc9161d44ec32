"""Turning an order's reservations into parcels: one shipment per warehouse the stock sits in,
each given its carrier service by the carrier rules (`logistics.rules`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection

from django.db import transaction

from inventory.locking import order_lock, reservations_lock
from inventory.models import Reservation, ReservationState
from logistics.dispatch import shipment_changed, shipments_dispatch
from logistics.models import Shipment, ShipmentLine, ShipmentStatus
from logistics.rules import (
    Rule,
    carrier_rules_load,
    packaging_allowance_get,
    shipments_rules_apply,
    shipments_rules_pending,
)
from orders.models import Order
from tkerp.bulk import rows_copy
from tkerp.tenancy import tenant_context


def shipment_reference(*, order: Order, warehouse_id: int) -> str:
    """The parcel reference for the order's parcel from one warehouse (stable across re-runs)."""
    return f"TK{order.pk}-W{warehouse_id}"[:40]


def order_shipments_split(
    *, order: Order, rules: list[Rule] | None = None, apply_rules: bool = True
) -> list[Shipment]:
    """One pending `Shipment` per warehouse holding the order's reserved lines, with its lines.

    Idempotent: a warehouse that already has a live (not cancelled) shipment for the order keeps
    it, and only lines missing from it are added. Returns the order's live shipments from those
    warehouses. Lines without a reservation (short, unknown SKU) get no shipment.

    New parcels, and parcels that got lines, go through the carrier rules in the same
    transaction (`rules` saves loading them); a batch caller passes `apply_rules=False` and runs
    the rules once over all its parcels instead.
    """
    with tenant_context(order.tenant), transaction.atomic():
        locked = order_lock(order_id=order.pk)
        by_warehouse: dict[int, list] = defaultdict(list)
        for reservation in reservations_lock(order=locked):
            if reservation.state != ReservationState.RELEASED:
                by_warehouse[reservation.warehouse_id].append(reservation)
        shipments = []
        grown = []  # parcels created or given lines now: their weight and contents changed
        for warehouse_id in sorted(by_warehouse):
            shipment = (
                Shipment.objects.filter(order=locked, warehouse_id=warehouse_id)
                .exclude(status=ShipmentStatus.CANCELLED)
                .order_by("pk")
                .first()
            )
            if shipment is None:
                reference = shipment_reference(order=locked, warehouse_id=warehouse_id)
                taken = Shipment.objects.filter(reference__startswith=reference).count()
                shipment = Shipment.objects.create(
                    tenant_id=locked.tenant_id,
                    order=locked,
                    warehouse_id=warehouse_id,
                    reference=reference if not taken else f"{reference}-{taken + 1}"[:40],
                    status=ShipmentStatus.PENDING,
                )
            present = set(shipment.lines.values_list("order_line_id", flat=True))
            added = ShipmentLine.objects.bulk_create(
                [
                    ShipmentLine(
                        tenant_id=locked.tenant_id,
                        shipment=shipment,
                        order_line_id=reservation.order_line_id,
                        quantity=reservation.quantity,
                    )
                    for reservation in by_warehouse[warehouse_id]
                    if reservation.order_line_id not in present
                ]
            )
            shipments.append(shipment)
            if added:
                grown.append(shipment.pk)
                if shipment.dispatched_at is not None:
                    shipment_changed(shipment=shipment, change="lines")
        if apply_rules and grown:
            shipments_rules_apply(tenant=locked.tenant, shipment_ids=grown, rules=rules)
            shipments_dispatch(tenant=locked.tenant, shipment_ids=grown)
            fresh = Shipment.objects.in_bulk(grown)
            shipments = [fresh.get(shipment.pk, shipment) for shipment in shipments]
        return shipments


def shipment_lines_move(*, parcel: Shipment, line_ids: Collection[int]) -> Shipment:
    """Move the lines `line_ids` of the locked `parcel` to a new parcel from the same warehouse,
    with the same service, rule, provider and provider timestamps, and weigh both parcels again.
    The one way a parcel is split (a partial ship through the provider API or a tracking number
    for some lines); the caller holds the order's lock and checks the lines belong to `parcel`."""
    taken = Shipment.objects.filter(reference__startswith=parcel.reference).count()
    new = Shipment.objects.create(
        tenant_id=parcel.tenant_id,
        order_id=parcel.order_id,
        warehouse_id=parcel.warehouse_id,
        service_id=parcel.service_id,
        provider_id=parcel.provider_id,
        reference=f"{parcel.reference}-{taken + 1}"[:40],
        status=parcel.status,
        carrier_rule_id=parcel.carrier_rule_id,
        package_type=parcel.package_type,
        rules_applied_at=parcel.rules_applied_at,
        dispatched_at=parcel.dispatched_at,
        acknowledged_at=parcel.acknowledged_at,
    )
    ShipmentLine.objects.filter(shipment=parcel, pk__in=list(line_ids)).update(shipment=new)
    _shipments_weigh(tenant_id=parcel.tenant_id, parcels=[parcel, new])
    return new


def _shipments_weigh(*, tenant_id: int, parcels: list[Shipment]) -> None:
    """Set each parcel's weight from its lines (SKU weight x quantity plus the tenant's packaging
    allowance, as the carrier rules weigh it)."""
    allowance = packaging_allowance_get(tenant=parcels[0].tenant)
    grams: Counter[int] = Counter()
    for shipment_id, quantity, sku_grams in ShipmentLine.objects.filter(
        shipment__in=parcels
    ).values_list("shipment_id", "quantity", "order_line__sku__weight_grams"):
        grams[shipment_id] += (sku_grams or 0) * quantity
    for parcel in parcels:
        parcel.weight_grams = grams[parcel.pk] + allowance
    Shipment.objects.bulk_update(parcels, ["weight_grams"])


#: How many ready orders one call splits at most (the sweep picks up the rest next minute).
SPLIT_BATCH = 500

#: False splits order by order (`order_shipments_split`), the benches' baseline.
SPLIT_SET_BASED = True


def orders_shipments_split(*, tenant, order_ids: Collection[int]) -> list[int]:
    """`order_shipments_split(apply_rules=False)` for many orders in one transaction and a
    handful of statements; returns the ids of the parcels created.

    Locks the orders, then their reservations (each in ascending pk, the house order). Orders
    that already have a live parcel are handed to `order_shipments_split` one by one (it adds
    the lines their parcels miss); the others get one parcel per warehouse holding their
    unreleased reservations, with the same references and lines the per-order path writes. An
    order without such reservations gets none. Safe to run twice: a second run finds the
    parcels and adds nothing.
    """
    ids = sorted(set(order_ids))
    if not ids:
        return []
    with tenant_context(tenant), transaction.atomic():
        # Only what the parcels are made of: the orders' platform payloads stay unread.
        locked = list(
            Order.objects.select_for_update(of=("self",))
            .filter(pk__any=ids)
            .only("id", "tenant_id")
            .order_by("pk")
        )
        if not locked:
            return []
        by_order: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
        for reservation in (
            Reservation.objects.select_for_update()
            .filter(order_id__any=[order.pk for order in locked])
            .exclude(state=ReservationState.RELEASED)
            .order_by("pk")
        ):
            by_order[reservation.order_id][reservation.warehouse_id].append(reservation)
        references: dict[int, list[str]] = defaultdict(list)
        live: set[int] = set()
        for order_id, reference, status in Shipment.objects.filter(
            order_id__any=[order.pk for order in locked]
        ).values_list("order_id", "reference", "status"):
            references[order_id].append(reference)
            if status != ShipmentStatus.CANCELLED:
                live.add(order_id)
        shipments: list[Shipment] = []
        lines_of: list[list] = []
        for order in locked:
            if order.pk in live:
                order_shipments_split(order=order, apply_rules=False)
                continue
            for warehouse_id, reservations in sorted(by_order[order.pk].items()):
                reference = shipment_reference(order=order, warehouse_id=warehouse_id)
                taken = sum(1 for r in references[order.pk] if r.startswith(reference))
                shipments.append(
                    Shipment(
                        tenant_id=order.tenant_id,
                        order_id=order.pk,
                        warehouse_id=warehouse_id,
                        reference=reference if not taken else f"{reference}-{taken + 1}"[:40],
                        status=ShipmentStatus.PENDING,
                    )
                )
                lines_of.append(reservations)
        rows_copy(Shipment, shipments)
        rows_copy(
            ShipmentLine,
            [
                ShipmentLine(
                    tenant_id=shipment.tenant_id,
                    shipment_id=shipment.pk,
                    order_line_id=reservation.order_line_id,
                    quantity=reservation.quantity,
                )
                for shipment, reservations in zip(shipments, lines_of, strict=True)
                for reservation in reservations
            ],
        )
    return [shipment.pk for shipment in shipments]


def orders_split_ready(*, tenant, order_ids=None, limit: int = SPLIT_BATCH) -> int:
    """Split every ready order whose stock is reserved but which has no live parcel yet, then
    give the new parcels their carrier service.

    Selected by state, so it is safe to run twice or after a worker died: the pipeline queues it
    for the orders an ingest just made ready, and the minute sweep catches the rest (orders
    released from a hold, a lost task). The rules are loaded once and run set-based over every
    parcel that has none yet (this batch's, and any a stopped run left behind), `limit` at a
    time. Returns how many orders were split.
    """
    from orders.models import OrderStatus

    with tenant_context(tenant):
        if order_ids is not None:
            picked = _orders_unsplit(order_ids=order_ids)[:limit]
        else:
            reserved = Reservation.objects.filter(state=ReservationState.RESERVED).values(
                "order_id"
            )
            live = Shipment.objects.exclude(status=ShipmentStatus.CANCELLED).values("order_id")
            orders = Order.objects.filter(status=OrderStatus.READY, pk__in=reserved).exclude(
                pk__in=live
            )
            picked = list(orders.order_by("pk").values_list("pk", flat=True)[:limit])
        if SPLIT_SET_BASED:
            orders_shipments_split(tenant=tenant, order_ids=picked)
        else:
            for order in Order.objects.filter(pk__in=picked).order_by("pk"):
                order_shipments_split(order=order, apply_rules=False)
        split = len(picked)
        rules, done = None, set()
        while True:
            pending = shipments_rules_pending(tenant=tenant, limit=limit)
            if done.issuperset(pending):  # nothing new (or a parcel the rules cannot settle)
                break
            if rules is None:
                rules = carrier_rules_load(tenant=tenant)
            shipments_rules_apply(tenant=tenant, shipment_ids=pending, rules=rules)
            done.update(pending)
            if len(pending) < limit:
                # That was every pending parcel: asking again would only rescan the tenant's
                # parcels to find these settled (or a concurrent split's, which runs its own).
                break
        # Parcels of a 3PL's or supplier's warehouse go to their provider now that the rules
        # have run (logistics.dispatch; the provider sweep catches any left behind).
        while shipments_dispatch(tenant=tenant, limit=limit):
            pass
    return split


def _orders_unsplit(*, order_ids: Collection[int]) -> list[int]:
    """Which of `order_ids` are ready, hold reserved stock and have no live parcel, ascending.

    Three lookups each driven by the id array (`= ANY`) rather than one query with IN
    (subquery) conditions: on a fresh table's statistics (a new seller's first spike) PostgreSQL
    took the subqueries for a row each and rescanned every reservation per order (60 ms a page
    at 2,800 orders, growing with the table)."""
    from orders.models import OrderStatus

    ready = list(
        Order.objects.filter(pk__any=sorted(set(order_ids)), status=OrderStatus.READY)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if not ready:
        return []
    reserved = set(
        Reservation.objects.filter(order_id__any=ready, state=ReservationState.RESERVED)
        .order_by()  # the default ordering would join the orders and lines for nothing
        .values_list("order_id", flat=True)
    )
    live = set(
        Shipment.objects.filter(order_id__any=ready)
        .exclude(status=ShipmentStatus.CANCELLED)
        .order_by()
        .values_list("order_id", flat=True)
    )
    return [pk for pk in ready if pk in reserved and pk not in live]
