"""Webhooks in: platforms telling us an order changed.

A delivery is verified with the shop's own credentials before anything is written (an unknown
shop gets the same 401 as a bad signature: no existence oracle), its body must fit its topic
(the connector's `parse_webhook`: Shopify signs the body, not the topic header), it is recorded
once under its platform delivery id and once under its body's digest (a replay, even under a
new delivery id, is acknowledged and not processed again), and answered at once;
the work (re-fetching the orders by id through the connector and ingesting them) runs in a
django-q task queued on commit. Webhooks are a hint, never the only source: the periodic sync
finds anything a lost webhook would have told us.

The shop is found across tenants (`all_tenants()`): a webhook names its shop before we know the
tenant. Everything after the lookup runs scoped to that shop's tenant.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orders.ingest import orders_ingest
from shops.models import Shop, WebhookDelivery
from shops.platforms import connector_class, connector_for
from shops.platforms.base import (
    Connector,
    PlatformError,
    UnmappedOrder,
    WebhookVerificationError,
)
from tkerp.alerts import alert_raise
from tkerp.models import AlertSeverity
from tkerp.tenancy import all_tenants, tenant_context

logger = logging.getLogger("tkerp.webhooks")

# How much of a delivery's body is kept for looking into it later: enough for any order
# notification, while an oversized body (verified, but still a platform's input) cannot bloat
# the table. Rows go after TKERP_WEBHOOK_RETENTION_DAYS (`webhook_deliveries_prune`).
WEBHOOK_BODY_KEPT_BYTES = 64 * 1024

# Topics that concern the shop's authorization rather than orders: a person must act.
AUTH_TOPICS = {
    "SELLER_DEAUTHORIZATION": ("shop_deauthorized", AlertSeverity.CRITICAL),
    "UPCOMING_AUTHORIZATION_EXPIRATION": ("authorization_expiring", AlertSeverity.WARNING),
    "app/uninstalled": ("shop_deauthorized", AlertSeverity.CRITICAL),
}


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """What to answer the platform: an HTTP status and a short message."""

    status: int
    message: str
    delivery: WebhookDelivery | None = None


def _tiktok_shop_key(headers: Mapping[str, str], payload: dict) -> str:
    return str(payload.get("shop_id") or "")


def _shopify_shop_key(headers: Mapping[str, str], payload: dict) -> str:
    return headers.get("X-Shopify-Shop-Domain", "").strip().lower()


# Where each platform names the shop a webhook is for. eBay and Amazon do not POST webhooks to
# us (their connectors say so), so they have no entry and no route.
SHOP_KEYS: dict[str, Callable[[Mapping[str, str], dict], str]] = {
    "tiktok": _tiktok_shop_key,
    "shopify": _shopify_shop_key,
}


#: Platforms whose shop key is a host name (compared without regard to case).
CASELESS_SHOP_KEYS = {"shopify"}


def webhook_max_bytes() -> int:
    """The largest webhook body accepted (`TKERP_WEBHOOK_MAX_BYTES`); platforms send a few KB."""
    return getattr(settings, "TKERP_WEBHOOK_MAX_BYTES", 256 * 1024)


def webhook_receive(*, platform: str, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
    """Verify, record and queue one webhook delivery; see the module doc.

    The body comes from anyone on the internet before any signature is checked: it is size
    capped first, and whatever the JSON parser cannot take (invalid text, nesting deep enough
    to exhaust the parser's recursion) is a 400, never an error page.
    """
    if len(body) > webhook_max_bytes():
        return WebhookOutcome(413, "the body is too large")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return WebhookOutcome(400, "the body is not valid JSON")
    if not isinstance(payload, dict):
        return WebhookOutcome(400, "the body is not a JSON object")
    shop_key = SHOP_KEYS[platform](headers, payload)
    if not shop_key or not _is_text(shop_key):
        return WebhookOutcome(400, "the webhook does not say which shop it is for")

    cls = connector_class(platform)
    # A Shopify domain is a host name, which the connector calls lower-cased whatever its case
    # in the shop's settings: match it the same way, or that shop's every delivery is a 401.
    shop_match = (
        Q(platform_shop_id__iexact=shop_key)
        if platform in CASELESS_SHOP_KEYS
        else Q(platform_shop_id=shop_key)
    )
    with all_tenants():  # ESCAPE HATCH: the tenant is known only once the shop is found
        candidates = list(
            Shop.objects.filter(
                shop_match, platform=platform, is_active=True, tenant__is_active=True
            )
            .select_related("tenant", "credentials")
            .order_by("pk")
        )
    verified = [
        shop
        for shop in candidates
        if _has_credentials(shop)
        and cls.verify_webhook(headers=headers, body=body, credentials=shop.credentials)
    ]
    if not verified:
        logger.info("%s webhook refused: unknown shop or bad signature", platform)
        return WebhookOutcome(401, "signature verification failed")
    try:
        event = cls.parse_webhook(headers=headers, body=body)
    except (
        PlatformError,
        WebhookVerificationError,
        ValueError,
        KeyError,
        TypeError,
        RecursionError,
    ) as exc:
        return WebhookOutcome(400, f"malformed webhook: {getattr(exc, 'message', exc)}")
    problem = _event_problem(event)
    if problem:
        return WebhookOutcome(400, f"malformed webhook: {problem}")

    outcome = WebhookOutcome(200, "already received")
    # Normally one shop; the same platform shop connected in two tenants gets one each.
    for shop in verified:
        delivery = _record(shop=shop, platform=platform, event=event, body=body)
        if delivery is not None:
            outcome = WebhookOutcome(200, "accepted", delivery)
    return outcome


def _is_text(value, *, limit: int = 200) -> bool:
    """A string PostgreSQL can store as text (no NUL, and no lone surrogate: JSON's "\\ud83d"
    escape decodes to one, which UTF-8 cannot encode) of at most `limit` characters."""
    if not isinstance(value, str) or "\x00" in value or len(value) > limit:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _event_problem(event) -> str:
    """What makes a verified webhook unusable, in a few words ("" when nothing does): its
    delivery id, topic and order ids are stored and looked up as text, so each must be one."""
    if not _is_text(event.delivery_id) or not _is_text(event.topic or ""):
        return "the delivery id or the topic is not text"
    for order_id in event.platform_order_ids:
        if (
            isinstance(order_id, bool)
            or not isinstance(order_id, str | int)
            or not _is_text(str(order_id), limit=100)
        ):
            return "an order id is not an id"
    return ""


def _has_credentials(shop: Shop) -> bool:
    return hasattr(shop, "credentials")  # False when the reverse one-to-one row is missing


def _record(*, shop: Shop, platform: str, event, body: bytes) -> WebhookDelivery | None:
    """Store the delivery once (None when it is a replay) and queue its processing on commit."""
    now = timezone.now()
    delivery_id = event.delivery_id[:200]
    # The same signed bytes are the same event, whatever delivery id or topic came with them.
    digest = hashlib.sha256(body).hexdigest()
    with tenant_context(shop.tenant), transaction.atomic():
        if WebhookDelivery.objects.filter(
            Q(delivery_id=delivery_id) | Q(body_sha256=digest), shop=shop
        ).exists():
            return None
        order_ids = [str(order_id) for order_id in event.platform_order_ids if order_id]
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    tenant=shop.tenant,
                    shop=shop,
                    platform=platform,
                    delivery_id=delivery_id,
                    body_sha256=digest,
                    topic=(event.topic or "")[:100],
                    platform_order_ids=order_ids,
                    body=body[:WEBHOOK_BODY_KEPT_BYTES].decode("utf-8", "replace"),
                    received_at=now,
                    # Nothing to fetch: done on arrival.
                    processed_at=None if order_ids else now,
                )
        except IntegrityError:
            return None  # the same delivery arrived twice at once; the other one has it
        if order_ids:
            transaction.on_commit(lambda: webhook_process_enqueue(delivery_id=delivery.pk))
        if event.topic in AUTH_TOPICS:
            kind, severity = AUTH_TOPICS[event.topic]
            alert_raise(
                tenant=shop.tenant,
                key=f"shop:{shop.pk}:{kind}",
                kind=kind,
                severity=severity,
                title=f"{shop.name}: {event.topic.replace('_', ' ').lower()}",
                message="The platform says the shop's authorization is ending or has ended; "
                "reconnect the shop or orders will stop arriving.",
                shop=shop,
            )
    return delivery


def webhook_process_enqueue(*, delivery_id: int) -> None:
    """Queue `shops.tasks.process_webhook`; a broker failure is logged, not raised (the sweep
    in `shops.tasks.sync_due_shops` re-queues deliveries never attempted)."""
    from django_q.tasks import async_task

    try:
        async_task("shops.tasks.process_webhook", delivery_id, task_name=f"webhook-{delivery_id}")
    except Exception:
        logger.exception("could not queue webhook delivery %s", delivery_id)
        return
    with all_tenants():  # a row named by its id, on behalf of whichever tenant owns it
        WebhookDelivery.objects.filter(pk=delivery_id).update(queued_at=timezone.now())


#: How many pending deliveries of a shop one worker takes at once: a live stream's webhooks
#: become one ingest page (one reservation statement per SKU) instead of one each. The
#: pipeline's statements cost about the same for 200 orders or 500: 500 took 2.55 ms of CPU a
#: reservation against 2.91-3.17 ms for 200 (bench/webhook_spike.py, alternating runs).
WEBHOOK_BATCH = 500

#: How long a batch's deliveries stay claimed by the worker processing them; a worker that died
#: leaves them to the next drain (or its task's retry) after that.
WEBHOOK_CLAIM = timedelta(minutes=5)


@dataclass
class DrainResult:
    """What `webhook_deliveries_drain` did: deliveries processed, in how many batches, and the
    ingest's counts over all of them."""

    deliveries: list[int] = field(default_factory=list)
    batches: int = 0
    created_ids: list[int] = field(default_factory=list)
    updated_ids: list[int] = field(default_factory=list)
    skipped: int = 0
    rejected: int = 0


def webhook_deliveries_claim(*, shop: Shop, limit: int = WEBHOOK_BATCH) -> list[WebhookDelivery]:
    """Claim up to `limit` of the shop's unprocessed deliveries that no live claim holds.

    One statement: an UPDATE of the rows a `SELECT ... FOR UPDATE SKIP LOCKED` subquery picks,
    returning them. Workers draining the same shop at once each get other deliveries, never
    wait for each other, and hold no lock afterwards (the claim is the `claimed_until` stamp,
    so no row stays locked across the platform call). The rows come back (ordered by pk) with
    the claim applied and without their bodies (up to 64 KB each, kept for people, not for the
    work); one statement instead of a read and an update of the same rows.
    """
    now = timezone.now()
    meta = WebhookDelivery._meta
    columns = [f.column for f in meta.concrete_fields if f.name != "body"]
    returned = ", ".join(f'd."{column}"' for column in columns)
    table = meta.db_table
    sql = (
        f'UPDATE "{table}" AS d SET "claimed_until" = %s, "attempts" = d."attempts" + 1 '
        f'WHERE d."id" IN (SELECT w."id" FROM "{table}" AS w '
        'WHERE w."tenant_id" = %s AND w."shop_id" = %s AND w."processed_at" IS NULL '
        'AND (w."claimed_until" IS NULL OR w."claimed_until" < %s) '
        'ORDER BY w."id" LIMIT %s FOR UPDATE SKIP LOCKED) '
        f"RETURNING {returned}"
    )
    with tenant_context(shop.tenant):
        claimed = list(
            WebhookDelivery.objects.raw(
                sql, [now + WEBHOOK_CLAIM, shop.tenant_id, shop.pk, now, limit]
            )
        )
    claimed.sort(key=lambda delivery: delivery.pk)
    return claimed


def webhook_deliveries_drain(
    *,
    shop: Shop,
    connector: Connector | None = None,
    limit: int = WEBHOOK_BATCH,
    max_batches: int | None = None,
) -> DrainResult:
    """Process the shop's pending deliveries in micro-batches until none is left unclaimed.

    Each batch's orders are fetched by id (the connector's detail calls, 50 ids each) and
    ingested as one page: `orders_ingest` runs the set-based pipeline over them (one
    reservation statement per SKU for the batch, the hot stock row locked only inside that
    short transaction). Deliveries are marked processed once their page is stored. A failure
    is written on the batch's deliveries and releases their claim before it is raised (the
    task is retried; ingest is idempotent, so the orders a failed batch stored are not stored
    twice). Safe to run from several workers at once (see `webhook_deliveries_claim`).
    """
    result = DrainResult()
    own_connector = connector is None
    try:
        with tenant_context(shop.tenant):
            while max_batches is None or result.batches < max_batches:
                batch = webhook_deliveries_claim(shop=shop, limit=limit)
                if not batch:
                    break
                ids = [d.pk for d in batch]
                try:
                    if connector is None:
                        connector = connector_for(shop)
                    order_ids = [str(i) for d in batch for i in d.platform_order_ids]
                    # An order that cannot be mapped is that delivery's error, not the batch's.
                    unmapped: list[UnmappedOrder] = []
                    orders = connector.fetch_orders_by_id(
                        platform_order_ids=order_ids, unmapped=unmapped
                    )
                    ingested = orders_ingest(
                        shop=shop, platform_orders=orders, source="webhook", unmapped=unmapped
                    )
                except Exception as exc:
                    WebhookDelivery.objects.filter(pk__in=ids).update(
                        error=str(exc)[:2000], claimed_until=None
                    )
                    raise
                rejects = {reject.platform_order_id: str(reject) for reject in ingested.rejects}
                now = timezone.now()
                clean = [d.pk for d in batch if not rejects.keys() & set(d.platform_order_ids)]
                WebhookDelivery.objects.filter(pk__in=clean).update(
                    processed_at=now, claimed_until=None, error=""
                )
                for delivery in batch:
                    if delivery.pk not in clean:
                        error = "; ".join(
                            rejects[i] for i in delivery.platform_order_ids if i in rejects
                        )
                        WebhookDelivery.objects.filter(pk=delivery.pk).update(
                            processed_at=now, claimed_until=None, error=error[:2000]
                        )
                result.batches += 1
                result.deliveries += ids
                result.created_ids += ingested.created_ids
                result.updated_ids += ingested.updated_ids
                result.skipped += ingested.skipped
                result.rejected += len(ingested.rejects)
    finally:
        if own_connector and connector is not None:
            connector.http.close()
    return result


def webhook_deliveries_prune(*, older_than: timedelta | None = None) -> int:
    """Delete deliveries received before the retention (`TKERP_WEBHOOK_RETENTION_DAYS`, default
    14): their bodies may carry buyers' addresses, and platforms stop redelivering after days
    (TikTok: 72 h), so replays older than that are no longer recognised by design. Call it under
    `all_tenants()` or a tenant scope."""
    if older_than is None:
        older_than = timedelta(days=getattr(settings, "TKERP_WEBHOOK_RETENTION_DAYS", 14))
    deleted, _ = WebhookDelivery.objects.filter(
        received_at__lt=timezone.now() - older_than
    ).delete()
    return deleted


# --- views --------------------------------------------------------------------------------------


def _answer(outcome: WebhookOutcome) -> JsonResponse:
    code = 0 if outcome.status < 300 else outcome.status
    return JsonResponse({"code": code, "message": outcome.message}, status=outcome.status)


def _view(platform: str):
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> JsonResponse:
        try:
            declared = int(request.headers.get("Content-Length") or 0)
        except ValueError:
            declared = 0
        if declared > webhook_max_bytes():  # refused before the body is read at all
            return _answer(WebhookOutcome(413, "the body is too large"))
        return _answer(
            webhook_receive(platform=platform, headers=request.headers, body=request.body)
        )

    view.__name__ = f"webhook_{platform}"
    return view


webhook_tiktok = _view("tiktok")
webhook_shopify = _view("shopify")
