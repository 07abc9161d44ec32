"""Holding orders for a person to look at, and releasing them.

An order is on hold while it has any active hold (one without `released_at`); each hold carries a
stable reason code. Every function here locks the order row first, so two people (or a person and
the review task) acting on one order at once are serialised, and each is idempotent: holding twice
with the same code, or releasing an order with nothing to release, changes nothing and writes no
event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models, transaction
from django.utils import timezone

from orders.events import order_event_add
from orders.models import EventSource, Order, OrderEvent, OrderHold, OrderStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class HoldReason(models.TextChoices):
    """Reason codes a person can pick when holding by hand; review rules use the same codes."""

    MANUAL = "manual", "Held by hand"
    ADDRESS_CHECK = "address.check", "Address needs checking"
    ADDRESS_PO_BOX = "address.po_box", "PO box address"
    ADDRESS_MILITARY = "address.military", "Military address"
    ADDRESS_ZIP_STATE_MISMATCH = "address.zip_state_mismatch", "ZIP code does not fit the state"
    ADDRESS_INCOMPLETE = "address.incomplete", "Address incomplete"
    ADDRESS_TOO_LONG = "address.too_long", "Address line too long"
    PHONE_INVALID = "phone.invalid", "Phone number invalid"
    BUYER_NOTE = "buyer_note", "Buyer left a note"
    BUYER_CONTACT = "buyer.contact", "Waiting for the buyer"
    HIGH_VALUE = "high_value", "High-value order"
    DUPLICATE_ADDRESS = "duplicate_address", "Duplicate address"
    STOCK_SHORT = "stock.short", "Not enough stock"
    SKU_UNKNOWN = "sku.unknown", "Line matches no SKU"
    FRAUD_SUSPECTED = "fraud.suspected", "Suspected fraud"
    CARRIER_NO_RULE = "carrier.no_rule", "No carrier rule fits a parcel"
    PROVIDER_REJECTED = "provider.rejected", "The provider rejected a parcel"
    PARTLY_SHIPPED = "shipped.partly", "Partly shipped outside tkerp"


# Holding is for orders nobody has started fulfilling: once stock is allocated the order has
# shipments and reservations that a hold/release round trip (which ends in "ready") would orphan.
HOLDABLE_STATUSES = (OrderStatus.NEW, OrderStatus.ON_HOLD, OrderStatus.READY)


class HoldNotAllowed(Exception):
    """The order's status does not allow holding it."""


def order_lock(*, order: Order) -> Order:
    """Re-read `order` under a row lock, through the tenant scope (another tenant's order is
    `Order.DoesNotExist`). Call inside a transaction."""
    return Order.objects.select_for_update().get(pk=order.pk)


def order_hold(
    *,
    order: Order,
    code: str,
    message: str = "",
    user: AbstractBaseUser | None = None,
    source: str | None = None,
) -> tuple[OrderHold, bool]:
    """Put `order` on hold for `code`; returns the active hold and whether it was created.

    Holding again with a code that is already active returns that hold unchanged (the partial
    unique constraint on active holds is the final judge). Raises `HoldNotAllowed` when the
    order is past the point where holding makes sense.
    """
    code = code.strip()
    if not code:
        raise ValueError("a hold needs a reason code")
    with transaction.atomic():
        order = order_lock(order=order)
        existing = OrderHold.objects.filter(
            order=order, code=code, released_at__isnull=True
        ).first()
        if existing is not None:
            return existing, False
        if order.status not in HOLDABLE_STATUSES:
            raise HoldNotAllowed(
                f"Order {order.platform_order_id} is {order.get_status_display().lower()}; "
                "only new, held or ready orders can be held."
            )
        hold = OrderHold.objects.create(
            tenant_id=order.tenant_id,
            order=order,
            code=code,
            message=message[:500],
            created_by=user,
        )
        previous_status = order.status
        if order.status != OrderStatus.ON_HOLD:
            order.status = OrderStatus.ON_HOLD
            order.save(update_fields=["status", "updated_at"])
        order_event_add(
            order=order,
            kind="hold.added",
            message=f"Held: {code}" + (f" — {message}" if message else ""),
            data={"code": code, "message": message, "previous_status": previous_status},
            user=user,
            source=source,
        )
    return hold, True


def order_release(
    *,
    order: Order,
    user: AbstractBaseUser | None = None,
    codes: list[str] | None = None,
    source: str | None = None,
) -> list[OrderHold]:
    """Release the order's active holds (all of them, or only those with one of `codes`).

    When no active hold is left and the order was on hold, it becomes ready, or "new" while its
    stock is not reserved (the SLA sweep then runs it through stock and review again). Returns
    the holds released now; an empty list means there was nothing to do and nothing was
    written.
    """
    with transaction.atomic():
        order = order_lock(order=order)
        active = OrderHold.objects.filter(order=order, released_at__isnull=True).order_by("pk")
        to_release = [hold for hold in active if codes is None or hold.code in codes]
        if not to_release:
            return []
        now = timezone.now()
        released_by = user if user is not None and user.is_authenticated else None
        OrderHold.objects.filter(pk__in=[hold.pk for hold in to_release]).update(
            released_at=now, released_by=released_by
        )
        for hold in to_release:
            hold.released_at, hold.released_by = now, released_by
        previous_status = order.status
        still_held = OrderHold.objects.filter(order=order, released_at__isnull=True).exists()
        if not still_held and order.status == OrderStatus.ON_HOLD:
            # Imported late: inventory.reservations imports this module.
            from inventory.reservations import orders_not_reserved

            # Ready only with its stock reserved (releasing `stock.short` by hand conjures no
            # stock): otherwise "new", which the SLA sweep runs through stock and review again.
            waiting = bool(orders_not_reserved(order_ids=[order.pk]))
            order.status = OrderStatus.NEW if waiting else OrderStatus.READY
            order.save(update_fields=["status", "updated_at"])
        released_codes = [hold.code for hold in to_release]
        if HoldReason.CARRIER_NO_RULE in released_codes:
            # The person may have fixed the rules: try them once more on the parcels still
            # without a service, and leave a parcel no rule fits unheld (they released it).
            from logistics.rules import order_rules_after_release

            order_rules_after_release(order=order, user=user)
        order_event_add(
            order=order,
            kind="hold.released",
            message="Released: " + ", ".join(released_codes),
            data={
                "codes": released_codes,
                "previous_status": previous_status,
                "status": order.status,
            },
            user=user,
            source=source,
        )
    return to_release


def orders_hold_many(
    *,
    messages: dict[int, str],
    code: str,
    user: AbstractBaseUser | None = None,
    source: str | None = None,
) -> set[int]:
    """Hold many orders for one reason at once, `messages` giving each order's message: the
    set-based `order_hold` for a batch (a few queries whatever its size). Call inside a
    transaction with the tenant in scope.

    Orders that already have an active hold with `code` keep it, and orders past holding are
    left as they are. Returns the ids of the orders held now.
    """
    if not messages:
        return set()
    user = user if user is not None and user.is_authenticated else None
    source = source or (EventSource.USER if user is not None else EventSource.SYSTEM)
    orders = list(
        Order.objects.select_for_update(of=("self",))
        .filter(pk__in=sorted(messages), status__in=HOLDABLE_STATUSES)
        .order_by("pk")
    )
    already = set(
        OrderHold.objects.filter(
            order_id__in=[order.pk for order in orders], code=code, released_at__isnull=True
        ).values_list("order_id", flat=True)
    )
    orders = [order for order in orders if order.pk not in already]
    if not orders:
        return set()
    OrderHold.objects.bulk_create(
        OrderHold(
            tenant_id=order.tenant_id,
            order_id=order.pk,
            code=code,
            message=messages[order.pk][:500],
            created_by=user,
        )
        for order in orders
    )
    OrderEvent.objects.bulk_create(
        OrderEvent(
            tenant_id=order.tenant_id,
            order_id=order.pk,
            kind="hold.added",
            message=f"Held: {code} — {messages[order.pk]}"[:500],
            data={"code": code, "message": messages[order.pk], "previous_status": order.status},
            source=source,
            user=user,
        )
        for order in orders
    )
    Order.objects.filter(pk__in=[order.pk for order in orders]).exclude(
        status=OrderStatus.ON_HOLD
    ).update(status=OrderStatus.ON_HOLD, updated_at=timezone.now())
    return {order.pk for order in orders}


def orders_release_many(
    *,
    order_ids: list[int],
    code: str,
    user: AbstractBaseUser | None = None,
    source: str | None = None,
) -> set[int]:
    """Release the active `code` hold of many orders at once (the set-based `order_release` for
    one code); an order left with no active hold becomes ready. Call inside a transaction with
    the tenant in scope. Returns the ids of the orders whose hold was released."""
    if not order_ids:
        return set()
    user = user if user is not None and user.is_authenticated else None
    source = source or (EventSource.USER if user is not None else EventSource.SYSTEM)
    orders = {
        order.pk: order
        for order in Order.objects.select_for_update(of=("self",))
        .filter(pk__in=sorted(set(order_ids)), holds__code=code, holds__released_at__isnull=True)
        .order_by("pk")
    }
    if not orders:
        return set()
    now = timezone.now()
    OrderHold.objects.filter(order_id__in=list(orders), code=code, released_at__isnull=True).update(
        released_at=now, released_by=user
    )
    still_held = set(
        OrderHold.objects.filter(order_id__in=list(orders), released_at__isnull=True).values_list(
            "order_id", flat=True
        )
    )
    ready = [pk for pk, order in orders.items() if pk not in still_held]
    Order.objects.filter(pk__in=ready, status=OrderStatus.ON_HOLD).update(
        status=OrderStatus.READY, updated_at=now
    )
    OrderEvent.objects.bulk_create(
        OrderEvent(
            tenant_id=order.tenant_id,
            order_id=pk,
            kind="hold.released",
            message=f"Released: {code}",
            data={
                "codes": [code],
                "previous_status": order.status,
                "status": (
                    OrderStatus.READY
                    if pk not in still_held and order.status == OrderStatus.ON_HOLD
                    else order.status
                ),
            },
            source=source,
            user=user,
        )
        for pk, order in orders.items()
    )
    return set(orders)
