"""What happens to orders once they are stored, whichever door they came in by.

`orders_ingest` (platform sync, webhooks) and the CSV import call `orders_after_ingest` with the
orders they created or changed, after their own transaction committed. Each step selects its
work by state, so running it twice (or the SLA sweep re-running it for orders a dead worker left
behind) changes nothing new:

1. shipping: orders the platform reports shipped (or cancelled after shipping) commit the stock
   they still hold and their waiting parcels become shipped
   (`inventory.reservations.orders_ship_commit`, through the one door `order_ship_commit`).
2. stock: every paid, open order reserves its lines (`inventory.reservations.orders_reserve`);
   an order that cannot be reserved is held with `stock.short`, never oversold; a cancelled one
   gives back what it holds.
3. review: normalise the address and run the tenant's review rules (`orders.review.orders_review`);
   clean orders whose stock is reserved pass to `ready`, the rest wait `on_hold` with their
   reasons (or stay `new` while their stock is not reserved).
4. parcels: ready orders whose stock is reserved are split into one shipment per warehouse
   (`logistics.routing.orders_split_ready`), queued as a task so a spike's sync isn't slowed;
   the minute sweep catches any the task missed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from django.db import transaction
from django_q.tasks import async_task

if TYPE_CHECKING:
    from shops.models import Shop


def orders_after_ingest(
    *, shop: Shop, created_ids: Collection[int], updated_ids: Collection[int]
) -> None:
    """Ship-commit, reserve, then review the orders an ingest created or changed."""
    from inventory.reservations import orders_reserve, orders_ship_commit
    from orders.review import orders_review

    order_ids = sorted({*created_ids, *updated_ids})
    if not order_ids:
        return
    orders_ship_commit(tenant=shop.tenant, order_ids=order_ids)
    orders_reserve(tenant=shop.tenant, order_ids=order_ids)
    orders_review(tenant=shop.tenant, order_ids=order_ids)
    tenant_id = shop.tenant_id
    transaction.on_commit(
        lambda: async_task("logistics.tasks.split_ready_orders", tenant_id, order_ids)
    )
