"""The provider's clocks: acknowledge a parcel within `confirm_within_minutes` of its dispatch,
return its tracking within `tracking_within_minutes` of acknowledging it.

`provider_reminders_sweep` runs every minute (the provider sweep). Each breach is recorded once
(`ProviderReminder`, unique per parcel and kind), and only a newly recorded one sends the
provider a `shipment.reminder` webhook and an e-mail (one e-mail per provider and sweep, listing
its late parcels) and raises the seller's alert for that provider. The alert is resolved once
the provider has no late parcel left.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import DurationField, ExpressionWrapper, F, QuerySet
from django.utils import timezone

from logistics.models import (
    InterceptState,
    Provider,
    ProviderReminder,
    ReminderKind,
    Shipment,
    ShipmentStatus,
)
from logistics.webhooks import SHIPMENT_REMINDER, provider_event_emit
from tkerp.alerts import alert_raise, alert_resolve
from tkerp.outbound import scrub_reason
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from shops.models import Tenant

logger = logging.getLogger("tkerp.provider_timers")

#: Parcels a provider holds and still owes an answer on.
WITH_PROVIDER = (ShipmentStatus.SENT_TO_PROVIDER, ShipmentStatus.CONFIRMED)


def late_alert_key(provider: Provider) -> str:
    return f"provider:{provider.pk}:late"


def _minutes(field: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(field) * timedelta(minutes=1), output_field=DurationField())


def shipments_late(*, kind: str, now: datetime) -> QuerySet[Shipment]:
    """Parcels (of the tenant in scope) whose provider is past the `kind` deadline now, each
    annotated with `due_at`."""
    open_parcels = Shipment.objects.filter(
        provider__isnull=False,
        status__in=WITH_PROVIDER,
        intercept_state=InterceptState.NONE,
        rejected_at__isnull=True,
    )
    if kind == ReminderKind.ACKNOWLEDGE:
        parcels = open_parcels.filter(
            dispatched_at__isnull=False, acknowledged_at__isnull=True
        ).annotate(due_at=F("dispatched_at") + _minutes("provider__confirm_within_minutes"))
    else:
        parcels = open_parcels.filter(
            acknowledged_at__isnull=False, tracking_number="", shipped_at__isnull=True
        ).annotate(due_at=F("acknowledged_at") + _minutes("provider__tracking_within_minutes"))
    return parcels.filter(due_at__lte=now)


def _reminders_record(*, now: datetime) -> list[ProviderReminder]:
    """Record every breach not recorded yet; returns the new reminders (with their parcels)."""
    new = []
    for kind in ReminderKind.values:
        late = list(
            shipments_late(kind=kind, now=now)
            .exclude(reminders__kind=kind)
            .select_related("provider", "order", "warehouse", "service__carrier")
            .order_by("pk")
        )
        for shipment in late:
            reminder, created = ProviderReminder.objects.get_or_create(
                shipment=shipment,
                kind=kind,
                defaults={"provider": shipment.provider, "due_at": shipment.due_at},
            )
            if created:
                reminder.shipment = shipment
                new.append(reminder)
    return new


def _reminder_email(provider: Provider, reminders: list[ProviderReminder]) -> None:
    lines = [
        f"- {r.shipment.reference} (order {r.shipment.order.platform_order_id}): "
        f"{r.get_kind_display().lower()}, due {r.due_at:%Y-%m-%d %H:%M} UTC"
        for r in reminders
    ]
    send_mail(
        subject=f"[tkerp] {len(reminders)} parcel(s) waiting for you",
        message=(
            f"Hello {provider.name},\n\nThese parcels are past their deadline:\n"
            + "\n".join(lines)
            + "\n\nPlease acknowledge them and send their tracking numbers through the API "
            "(or reply to this e-mail).\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[provider.contact_email],
    )


def provider_reminders_sweep(*, tenant: Tenant, now: datetime | None = None) -> dict:
    """Remind providers of every parcel newly past a deadline, once each; raise or resolve the
    seller's alert per provider. Returns counts."""
    now = now or timezone.now()
    with tenant_context(tenant):
        with transaction.atomic():
            new = _reminders_record(now=now)
            for reminder in new:
                provider_event_emit(
                    shipment=reminder.shipment,
                    event_type=SHIPMENT_REMINDER,
                    key=f"{reminder.shipment_id}-reminder-{reminder.kind}",
                    extra={"reminder": reminder.kind, "due_at": reminder.due_at.isoformat()},
                )
        by_provider: dict[int, list[ProviderReminder]] = defaultdict(list)
        for reminder in new:
            by_provider[reminder.provider_id].append(reminder)
        emailed = 0
        for reminders in by_provider.values():
            provider = reminders[0].shipment.provider
            pks = [r.pk for r in reminders]
            if not provider.contact_email:
                ProviderReminder.objects.filter(pk__in=pks).update(
                    email_error="the provider has no contact e-mail"
                )
            else:
                try:
                    _reminder_email(provider, reminders)
                except Exception as exc:  # a mail server down must not stop the sweep
                    logger.warning("reminder e-mail to provider %s failed: %s", provider.pk, exc)
                    ProviderReminder.objects.filter(pk__in=pks).update(
                        email_error=scrub_reason(f"sending failed ({type(exc).__name__})")
                    )
                else:
                    ProviderReminder.objects.filter(pk__in=pks).update(emailed_at=now)
                    emailed += 1
            kinds = {r.kind for r in reminders}
            alert_raise(
                tenant=tenant,
                key=late_alert_key(provider),
                kind="provider.late",
                title=f"{provider.name} is late with parcels",
                message=(
                    f"{len(reminders)} more parcel(s) of {provider.name} passed their deadline "
                    f"({', '.join(sorted(kinds))}): "
                    + ", ".join(r.shipment.reference for r in reminders[:20])
                    + ". The provider was reminded."
                ),
            )
        still_late = set()
        for kind in ReminderKind.values:
            still_late.update(
                shipments_late(kind=kind, now=now).values_list("provider_id", flat=True)
            )
        resolved = 0
        for provider in Provider.objects.exclude(pk__in=still_late).only("pk"):
            resolved += alert_resolve(tenant=tenant, key=late_alert_key(provider))
    return {"reminded": len(new), "emailed": emailed, "resolved": resolved}
