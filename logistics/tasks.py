"""django-q2 tasks of the logistics app: thin callers taking ids, safe to run twice."""

from logistics.routing import orders_split_ready
from shops.models import Tenant


def split_ready_orders(tenant_id: int, order_ids: list[int] | None = None) -> int:
    """Give the tenant's ready, reserved orders their parcels (one per warehouse).

    A tenant deleted since the task was queued (`seed_demo --reset` does that) has nothing
    left to split: done, rather than failing five times in the q cluster's log.
    """
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return 0
    return orders_split_ready(tenant=tenant, order_ids=order_ids)


def run_label_batch(tenant_id: int, batch_id: int) -> str:
    """Buy, render and finish one label batch; safe to run twice (see logistics.batches)."""
    from logistics.batches import label_batch_run

    tenant = Tenant.objects.get(pk=tenant_id)
    batch = label_batch_run(tenant=tenant, batch_id=batch_id)
    return f"label batch {batch_id}: {batch.status}"


def poll_tracking() -> str:
    """Every 15 minutes: poll every tenant's parcels on their way and mark exceptions
    (`logistics.tracking_events.tracking_poll_all`, each tenant under its own scope). Safe to
    overlap or repeat: events are stored once, parcels polled recently are skipped."""
    from logistics.tracking_events import tracking_poll_all

    return tracking_poll_all().summary()


def push_shop_tracking(tenant_id: int, shop_id: int) -> dict:
    """Send one shop's due tracking write-backs (queued when a number is accepted); a run that
    finds nothing due does nothing."""
    from logistics.outbox import tracking_push_shop
    from shops.models import Shop

    tenant = Tenant.objects.filter(pk=tenant_id, is_active=True).first()
    if tenant is None:
        return {"shop": shop_id, "status": "skipped"}
    shop = Shop._base_manager.filter(pk=shop_id, tenant_id=tenant_id, is_active=True).first()
    if shop is None:
        return {"shop": shop_id, "status": "skipped"}
    return {"shop": shop_id, **tracking_push_shop(shop=shop).as_dict()}


def push_due_tracking() -> dict:
    """Every minute: send what is due in every shop (retries after backoff, sends a stopped
    worker left behind)."""
    from logistics.outbox import tracking_push_due

    return tracking_push_due().as_dict()
