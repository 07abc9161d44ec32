"""Telling a tenant about an alert through its channels: email and a generic outbound webhook.

The webhook is a JSON POST a chat or SMS gateway can take, sent through the outbound-HTTP policy
(`tkerp.outbound`: https, public addresses only, checked at connect time, no redirects). When
the tenant's alert webhook secret (else `TKERP_ALERT_WEBHOOK_SECRET`) is set the body is signed
(`X-Tkerp-Signature: sha256=<hex HMAC of the raw body>`). Each channel is recorded once it has
been told, so a retry after a partial failure does not repeat the others. What is recorded of a
failure is our own words (a status code, "timed out", the policy's refusal), never the
receiver's reply.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from tkerp.models import Alert
from tkerp.outbound import outbound_client, outbound_failure_reason
from tkerp.tenancy import all_tenants, tenant_context

logger = logging.getLogger("tkerp.alerts")

SIGNATURE_HEADER = "X-Tkerp-Signature"


class NotificationFailed(Exception):
    """At least one channel could not be told; the task raises it so django-q retries."""


def alert_payload(alert: Alert) -> dict:
    return {
        "event": "alert.opened",
        "tenant": alert.tenant.slug,
        "id": alert.pk,
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "title": alert.title,
        "message": alert.message,
        "shop": alert.shop.name if alert.shop_id else None,
        "opened_at": alert.opened_at.isoformat(),
        "occurrences": alert.occurrences,
    }


def webhook_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _send_email(alert: Alert, address: str) -> None:
    shop = f" [{alert.shop.name}]" if alert.shop_id else ""
    send_mail(
        subject=f"[tkerp]{shop} {alert.title}",
        message=(
            f"{alert.message}\n\nOpened {alert.opened_at:%Y-%m-%d %H:%M} UTC, seen "
            f"{alert.occurrences} time(s). Alert key: {alert.key}"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[address],
    )


def _send_webhook(alert: Alert, url: str) -> None:
    body = json.dumps(alert_payload(alert)).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "tkerp-alerts"}
    secret = alert.tenant.alert_webhook_secret or getattr(
        settings, "TKERP_ALERT_WEBHOOK_SECRET", ""
    )
    if secret:
        headers[SIGNATURE_HEADER] = webhook_signature(body, secret)
    try:
        with outbound_client() as client:
            response = client.post(url, content=body, headers=headers)
    except Exception as exc:
        raise NotificationFailed(f"alert webhook {outbound_failure_reason(exc)}") from exc
    if response.status_code >= 300:
        # 3xx included: redirects are not followed (the policy's rule), so nothing arrived.
        raise NotificationFailed(f"alert webhook answered HTTP {response.status_code}")


def alert_notify(*, alert_id: int) -> list[str]:
    """Tell the alert's tenant on every channel not told yet; returns the channels told now.

    Raises `NotificationFailed` when a channel failed (after recording the error), so the
    task is retried; channels already told are not repeated.
    """
    with all_tenants():
        alert = Alert.objects.select_related("tenant", "shop").filter(pk=alert_id).first()
    if alert is None or alert.resolved_at is not None:
        return []
    tenant = alert.tenant
    done = set(alert.notified_channels or [])
    channels = []
    if tenant.alert_email:
        channels.append(("email", lambda: _send_email(alert, tenant.alert_email)))
    if tenant.alert_webhook_url:
        channels.append(("webhook", lambda: _send_webhook(alert, tenant.alert_webhook_url)))
    told, errors = [], []
    for name, send in channels:
        if name in done:
            continue
        try:
            send()
        except Exception as exc:
            logger.warning("alert %s: %s notification failed: %s", alert.pk, name, exc)
            errors.append(f"{name}: {exc}")
        else:
            told.append(name)
    with tenant_context(tenant):
        updates = {"notified_channels": sorted(done | set(told)), "notify_error": "; ".join(errors)}
        if not errors:
            updates["notified_at"] = timezone.now()
        Alert.objects.filter(pk=alert.pk).update(**updates)
    if errors:
        raise NotificationFailed("; ".join(errors))
    return told


def alerts_never_notified(
    *, older_than: timedelta, newer_than: timedelta, queued_before: timedelta
) -> list[int]:
    """Open alerts opened within the window whose notification was never attempted: never
    queued (the broker failed), or queued longer ago than `queued_before` (the task is lost or
    the cluster is down). Run under `all_tenants()`. Failed attempts are not listed: django-q
    retries those itself, up to its `max_attempts`."""
    now = timezone.now()
    return list(
        Alert.objects.filter(
            Q(notify_queued_at__isnull=True) | Q(notify_queued_at__lte=now - queued_before),
            resolved_at__isnull=True,
            notified_at__isnull=True,
            notify_error="",
            opened_at__lte=now - older_than,
            opened_at__gte=now - newer_than,
        ).values_list("pk", flat=True)
    )
