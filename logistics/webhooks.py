"""Outbound webhooks to providers: shipment events, signed per Standard Webhooks, retried.

Every event is a `ProviderEvent` row first (`provider_event_emit`, inside the transaction that
made the change), keyed by its `webhook-id`, so emitting it again changes nothing and the event
is sent once. Delivery (`provider_event_deliver`) happens after commit, with no transaction
open while the request is in flight, and only through the outbound-HTTP policy
(`tkerp.outbound`: public https hosts, checked at connect time, no redirects, capped replies).

Each request carries the three Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, from the
`standardwebhooks` package) over the provider's secret. A failure is retried with backoff
(`TKERP_PROVIDER_WEBHOOK_RETRY_MINUTES`, about 27 hours) by the minute sweep
(`provider_events_deliver_due`); after that the event is given up, and the admin's
"Redeliver" sends it again with the same id. A provider whose every delivery has failed for
`TKERP_PROVIDER_WEBHOOK_DISABLE_DAYS` is disabled with an alert to the seller.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from logistics.models import Provider, ProviderEvent, ProviderEventStatus, Shipment
from tkerp.alerts import alert_raise, alert_resolve
from tkerp.outbound import outbound_client, outbound_failure_reason, scrub_reason
from tkerp.tenancy import all_tenants, tenant_context

if TYPE_CHECKING:
    from shops.models import Tenant

logger = logging.getLogger("tkerp.provider_webhooks")

SHIPMENT_CREATED = "shipment.created"
SHIPMENT_UPDATED = "shipment.updated"
SHIPMENT_CANCELLED = "shipment.cancelled"
SHIPMENT_REMINDER = "shipment.reminder"
EVENT_TYPES = (SHIPMENT_CREATED, SHIPMENT_UPDATED, SHIPMENT_CANCELLED, SHIPMENT_REMINDER)

SECRET_PREFIX = "whsec_"
#: How long a claimed delivery is left alone by other workers (a request's timeout and more).
CLAIM_SECONDS = 120
#: The minute sweep stops starting new deliveries after this long (the rest wait a minute).
SWEEP_BUDGET_SECONDS = 45
SWEEP_BATCH = 200


def disabled_alert_key(provider: Provider) -> str:
    return f"provider:{provider.pk}:webhooks_disabled"


# --- what is sent -----------------------------------------------------------------------------


def shipment_deadlines(shipment: Shipment) -> dict[str, datetime | None]:
    """When the provider must acknowledge the parcel, and return its tracking."""
    provider = shipment.provider
    acknowledge_by = tracking_by = None
    if provider is not None and shipment.dispatched_at is not None:
        acknowledge_by = shipment.dispatched_at + timedelta(minutes=provider.confirm_within_minutes)
    if provider is not None and shipment.acknowledged_at is not None:
        tracking_by = shipment.acknowledged_at + timedelta(minutes=provider.tracking_within_minutes)
    return {"acknowledge_by": acknowledge_by, "tracking_by": tracking_by}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def shipment_event_data(shipment: Shipment) -> dict:
    """The parcel as a webhook describes it: enough to act on; the API has the full detail
    (lines with the provider's item codes, the recipient)."""
    deadlines = shipment_deadlines(shipment)
    return {
        "id": shipment.pk,
        "reference": shipment.reference,
        "order": shipment.order.platform_order_id,
        "status": shipment.status,
        "intercept_state": shipment.intercept_state,
        "warehouse": shipment.warehouse.code,
        "service": shipment.service.code if shipment.service_id else None,
        "carrier": shipment.service.carrier.code if shipment.service_id else None,
        "tracking_number": shipment.tracking_number,
        "dispatched_at": _iso(shipment.dispatched_at),
        "acknowledged_at": _iso(shipment.acknowledged_at),
        "acknowledge_by": _iso(deadlines["acknowledge_by"]),
        "tracking_by": _iso(deadlines["tracking_by"]),
        "lines": [
            {"sku": line.order_line.seller_sku, "quantity": line.quantity}
            for line in shipment.lines.select_related("order_line").order_by("pk")
        ],
    }


# --- emitting ---------------------------------------------------------------------------------


def provider_event_emit(
    *, shipment: Shipment, event_type: str, key: str | None = None, extra: dict | None = None
) -> ProviderEvent | None:
    """Record `event_type` for the parcel's provider and queue its delivery after commit.

    `key` makes the event once-only (`shipment.created` of a parcel is emitted once however
    often dispatch runs); without it every call is a new event (`shipment.updated`). Returns
    None when the parcel has no provider or the provider has no webhook URL (nothing to send).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown provider event {event_type!r}")
    provider = shipment.provider
    if provider is None or not provider.webhook_url:
        return None
    event_id = f"msg_{key}" if key else f"msg_{uuid.uuid4().hex}"
    now = timezone.now()
    with tenant_context(shipment.tenant), transaction.atomic():
        data = shipment_event_data(shipment)
        if extra:
            data.update(extra)
        event, created = ProviderEvent.objects.get_or_create(
            tenant_id=shipment.tenant_id,
            event_id=event_id,
            defaults={
                "provider": provider,
                "shipment": shipment,
                "event_type": event_type,
                "payload": {"type": event_type, "timestamp": now.isoformat(), "data": data},
                "next_attempt_at": now,
            },
        )
    if created:
        tenant_id, pk = shipment.tenant_id, event.pk
        transaction.on_commit(lambda: provider_event_enqueue(tenant_id=tenant_id, event_pk=pk))
    return event


def provider_event_enqueue(*, tenant_id: int, event_pk: int) -> None:
    """Queue one delivery now. Never raises: the minute sweep sends whatever a lost task left."""
    from django_q.tasks import async_task

    try:
        async_task(
            "logistics.tasks.deliver_provider_event",
            tenant_id,
            event_pk,
            task_name=f"provider-event-{event_pk}",
        )
    except Exception:
        logger.exception("could not queue provider event %s", event_pk)


# --- signing and sending ----------------------------------------------------------------------


def webhook_signer(secret: str) -> Webhook:
    """The Standard Webhooks signer for a provider's secret: a `whsec_<base64>` secret as the
    specification writes it, or any other string taken as raw key bytes."""
    if secret.startswith(SECRET_PREFIX):
        return Webhook(secret)
    return Webhook(secret.encode())


def signed_request(*, event: ProviderEvent, secret: str, now: datetime) -> tuple[bytes, dict]:
    """The body and headers of one attempt (a new timestamp and signature each time, the same
    id and body)."""
    body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True)
    signature = webhook_signer(secret).sign(msg_id=event.event_id, timestamp=now, data=body)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    return body.encode(), headers


def _claim(*, event_pk: int, now: datetime) -> ProviderEvent | None:
    """Take a due, pending delivery for this worker (moving its next attempt past the claim)."""
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    with transaction.atomic():
        event = (
            ProviderEvent.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("provider")
            .filter(due, pk=event_pk, status=ProviderEventStatus.PENDING)
            .first()
        )
        if event is None:
            return None
        provider = event.provider
        if provider.webhook_disabled_at is not None or not provider.webhook_url:
            return None
        event.attempts += 1
        event.last_attempt_at = now
        event.next_attempt_at = now + timedelta(seconds=CLAIM_SECONDS)
        event.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
        return event


def _post(event: ProviderEvent) -> tuple[int | None, str]:
    """Send one attempt; (status code or None, our reason when it failed, else "")."""
    provider = event.provider
    if not provider.webhook_secret:
        return None, "no signing secret: set the provider's webhook secret"
    body, headers = signed_request(event=event, secret=provider.webhook_secret, now=timezone.now())
    try:
        with outbound_client() as client:
            response = client.post(provider.webhook_url, content=body, headers=headers)
    except Exception as exc:
        return None, scrub_reason(outbound_failure_reason(exc))
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    # 3xx included: redirects are not followed (the policy's rule), so nothing arrived.
    return response.status_code, f"HTTP {response.status_code}"


def retry_delay(attempts: int) -> timedelta | None:
    """How long after the `attempts`-th failed attempt to try again; None: give up."""
    schedule = settings.TKERP_PROVIDER_WEBHOOK_RETRY_MINUTES
    if attempts > len(schedule):
        return None
    return timedelta(minutes=schedule[attempts - 1])


def provider_event_deliver(*, tenant: Tenant, event_pk: int) -> str:
    """Send one pending, due delivery; returns what happened ("delivered", "retry", "failed",
    or "skipped" when it is not due, not pending, or its provider is disabled)."""
    with tenant_context(tenant):
        now = timezone.now()
        event = _claim(event_pk=event_pk, now=now)
        if event is None:
            return "skipped"
        status_code, error = _post(event)
        done = timezone.now()
        provider = event.provider
        if not error:
            ProviderEvent.objects.filter(pk=event.pk).update(
                status=ProviderEventStatus.DELIVERED,
                last_status_code=status_code,
                last_error="",
                delivered_at=done,
                next_attempt_at=None,
            )
            if provider.webhook_failing_since is not None:
                Provider.objects.filter(pk=provider.pk).update(webhook_failing_since=None)
            return "delivered"
        delay = retry_delay(event.attempts)
        ProviderEvent.objects.filter(pk=event.pk).update(
            status=ProviderEventStatus.PENDING if delay else ProviderEventStatus.FAILED,
            last_status_code=status_code,
            last_error=error[:200],
            next_attempt_at=done + delay if delay else None,
        )
        logger.info("provider event %s attempt %s failed: %s", event.pk, event.attempts, error)
        provider_failure_record(provider=provider, now=done)
        return "retry" if delay else "failed"


def provider_failure_record(*, provider: Provider, now: datetime) -> bool:
    """Note that a delivery to `provider` failed; disable its webhooks (and alert the seller)
    once every delivery has failed for `TKERP_PROVIDER_WEBHOOK_DISABLE_DAYS`. True when this
    call disabled it."""
    Provider.objects.filter(pk=provider.pk, webhook_failing_since__isnull=True).update(
        webhook_failing_since=now
    )
    limit = now - timedelta(days=settings.TKERP_PROVIDER_WEBHOOK_DISABLE_DAYS)
    disabled = Provider.objects.filter(
        pk=provider.pk, webhook_failing_since__lte=limit, webhook_disabled_at__isnull=True
    ).update(webhook_disabled_at=now)
    if disabled:
        alert_raise(
            tenant=provider.tenant,
            key=disabled_alert_key(provider),
            kind="provider.webhooks_disabled",
            title=f"Webhooks to {provider.name} stopped",
            message=(
                f"Every webhook delivery to {provider.name} has failed for "
                f"{settings.TKERP_PROVIDER_WEBHOOK_DISABLE_DAYS:g} days, so tkerp stopped "
                "sending them. Check the provider's webhook URL and secret, then use "
                "“Re-enable webhooks” on the provider; waiting events are sent then."
            ),
        )
        logger.warning("provider %s: webhooks disabled after failing for days", provider.pk)
    return bool(disabled)


def provider_webhooks_enable(*, provider: Provider) -> int:
    """Resume a disabled provider's webhooks (the admin action); waiting and given-up events
    are sent again. Returns how many events were put back in line."""
    now = timezone.now()
    with tenant_context(provider.tenant), transaction.atomic():
        Provider.objects.filter(pk=provider.pk).update(
            webhook_disabled_at=None, webhook_failing_since=None
        )
        requeued = ProviderEvent.objects.filter(
            provider=provider,
            status__in=[ProviderEventStatus.PENDING, ProviderEventStatus.FAILED],
        ).update(status=ProviderEventStatus.PENDING, attempts=0, next_attempt_at=now)
    alert_resolve(tenant=provider.tenant, key=disabled_alert_key(provider))
    return requeued


def provider_events_redeliver(*, tenant: Tenant, events) -> list[int]:
    """Send the given events again, with the same id (the admin's "Redeliver"): each goes back
    in line with a fresh retry schedule and is queued now. Returns the ids queued."""
    now = timezone.now()
    with tenant_context(tenant), transaction.atomic():
        pks = list(events.values_list("pk", flat=True))
        ProviderEvent.objects.filter(pk__in=pks).update(
            status=ProviderEventStatus.PENDING, attempts=0, next_attempt_at=now
        )
        for pk in pks:
            transaction.on_commit(
                lambda pk=pk: provider_event_enqueue(tenant_id=tenant.pk, event_pk=pk)
            )
    return pks


def provider_events_deliver_due(*, budget_seconds: float = SWEEP_BUDGET_SECONDS) -> dict:
    """Every minute: send every pending delivery that is due (retries, lost tasks), oldest
    first, for every tenant, until the time budget is spent."""
    now = timezone.now()
    with all_tenants():  # ESCAPE HATCH: the sweep serves every tenant's providers
        due = list(
            ProviderEvent.objects.filter(
                Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
                status=ProviderEventStatus.PENDING,
                provider__webhook_disabled_at__isnull=True,
            )
            .exclude(provider__webhook_url="")
            .select_related("tenant")
            .order_by("next_attempt_at", "pk")[:SWEEP_BATCH]
        )
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    for event in due:
        if time.monotonic() - started > budget_seconds:
            break
        outcome = provider_event_deliver(tenant=event.tenant, event_pk=event.pk)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
