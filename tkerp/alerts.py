"""Alerts: raising and resolving them, idempotently, and telling the tenant once.

`alert_raise` is safe to call every minute while a condition lasts: the first call opens the
alert and queues one notification (after commit); later calls only count occurrences. The partial
unique constraint on (tenant, key) for open alerts is the final judge when two workers raise the
same alert at once. `alert_resolve` closes it; the next raise opens a fresh alert and notifies
again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from tkerp.models import Alert, AlertSeverity
from tkerp.tenancy import all_tenants, tenant_context

if TYPE_CHECKING:
    from shops.models import Shop, Tenant

logger = logging.getLogger("tkerp.alerts")


def alert_raise(
    *,
    tenant: Tenant,
    key: str,
    kind: str,
    title: str,
    message: str = "",
    shop: Shop | None = None,
    severity: str = AlertSeverity.ERROR,
) -> Alert:
    """Open the alert `key` for `tenant`, or count one more occurrence of the open one.

    Only a newly opened alert is notified (a django-q task queued on commit).
    """
    now = timezone.now()
    # Cut to the column once, for the UPDATE as for the INSERT: a long shop or SKU name in a
    # title must never make the alert itself fail (PostgreSQL refuses an over-long value).
    title = title[: Alert._meta.get_field("title").max_length]
    with tenant_context(tenant), transaction.atomic():
        bumped = Alert.objects.filter(key=key, resolved_at__isnull=True).update(
            occurrences=F("occurrences") + 1, last_seen_at=now, message=message, title=title
        )
        if not bumped:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        tenant=tenant,
                        key=key,
                        kind=kind,
                        severity=severity,
                        title=title,
                        message=message,
                        shop=shop,
                        opened_at=now,
                        last_seen_at=now,
                    )
            except IntegrityError:
                # Another worker opened it between our UPDATE and INSERT: count this one there.
                Alert.objects.filter(key=key, resolved_at__isnull=True).update(
                    occurrences=F("occurrences") + 1, last_seen_at=now, message=message
                )
            else:
                transaction.on_commit(lambda: alert_notify_enqueue(alert_id=alert.pk))
                logger.warning("alert opened for tenant %s: %s (%s)", tenant.pk, title, key)
                return alert
        return Alert.objects.get(key=key, resolved_at__isnull=True)


def alert_resolve(*, tenant: Tenant, key: str) -> int:
    """Close the open alert `key` of `tenant`, if any; returns how many were closed (0 or 1)."""
    with tenant_context(tenant):
        return Alert.objects.filter(key=key, resolved_at__isnull=True).update(
            resolved_at=timezone.now()
        )


def alert_resolve_many(*, alerts) -> int:
    """Close the given open alerts (the admin's "resolve" action)."""
    return alerts.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())


def alert_notify_enqueue(*, alert_id: int) -> None:
    """Queue the notification task. Never raises: a broker hiccup must not break the caller (the
    periodic sweep in `shops.tasks.sync_due_shops` re-queues alerts left un-notified)."""
    from django_q.tasks import async_task

    try:
        async_task("shops.tasks.send_alert_notification", alert_id, task_name=f"alert-{alert_id}")
    except Exception:
        logger.exception("could not queue the notification of alert %s", alert_id)
        return
    with all_tenants():  # a row named by its id, on behalf of whichever tenant owns it
        Alert.objects.filter(pk=alert_id).update(notify_queued_at=timezone.now())
