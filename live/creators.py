"""Which creator sold each order, as the platform reports it (TikTok's affiliate orders).

TikTok's order detail names no creator; its affiliate orders API does, per order. For the
windows that matter (live sessions running or just ended) `creators_sync` asks the platform who
sold the shop's orders and stores it on them: `creator_username`, `creator_content_type`,
`creator_content_id` and the commission (`creator_commission`). Order sync keeps these when a
later update names nobody (`orders.ingest.CREATOR_FIELDS`). Idempotent: a second run writes
nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from live.models import LiveSession
from orders.models import Order
from shops.platforms import connector_for
from shops.platforms.base import Connector, PlatformError
from tkerp.tenancy import tenant_context

logger = logging.getLogger("tkerp.live")

#: How long after a session ends its orders' creators are still refreshed by the minute task
#: (the platform may credit an order a little after it was placed).
AFTER_SESSION = timedelta(hours=1)


def creators_sync(
    *, shop, since: datetime, until: datetime, connector: Connector | None = None
) -> int:
    """Ask the platform who sold the shop's orders created in [since, until) and store it on
    the orders; returns how many orders changed."""
    connector = connector or connector_for(shop)
    credits = {
        credit.platform_order_id: credit
        for credit in connector.fetch_affiliate_orders(created_since=since, created_until=until)
    }
    if not credits:
        return 0
    changed = []
    with tenant_context(shop.tenant), transaction.atomic():
        for order in (
            Order.objects.select_for_update(of=("self",))
            .filter(shop=shop, platform_order_id__in=list(credits))
            .order_by("pk")
            .only(
                "pk",
                "tenant_id",
                "platform_order_id",
                "creator_username",
                "creator_content_type",
                "creator_content_id",
                "creator_commission",
            )
        ):
            credit = credits[order.platform_order_id]
            wanted = {
                "creator_username": credit.creator_username,
                "creator_content_type": credit.content_type,
                "creator_content_id": credit.content_id,
                "creator_commission": credit.commission,
            }
            if any(getattr(order, name) != value for name, value in wanted.items()):
                for name, value in wanted.items():
                    setattr(order, name, value)
                changed.append(order)
        if changed:
            Order.objects.bulk_update(
                changed,
                [
                    "creator_username",
                    "creator_content_type",
                    "creator_content_id",
                    "creator_commission",
                ],
            )
    return len(changed)


def session_creators_sync(*, session: LiveSession, now: datetime | None = None) -> int:
    """`creators_sync` over a live session's window (up to now)."""
    now = now or timezone.now()
    until = min(now, session.ends_at)
    if until <= session.starts_at:
        return 0
    return creators_sync(shop=session.shop, since=session.starts_at, until=until)


def live_creators_sync(*, now: datetime | None = None) -> dict:
    """Every minute: refresh the creators of every session running or ended within the last
    hour, on shops whose platform has an affiliate API. A failing shop is logged and skipped
    (its next minute retries)."""
    from tkerp.tenancy import all_tenants

    now = now or timezone.now()
    with all_tenants():  # ESCAPE HATCH: the sessions of every tenant, each handled in its own
        sessions = list(
            LiveSession.objects.filter(
                starts_at__lte=now,
                ends_at__gt=now - AFTER_SESSION,
                shop__is_active=True,
                shop__tenant__is_active=True,
                shop__platform="tiktok",
            )
            .select_related("shop", "shop__tenant")
            .order_by("pk")
        )
    changed = failed = 0
    for session in sessions:
        try:
            with tenant_context(session.shop.tenant):
                changed += session_creators_sync(session=session, now=now)
        except PlatformError as exc:
            failed += 1
            logger.warning("creators of live session %s not fetched: %s", session.pk, exc)
    return {"sessions": len(sessions), "orders_changed": changed, "failed": failed}
