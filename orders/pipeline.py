"""What happens to orders once they are stored, whichever door they came in by.

`orders_ingest` (webhooks) and the CSV import call `orders_after_ingest` with the orders they
created or changed, after their own transaction committed; a sync pass stores its pages with
`orders_store` and calls it over several pages at once (`shops.sync`). Each step selects its
work by state, so running it twice (or the SLA sweep re-running it) changes nothing new:

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
   (`logistics.routing.orders_split_ready`), queued as a task so a spike's sync isn't slowed.

When a step fails: the page is already stored, so the failure must not lose the orders, and
re-reading the page would not help (ingest finds them unchanged and reports nothing to do). So
a failing step is logged, the next steps still run (each is safe on its own: review never calls
an order ready without its reservations), the shop's `orders.pipeline:<shop>` alert is raised,
and the door that stored the page (sync pass, webhook, import) succeeds. The orders are finished
by the SLA sweep (`orders.sla.orders_stuck_rerun`, every minute): it selects stranded orders by
state (paid orders still `new`, open orders not on a stock hold whose stock is not reserved,
shipped or cancelled orders still holding reserved units) a few minutes after their last change
and runs this pipeline on them again, then splits ready orders left without a parcel
(`orders_split_ready`); it resolves the alert once the shop has no stranded order left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from django.db import transaction
from django_q.tasks import async_task

if TYPE_CHECKING:
    from shops.models import Shop

logger = logging.getLogger("tkerp.pipeline")

PIPELINE_ALERT_KIND = "orders.pipeline"


def pipeline_alert_key(shop_id: int) -> str:
    """The alert open while orders of the shop wait for the sweep after a failed step."""
    return f"{PIPELINE_ALERT_KIND}:{shop_id}"


#: The pipeline's steps, in order. The parcels are queued once review has run.
PIPELINE_STEPS = ("shipping", "stock", "review")
#: A sync pass runs them in two stages, one batch apart, each in a process of its own
#: (`shops.sync._PipelineBatch`): stock for a batch while the batch before it is reviewed.
STOCK_STEPS = ("shipping", "stock")
REVIEW_STEPS = ("review",)


def orders_after_ingest(
    *,
    shop: Shop,
    created_ids: Collection[int],
    updated_ids: Collection[int],
    steps: Collection[str] = PIPELINE_STEPS,
) -> list[str]:
    """Ship-commit, reserve, then review the orders an ingest created or changed, and queue
    their parcels; only the `steps` named, when a caller runs the rest apart (in their order,
    never review before stock; a name not in `PIPELINE_STEPS` is a `ValueError`). Returns the
    names of the steps that failed (see the module docstring)."""
    from inventory.reservations import orders_reserve, orders_ship_commit
    from orders.review import orders_review

    unknown = sorted(set(steps) - set(PIPELINE_STEPS))
    if unknown:
        # A misspelt step would otherwise be skipped without a word, its orders left stranded.
        raise ValueError(f"unknown pipeline step(s) {', '.join(unknown)}: not in {PIPELINE_STEPS}")
    order_ids = sorted({*created_ids, *updated_ids})
    if not order_ids:
        return []
    tenant = shop.tenant
    every: list[tuple[str, Callable[[], object]]] = [
        ("shipping", lambda: orders_ship_commit(tenant=tenant, order_ids=order_ids)),
        ("stock", lambda: orders_reserve(tenant=tenant, order_ids=order_ids)),
        ("review", lambda: orders_review(tenant=tenant, order_ids=order_ids)),
    ]
    failed: list[str] = []
    for name, run in every:
        if name not in steps:
            continue
        try:
            run()
        except Exception as error:
            # Only Exception: a worker being killed (SystemExit) must still die here.
            logger.exception("%s failed for %d orders of shop %s", name, len(order_ids), shop.pk)
            failed.append(name)
            _pipeline_failed(shop=shop, step=name, count=len(order_ids), error=error)
    if "review" not in steps:
        return failed
    tenant_id = shop.tenant_id
    # Robust: a broker that refuses the task must not fail the door; the sweep splits instead.
    transaction.on_commit(
        lambda: async_task("logistics.tasks.split_ready_orders", tenant_id, order_ids),
        robust=True,
    )
    return failed


def _pipeline_failed(*, shop: Shop, step: str, count: int, error: Exception) -> None:
    """Tell the team once (one open alert per shop); never raises."""
    from tkerp.alerts import alert_raise
    from tkerp.models import AlertSeverity

    try:
        alert_raise(
            tenant=shop.tenant,
            key=pipeline_alert_key(shop.pk),
            kind=PIPELINE_ALERT_KIND,
            severity=AlertSeverity.WARNING,
            title=f"Orders of {shop.name} were stored but not processed",
            # The error's own text (SQL, internals) stays in the log, not on the screen.
            message=(
                f"The {step} step failed for {count} orders ({type(error).__name__}). "
                "They are stored; the SLA sweep runs them again within a few minutes and this "
                "alert closes once none is left waiting."
            ),
            shop=shop,
        )
    except Exception:
        logger.exception("could not raise the pipeline alert of shop %s", shop.pk)
