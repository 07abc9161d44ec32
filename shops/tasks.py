"""django-q2 tasks of order sync, webhooks and alerts: thin callers that take ids.

Each task receives the tenant (or a row id it resolves to one) explicitly and sets the scope
itself: nothing is inherited from whatever the worker ran before. All are idempotent, so the
broker re-delivering one (django-q retries a task that raised, up to `max_attempts`) is safe.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from orders.cancellations import cancellations_from_orders
from shops.models import Platform, Shop, SyncRun, Tenant, WebhookDelivery
from shops.sync import shop_sync, sync_runs_prune
from shops.webhooks import (
    webhook_deliveries_drain,
    webhook_deliveries_prune,
    webhook_process_enqueue,
)
from tkerp.alerts import alert_notify_enqueue
from tkerp.notify import alert_notify, alerts_never_notified
from tkerp.tenancy import all_tenants, task_entry, tenant_context

logger = logging.getLogger("tkerp.tasks")

# A delivery or alert whose task was never attempted this long after it arrived is re-queued,
# at most every REQUEUE_EVERY (a stopped cluster must not find a queue full of copies), for a day.
REQUEUE_AFTER = timedelta(minutes=2)
REQUEUE_EVERY = timedelta(minutes=15)
REQUEUE_WITHIN = timedelta(days=1)
# A sync pass queued but not started this long after is taken as lost and queued again. Not the
# lease: a busy queue may hold a task for minutes, and a copy a minute would only pile up.
SYNC_QUEUED_PATIENCE = timedelta(minutes=10)
# One webhook task drains at most this many batches of its shop (well inside the cluster's
# timeout during a stream that never pauses); the deliveries' own queued tasks take the rest.
WEBHOOK_TASK_BATCHES = 10


def sync_run_summary(run: SyncRun) -> dict:
    return {
        "shop": run.shop_id,
        "run": run.pk,
        "status": run.status,
        "pages": run.pages,
        "created": run.created,
        "updated": run.updated,
        "skipped": run.skipped,
        "rejected": run.rejected,
        "error": run.error,
    }


@task_entry
def sync_shop(tenant_id: int, shop_id: int, trigger: str = "schedule") -> dict:
    """One sync pass over one shop (skipped if the shop is inactive or another pass runs)."""
    tenant = Tenant.objects.filter(pk=tenant_id, is_active=True).first()
    if tenant is None:
        return {"shop": shop_id, "status": "skipped", "error": "tenant inactive or deleted"}
    with tenant_context(tenant):
        shop = Shop.objects.filter(pk=shop_id, is_active=True).first()
        if shop is None:
            return {"shop": shop_id, "status": "skipped", "error": "shop inactive or deleted"}
        return sync_run_summary(shop_sync(shop=shop, trigger=trigger))


@task_entry
def sync_due_shops() -> dict:
    """Every minute: queue a pass for each active shop whose sync interval has elapsed, and
    re-queue webhook deliveries and alert notifications whose task was lost."""
    now = timezone.now()
    queued = []
    with all_tenants():  # ESCAPE HATCH: the dispatcher serves every tenant's shops
        rows = list(
            Shop.objects.filter(is_active=True, tenant__is_active=True, credentials__isnull=False)
            .exclude(platform=Platform.MANUAL)
            .values(
                "id",
                "tenant_id",
                "sync_interval_seconds",
                "sync_lease_until",
                "sync_queued_at",
                "last_sync_started_at",
            )
        )
        for row in rows:
            if not shop_sync_due(row, now=now):
                continue
            # Compare-and-set on the queued stamp: two dispatchers never both queue a shop.
            claimed = Shop.objects.filter(
                pk=row["id"], sync_queued_at=row["sync_queued_at"]
            ).update(sync_queued_at=now)
            if claimed:
                async_task(
                    "shops.tasks.sync_shop",
                    row["tenant_id"],
                    row["id"],
                    task_name=f"sync-shop-{row['id']}",
                )
                queued.append(row["id"])
        deliveries = list(
            WebhookDelivery.objects.filter(
                Q(queued_at__isnull=True) | Q(queued_at__lte=now - REQUEUE_EVERY),
                processed_at__isnull=True,
                attempts=0,
                received_at__lte=now - REQUEUE_AFTER,
                received_at__gte=now - REQUEUE_WITHIN,
            ).values_list("pk", flat=True)
        )
        alerts = alerts_never_notified(
            older_than=REQUEUE_AFTER, newer_than=REQUEUE_WITHIN, queued_before=REQUEUE_EVERY
        )
    for delivery_id in deliveries:
        webhook_process_enqueue(delivery_id=delivery_id)
    for alert_id in alerts:
        alert_notify_enqueue(alert_id=alert_id)
    return {"queued": queued, "webhooks_requeued": deliveries, "alerts_requeued": alerts}


def shop_sync_due(row: dict, *, now) -> bool:
    """Whether a shop (a `values()` row) should be queued now: its interval has elapsed since
    the last pass started, no pass holds it, and no queued pass is still waiting to start."""
    lease_until = row["sync_lease_until"]
    if lease_until is not None and lease_until > now:
        return False
    last = row["last_sync_started_at"]
    interval = timedelta(seconds=row["sync_interval_seconds"] or 60)
    if last is not None and now - last < interval:
        return False
    queued = row["sync_queued_at"]
    waiting = queued is not None and (last is None or queued > last)
    return not (waiting and now - queued < SYNC_QUEUED_PATIENCE)


@task_entry
def process_webhook(delivery_id: int) -> dict:
    """Fetch and ingest the orders one webhook delivery named (once), together with every other
    delivery of its shop waiting at that moment (`webhook_deliveries_drain`: a live stream's
    webhooks become a few pages, not one pipeline run each)."""
    with all_tenants():  # the delivery id is all the task gets; the row carries the tenant
        delivery = (
            WebhookDelivery.objects.select_related("tenant", "shop__tenant")
            .filter(pk=delivery_id)
            .first()
        )
    if delivery is None:
        return {"delivery": delivery_id, "status": "gone"}
    if delivery.processed_at is not None:
        return {"delivery": delivery_id, "status": "already processed"}
    drained = webhook_deliveries_drain(shop=delivery.shop, max_batches=WEBHOOK_TASK_BATCHES)
    # An order that arrived carrying a buyer's cancellation request joins the inbox now, not at
    # the next sync or sweep (CANCELLATION_STATUS_CHANGE and order webhooks alike).
    cancellations_from_orders(
        tenant=delivery.tenant, order_ids=[*drained.created_ids, *drained.updated_ids]
    )
    if delivery_id in drained.deliveries:
        status = "processed"
    else:
        # Another worker's batch had it (and processes it), or processed it meanwhile.
        with tenant_context(delivery.tenant):
            done = WebhookDelivery.objects.filter(pk=delivery_id, processed_at__isnull=False)
            status = "already processed" if done.exists() else "claimed by another worker"
    return {
        "delivery": delivery_id,
        "status": status,
        "deliveries": len(drained.deliveries),
        "batches": drained.batches,
        "created": len(drained.created_ids),
        "updated": len(drained.updated_ids),
        "skipped": drained.skipped,
        "rejected": drained.rejected,
    }


@task_entry
def send_alert_notification(alert_id: int) -> list[str]:
    """Tell the alert's tenant (email, outbound webhook); raises on failure so it is retried."""
    return alert_notify(alert_id=alert_id)


@task_entry
def prune_sync_history() -> dict:
    """Daily: drop sync runs and webhook deliveries past their retention."""
    with all_tenants():  # housekeeping over every tenant's history
        return {"sync_runs": sync_runs_prune(), "webhook_deliveries": webhook_deliveries_prune()}
