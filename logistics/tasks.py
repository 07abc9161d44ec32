"""django-q2 tasks of the logistics app: thin callers taking ids, safe to run twice."""

from logistics.routing import orders_split_ready
from shops.models import Tenant
from tkerp.tenancy import task_entry, tenant_context


@task_entry
def split_ready_orders(tenant_id: int, order_ids: list[int] | None = None) -> int:
    """Give the tenant's ready, reserved orders their parcels (one per warehouse).

    A tenant deleted since the task was queued (`seed_demo --reset` does that) has nothing
    left to split: done, rather than failing five times in the q cluster's log.
    """
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return 0
    return orders_split_ready(tenant=tenant, order_ids=order_ids)


@task_entry
def run_label_batch(tenant_id: int, batch_id: int) -> str:
    """Buy, render and finish one label batch; safe to run twice (see logistics.batches)."""
    from logistics.batches import label_batch_run

    tenant = Tenant.objects.get(pk=tenant_id)
    batch = label_batch_run(tenant=tenant, batch_id=batch_id)
    return f"label batch {batch_id}: {batch.status}"


@task_entry
def poll_tracking() -> str:
    """Every 15 minutes: poll every tenant's parcels on their way and mark exceptions
    (`logistics.tracking_events.tracking_poll_all`, each tenant under its own scope). Safe to
    overlap or repeat: events are stored once, parcels polled recently are skipped."""
    from logistics.tracking_events import tracking_poll_all

    return tracking_poll_all().summary()


@task_entry
def push_shop_tracking(tenant_id: int, shop_id: int) -> dict:
    """Send one shop's due tracking write-backs (queued when a number is accepted); a run that
    finds nothing due does nothing."""
    from logistics.outbox import tracking_push_shop
    from shops.models import Shop

    tenant = Tenant.objects.filter(pk=tenant_id, is_active=True).first()
    if tenant is None:
        return {"shop": shop_id, "status": "skipped"}
    with tenant_context(tenant):
        shop = Shop.objects.filter(pk=shop_id, is_active=True).first()
        if shop is None:
            return {"shop": shop_id, "status": "skipped"}
        return {"shop": shop_id, **tracking_push_shop(shop=shop).as_dict()}


@task_entry
def push_due_tracking() -> dict:
    """Every minute: send what is due in every shop (retries after backoff, sends a stopped
    worker left behind)."""
    from logistics.outbox import tracking_push_due

    return tracking_push_due().as_dict()


@task_entry
def resolve_left_labels() -> dict:
    """Every 5 minutes: refund the labels sold for parcels that will not be bought again
    (cancelled...) and never stored, a stopped worker's leftovers
    (`logistics.labels.left_behind`), and the labels stored on parcels cancelled before they
    shipped (`logistics.labels.cancelled`), each tenant under its own scope. Safe to overlap or
    repeat: a record is forgotten once, and a refund asked for is not asked again."""
    from logistics.labels.cancelled import cancelled_labels_refund_all
    from logistics.labels.left_behind import label_requests_left_resolve_all

    left = label_requests_left_resolve_all().as_dict()
    return {**left, **cancelled_labels_refund_all().as_dict()}


# --- the provider flow (webhooks, dispatch, reminders, order files) ----------------------------


def provider_schedule_specs() -> list:
    """The provider flow's periodic jobs (registered by shops.schedules)."""
    from django_q.models import Schedule

    from shops.schedules import ScheduleSpec

    return [
        ScheduleSpec(
            name="tkerp: provider webhooks",
            func="logistics.tasks.deliver_due_provider_events",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
        ScheduleSpec(
            name="tkerp: provider sweep",
            func="logistics.tasks.provider_sweep",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
        ScheduleSpec(
            name="tkerp: provider order files",
            func="logistics.tasks.make_due_order_files",
            schedule_type=Schedule.MINUTES,
            minutes=1,
        ),
    ]


@task_entry
def deliver_provider_event(tenant_id: int, event_pk: int) -> str:
    """Send one provider webhook now (queued after the event commits); a no-op once sent."""
    from logistics.webhooks import provider_event_deliver

    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return "skipped"
    return provider_event_deliver(tenant=tenant, event_pk=event_pk)


@task_entry
def deliver_due_provider_events() -> dict:
    """Every minute: retries and deliveries a lost task left behind."""
    from logistics.webhooks import provider_events_deliver_due

    return provider_events_deliver_due()


@task_entry
def provider_sweep() -> dict:
    """Every minute, for each tenant with providers: dispatch parcels left behind, and remind
    providers late with a parcel (logistics.provider_timers)."""
    from logistics.dispatch import shipments_dispatch
    from logistics.models import Provider
    from logistics.provider_timers import provider_reminders_sweep
    from tkerp.tenancy import all_tenants

    with all_tenants():  # ESCAPE HATCH: the sweep serves every tenant with a provider
        tenant_ids = set(Provider.objects.values_list("tenant_id", flat=True))
    totals = {"dispatched": 0, "reminded": 0}
    for tenant in Tenant.objects.filter(pk__in=tenant_ids, is_active=True).order_by("pk"):
        totals["dispatched"] += len(shipments_dispatch(tenant=tenant))
        totals["reminded"] += provider_reminders_sweep(tenant=tenant)["reminded"]
    return totals


@task_entry
def make_due_order_files() -> dict:
    """Every minute: the order files whose slot has come (logistics.provider_files)."""
    from logistics.provider_files import provider_order_files_due

    return provider_order_files_due()


@task_entry
def email_order_file(tenant_id: int, file_pk: int) -> str:
    """E-mail one order file to its provider; a no-op once sent."""
    from logistics.provider_files import provider_order_file_email

    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return "skipped"
    return provider_order_file_email(tenant=tenant, file_pk=file_pk)
