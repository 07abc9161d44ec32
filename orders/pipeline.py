"""What happens to orders once they are stored, whichever door they came in by.

`orders_ingest` (platform sync, webhooks) and the CSV import call `orders_after_ingest` with the
orders they created or changed, after their own transaction committed. Each step selects its
work by state, so running it twice (or the SLA sweep re-running it for orders a dead worker left
behind) changes nothing new:

1. stock: every paid, open order reserves its lines (`inventory.reservations.orders_reserve`);
   an order that cannot be reserved is held with `stock.short`, never oversold.
2. review: normalise the address and run the tenant's review rules (`orders.review.orders_review`);
   clean orders pass to `ready`, the rest wait `on_hold` with their reasons.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shops.models import Shop


def orders_after_ingest(
    *, shop: Shop, created_ids: Collection[int], updated_ids: Collection[int]
) -> None:
    """Reserve, then review, the orders an ingest created or changed."""
    from inventory.reservations import orders_reserve
    from orders.review import orders_review

    order_ids = sorted({*created_ids, *updated_ids})
    if not order_ids:
        return
    orders_reserve(tenant=shop.tenant, order_ids=order_ids)
    orders_review(tenant=shop.tenant, order_ids=order_ids)
