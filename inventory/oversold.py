"""What a seller can do with an order held `stock.short` (the oversold action list).

1. Wait for stock: `inventory.reservations.order_reserve_retry` (receipts and counts also retry
   waiting orders by themselves once they commit).
2. Route to a drop-ship supplier: `inventory.reservations.order_route_dropship`.
3. Cancel through the platform: `order_cancel_through_platform` below.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from orders.events import order_event_add
from orders.models import Order
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from shops.platforms.base import Connector

logger = logging.getLogger("tkerp.stock")


def order_cancel_through_platform(*, order: Order, user: AbstractBaseUser | None = None) -> bool:
    """Ask the platform to cancel an oversold order; True if the platform was asked.

    None of the four connectors has a seller-initiated cancel call yet (they only answer buyers'
    cancellation requests), so today this records the intent on the order's trail for a person to
    cancel it in the platform's seller centre. When a connector grows a
    `cancel_order(platform_order_id=..., reason=...)` method it is called here, with no lock
    held. Either way the stock is released when the platform reports the order cancelled (the
    ingest -> `orders_reserve` path), never before.
    """
    from shops.models import ShopCredentials
    from shops.platforms import connector_for

    with tenant_context(order.tenant):
        order = Order.objects.select_related("shop").get(pk=order.pk)
        connector = None
        if ShopCredentials._base_manager.filter(shop=order.shop).exists():
            connector = connector_for(order.shop)
        try:
            return _cancel(order=order, connector=connector, user=user)
        finally:
            # The connector owns an HTTP client (a connection pool): close it on every path.
            if connector is not None:
                connector.http.close()


def _cancel(*, order: Order, connector: Connector | None, user: AbstractBaseUser | None) -> bool:
    """Ask through `connector` when it can cancel; otherwise record the intent on the order."""
    from shops.platforms.base import PlatformError

    cancel = getattr(connector, "cancel_order", None)
    if cancel is None:
        order_event_add(
            order=order,
            kind="cancel.intent",
            message=(
                f"Cancel requested (out of stock); {order.shop.get_platform_display()} has no "
                "seller cancel API here: cancel it in the seller centre. Stock is released "
                "when the platform reports it cancelled."
            ),
            user=user,
        )
        return False
    try:
        cancel(platform_order_id=order.platform_order_id, reason="out_of_stock")
    except PlatformError as error:
        order_event_add(
            order=order,
            kind="cancel.failed",
            message=f"The platform refused the cancellation: {error}"[:500],
            user=user,
        )
        return False
    order_event_add(
        order=order,
        kind="cancel.requested",
        message="Cancellation sent to the platform (out of stock).",
        user=user,
    )
    return True
