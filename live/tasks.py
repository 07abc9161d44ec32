"""Background work of live sessions: open and close stock pools on time (django-q2 schedule).

Thin callers of `live.pools`; idempotent (each pool's opening and closing is noted once, under a
row lock) and safe to run on several workers at once.
"""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from live.models import LivePool
from shops.models import Tenant
from tkerp.tenancy import all_tenants, task_entry, tenant_context


@task_entry
def tick_live_pools() -> dict:
    """Every minute: for every tenant with a pool whose window opened or closed and that was not
    yet pushed, mark its SKUs' listings due (`live.pools.pools_tick`)."""
    from live.pools import pools_tick

    now = timezone.now()
    with all_tenants():  # ESCAPE HATCH: the sweeper finds the tenants with pools to tick
        tenant_ids = set(
            LivePool._base_manager.filter(
                Q(opened_at__isnull=True, session__starts_at__lte=now)
                | Q(closed_at__isnull=True, session__ends_at__lte=now)
            ).values_list("tenant_id", flat=True)
        )
    marked = {}
    for tenant in Tenant.objects.filter(pk__in=tenant_ids, is_active=True).order_by("pk"):
        with tenant_context(tenant):
            marked[tenant.pk] = len(pools_tick(tenant=tenant, now=now))
    return {"tenants": len(marked), "skus": sum(marked.values())}


@task_entry
def sync_live_creators() -> dict:
    """Every minute: who sold the orders of running (or just ended) live sessions."""
    from live.creators import live_creators_sync

    return live_creators_sync()


def live_schedule_specs() -> list:
    """The live sessions' periodic jobs, merged into `shops.schedules.schedule_specs()`."""
    from django_q.models import Schedule

    from shops.schedules import ScheduleSpec

    return [
        ScheduleSpec(
            name="tkerp: open and close live stock pools",
            func="live.tasks.tick_live_pools",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
        ScheduleSpec(
            name="tkerp: creators of live sessions",
            func="live.tasks.sync_live_creators",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
    ]
