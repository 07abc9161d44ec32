"""django-q2 tasks of the stock push: thin, idempotent callers of `inventory.push`.

Each task takes the tenant and shop ids explicitly and sets its own scope. A flush that finds
nothing due does nothing, so duplicates (two stock changes queueing the same shop, the sweeper
re-queueing a lost one) are harmless.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db.models import Min
from django.utils import timezone
from django_q.tasks import async_task

from inventory.availability import dynamic_buffers_recompute
from inventory.models import Listing
from inventory.push import push_pending, shop_reconcile
from shops.models import Platform, Shop, Tenant
from tkerp.tenancy import all_tenants, task_entry, tenant_context

# A flush waits for its shop's debounce window to close, but never longer than this: a listing
# due later (a failed push's backoff) is left to the sweeper.
FLUSH_MAX_WAIT = timedelta(seconds=10)
# Rounds of wait-then-push one flush task does (changes arriving while it pushes).
FLUSH_ROUNDS = 3


def flush_enqueue(*, tenant_id: int, shop_id: int) -> None:
    """Queue a flush of one shop's pending pushes (call after the stock change commits)."""
    async_task(
        "inventory.tasks.flush_shop_pushes",
        tenant_id,
        shop_id,
        task_name=f"push-shop-{shop_id}",
    )


def _shop(tenant_id: int, shop_id: int) -> Shop | None:
    tenant = Tenant.objects.filter(pk=tenant_id, is_active=True).first()
    if tenant is None:
        return None
    with tenant_context(tenant):
        return Shop.objects.filter(pk=shop_id).first()


@task_entry
def flush_shop_pushes(tenant_id: int, shop_id: int, sleep=time.sleep) -> dict:
    """Wait for the shop's debounce window to close, then push what is due."""
    shop = _shop(tenant_id, shop_id)
    if shop is None:
        return {"shop": shop_id, "status": "skipped"}
    totals = {"shop": shop_id, "pushed": 0, "skipped": 0, "failed": 0, "requeued": 0}
    with tenant_context(shop.tenant):
        for _ in range(FLUSH_ROUNDS):
            now = timezone.now()
            due_at = Listing._base_manager.filter(
                tenant_id=tenant_id, shop_id=shop_id, push_due_at__isnull=False
            ).aggregate(due=Min("push_due_at"))["due"]
            if due_at is None or due_at - now > FLUSH_MAX_WAIT:
                break
            if due_at > now:
                sleep((due_at - now).total_seconds())
            # After the wait the window has closed (whatever the clock of a test's fake sleep).
            summary = push_pending(shop=shop, now=max(timezone.now(), due_at)).as_dict()
            for key in ("pushed", "skipped", "failed", "requeued"):
                totals[key] += summary[key]
    return totals


@task_entry
def push_due_listings() -> dict:
    """Every minute: queue a flush for every shop with due listings (failed pushes' retries,
    flushes lost with a stopped worker)."""
    now = timezone.now()
    with all_tenants():  # ESCAPE HATCH: the sweeper serves every tenant's shops
        rows = list(
            Listing.objects.filter(push_due_at__lte=now, shop__is_active=True)
            .values_list("tenant_id", "shop_id")
            .distinct()
        )
    for tenant_id, shop_id in rows:
        flush_enqueue(tenant_id=tenant_id, shop_id=shop_id)
    return {"queued": [shop_id for _, shop_id in rows]}


@task_entry
def reconcile_shop(tenant_id: int, shop_id: int) -> dict:
    """Read one shop's quantities back and repair drift."""
    shop = _shop(tenant_id, shop_id)
    if shop is None or not shop.is_active:
        return {"shop": shop_id, "status": "skipped"}
    with tenant_context(shop.tenant):
        return shop_reconcile(shop=shop).as_dict()


@task_entry
def reconcile_all_shops() -> dict:
    """Every 15 minutes: queue a reconcile of every connected, active shop."""
    with all_tenants():  # ESCAPE HATCH: the dispatcher serves every tenant's shops
        rows = list(
            Shop.objects.filter(is_active=True, tenant__is_active=True, credentials__isnull=False)
            .exclude(platform=Platform.MANUAL)
            .values_list("tenant_id", "id")
        )
    for tenant_id, shop_id in rows:
        async_task(
            "inventory.tasks.reconcile_shop",
            tenant_id,
            shop_id,
            task_name=f"reconcile-shop-{shop_id}",
        )
    return {"queued": [shop_id for _, shop_id in rows]}


@task_entry
def recompute_dynamic_buffers() -> dict:
    """Every minute: refresh dynamic buffers of every tenant that uses them."""
    with all_tenants():  # ESCAPE HATCH: finds the tenants that have dynamic buffers on
        tenant_ids = list(
            Listing.objects.filter(dynamic_buffer=True, is_active=True)
            .values_list("tenant_id", flat=True)
            .distinct()
        )
    changed = {}
    for tenant in Tenant.objects.filter(pk__in=tenant_ids, is_active=True):
        with tenant_context(tenant):
            changed[tenant.pk] = len(dynamic_buffers_recompute(tenant=tenant))
    return {"tenants": changed}


def inventory_schedule_specs() -> list:
    """The stock push's periodic jobs, merged into `shops.schedules.schedule_specs()`."""
    from django_q.models import Schedule

    from shops.schedules import ScheduleSpec

    return [
        ScheduleSpec(
            name="tkerp: push due inventory",
            func="inventory.tasks.push_due_listings",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
        ScheduleSpec(
            name="tkerp: recompute dynamic buffers",
            func="inventory.tasks.recompute_dynamic_buffers",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
        ScheduleSpec(
            name="tkerp: reconcile inventory",
            func="inventory.tasks.reconcile_all_shops",
            schedule_type=Schedule.MINUTES,
            minutes=15,
        ),
    ]
