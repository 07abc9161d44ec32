"""Buyers' return and refund requests: synced from the platform into an inbox, and restocked
once when the goods come back.

`returns_sync` asks the platform for returns changed since the newest one stored (with an
overlap) and `returns_apply` upserts them by (tenant, shop, platform return id), so a re-run
changes nothing. `return_receive` restocks the returned units into a chosen warehouse through
`inventory.stock.stock_adjust(kind="return")`; the claim on `received_at` and the stock movements
share one transaction, so receiving twice restocks once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from inventory.models import Listing, MovementKind, Sku
from inventory.stock import stock_adjust
from orders.events import order_event_add
from orders.models import Order, ReturnRequest
from shops.platforms import connector_for
from shops.platforms.base import Connector
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from inventory.models import StockMovement, Warehouse
    from shops.models import Shop
    from shops.platforms.base import ReturnRequest as PlatformReturn

RETURNS_OVERLAP = timedelta(minutes=10)
RETURNS_INITIAL_WINDOW = timedelta(days=30)


class ReturnError(Exception):
    """The return cannot be received as asked; nothing was restocked."""


def returns_supported(connector: Connector) -> bool:
    """Whether the connector overrides the base `fetch_returns` (which returns nothing)."""
    return type(connector).fetch_returns is not Connector.fetch_returns


def returns_apply(*, shop: Shop, returns: list[PlatformReturn]) -> int:
    """Insert or update `returns` of `shop`, linked to their orders where stored; returns how
    many rows were created or changed."""
    incoming = {item.return_id: item for item in returns if item.return_id}
    if not incoming:
        return 0
    changed = 0
    with tenant_context(shop.tenant), transaction.atomic():
        stored = {
            row.platform_return_id: row
            for row in ReturnRequest.objects.select_for_update().filter(
                shop=shop, platform_return_id__in=list(incoming)
            )
        }
        orders = dict(
            Order.objects.filter(
                shop=shop, platform_order_id__in={item.platform_order_id for item in returns}
            ).values_list("platform_order_id", "pk")
        )
        for return_id, item in incoming.items():
            values = {
                "platform_order_id": item.platform_order_id[:100],
                "order_id": orders.get(item.platform_order_id),
                "return_type": (item.return_type or "")[:40],
                "status": (item.status or "")[:60],
                "reason": (item.reason or "")[:500],
                "lines": item.lines,
                "requested_at": item.requested_at,
                "updated_at": item.updated_at,
                "raw": item.raw or {},
            }
            row = stored.get(return_id)
            if row is None:
                ReturnRequest.objects.create(
                    tenant=shop.tenant, shop=shop, platform_return_id=return_id, **values
                )
                changed += 1
                continue
            if row.updated_at and item.updated_at and item.updated_at < row.updated_at:
                continue  # older than what we hold
            if any(getattr(row, name) != value for name, value in values.items()):
                for name, value in values.items():
                    setattr(row, name, value)
                row.save()
                changed += 1
    return changed


def returns_sync(*, shop: Shop, connector: Connector | None = None) -> int:
    """Fetch the shop's returns changed since the newest stored (minus an overlap; the last 30
    days the first time) and apply them. No transaction may be open: the platform is asked."""
    own = connector is None
    connector = connector or connector_for(shop)
    try:
        if not returns_supported(connector):
            return 0
        with tenant_context(shop.tenant):
            newest = ReturnRequest.objects.filter(shop=shop).aggregate(newest=Max("updated_at"))[
                "newest"
            ]
        since: datetime = (
            newest - RETURNS_OVERLAP if newest else timezone.now() - RETURNS_INITIAL_WINDOW
        )
        returns = connector.fetch_returns(updated_since=since)
    finally:
        if own:
            connector.http.close()
    return returns_apply(shop=shop, returns=returns)


def _line_skus(return_request: ReturnRequest) -> dict[int, int]:
    """SKU id -> units of the return's lines, by seller SKU code, else the shop listing's
    platform SKU id. Raises ReturnError naming lines that match no SKU."""
    lines = return_request.lines or []
    codes = {line.get("seller_sku") for line in lines if line.get("seller_sku")}
    by_code = dict(Sku.objects.filter(code__in=codes).values_list("code", "pk"))
    platform_ids = {line.get("platform_sku_id") for line in lines if line.get("platform_sku_id")}
    by_platform_id = dict(
        Listing.objects.filter(
            shop_id=return_request.shop_id, platform_sku_id__in=platform_ids
        ).values_list("platform_sku_id", "sku_id")
    )
    units: dict[int, int] = {}
    unknown = []
    for line in lines:
        sku_id = by_code.get(line.get("seller_sku")) or by_platform_id.get(
            line.get("platform_sku_id")
        )
        quantity = int(line.get("quantity") or 0)
        if sku_id is None:
            unknown.append(line.get("seller_sku") or line.get("platform_sku_id") or "?")
        elif quantity > 0:
            units[sku_id] = units.get(sku_id, 0) + quantity
    if unknown:
        raise ReturnError(f"no SKU matches {', '.join(map(str, unknown))}; map it first")
    return units


def return_receive(
    *, return_request: ReturnRequest, warehouse: Warehouse, user: AbstractBaseUser | None
) -> list[StockMovement]:
    """Put the returned units back on hand in `warehouse` (a "return" stock movement per SKU)
    and mark the return received. Receiving again does nothing and returns []."""
    if warehouse.tenant_id != return_request.tenant_id:
        raise ReturnError("that warehouse belongs to another tenant")
    now = timezone.now()
    with transaction.atomic():
        claimed = ReturnRequest.objects.filter(
            pk=return_request.pk, received_at__isnull=True
        ).update(
            received_at=now,
            received_by=user if user is not None and user.is_authenticated else None,
            received_warehouse=warehouse,
        )
        if not claimed:
            return []
        units = _line_skus(return_request)
        movements = []
        for sku in Sku.objects.filter(pk__in=list(units)).order_by("pk"):
            movement = stock_adjust(
                sku=sku,
                warehouse=warehouse,
                delta=units[sku.pk],
                kind=MovementKind.RETURN,
                user=user,
                note=f"Return {return_request.platform_return_id} received",
                reference=return_request.platform_return_id,
            )
            if movement is not None:
                movements.append(movement)
        order = Order.objects.filter(pk=return_request.order_id).first()
        if order is not None:
            order_event_add(
                order=order,
                kind="return.received",
                message=f"Return {return_request.platform_return_id} received into "
                f"{warehouse.code}: {sum(units.values())} unit(s) restocked",
                data={"return": return_request.pk, "warehouse": warehouse.pk},
                user=user,
            )
    return_request.refresh_from_db()
    return movements
