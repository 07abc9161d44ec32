"""The push engine: send each listing's quantity to its platform, and read it back (reconcile).

One pass over a shop (`push_pending`):

1. claim its due listings in a short transaction (`SELECT ... FOR UPDATE SKIP LOCKED`, move the
   due mark to the end of a lease, `PUSH_CLAIM_LEASE`, commit), so two workers never push the
   same listing, no lock outlives the claim, and a worker killed before it recorded the outcome
   leaves the listing due again once the lease ends (the minute sweeper pushes it then). The
   outcome clears the mark only where it is still the claim's lease (a stock change meanwhile
   made it sooner: that push is still owed);
2. compute every claimed listing's quantity NOW (`inventory.availability`), so one push carries
   the latest number however many stock changes asked for it (coalescing);
3. skip the listings whose platform already shows that number (`Listing.published_quantity`);
4. call `connector.set_inventory` once with all the others, outside any transaction. The
   connectors batch as their platform allows (TikTok: one call per product with all its SKUs;
   eBay: 25 SKUs per call; Shopify and Amazon: one call per SKU), and their HTTP client keeps to
   the shop's rate limit and retries 429/5xx/timeouts with exponential backoff;
5. record an `InventoryPush` per listing (latency = first stock change -> platform's
   acknowledgement), store what was published, and re-queue failures with backoff;
6. recompute once more: a listing whose number moved while the push was in flight (another
   worker, a reconcile) is marked due again, so the platform always ends on the latest number.

Compare-and-set: none of our four connectors' inventory paths supports it (TikTok's
inventory/update, Shopify REST inventory_levels/set, Amazon patchListingsItem and eBay
bulk_update_price_quantity all set an absolute quantity unconditionally; only Shopify's GraphQL
`inventorySetQuantities` has `compareQuantity`, which our REST connector does not use). Absolute
sets are idempotent, the re-check in step 6 corrects an out-of-order write, and `shop_reconcile`
(every 15 minutes) repairs anything changed behind our back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from inventory.availability import listings_available, listings_mark_due
from inventory.models import InventoryPush, Listing, PushResult
from shops.models import Platform, Shop, ShopCredentials
from shops.platforms import connector_for
from shops.platforms.base import InventoryResult, InventoryUpdate, PlatformError

logger = logging.getLogger("tkerp.inventory.push")

# A listing whose push failed is tried again after 5 s, 10 s, 20 s ... (at most 5 min); after
# MAX_PUSH_FAILURES in a row it waits for the reconcile instead of hammering a broken listing.
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(minutes=5)
MAX_PUSH_FAILURES = 8
# How long a claimed listing stays off the sweeper's list while its push is in flight. A push
# still in flight after that may be claimed and sent again by another worker: harmless, as every
# connector sets an absolute quantity and the re-check (step 6) ends on the latest number.
PUSH_CLAIM_LEASE = timedelta(minutes=2)


@dataclass
class PushSummary:
    """What one pass over one shop did (returned by tasks, printed by the command)."""

    shop_id: int
    pushed: int = 0
    skipped: int = 0
    failed: int = 0
    requeued: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "shop": self.shop_id,
            "pushed": self.pushed,
            "skipped": self.skipped,
            "failed": self.failed,
            "requeued": self.requeued,
            "errors": self.errors[:20],
        }


@dataclass
class Repair:
    listing_id: int
    sku_code: str
    platform_quantity: int
    quantity: int
    ok: bool
    error: str = ""


@dataclass
class ReconcileSummary:
    """What one read-back of one shop found and repaired."""

    shop_id: int
    checked: int = 0
    in_sync: int = 0
    repaired: list[Repair] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    error: str = ""

    def as_dict(self) -> dict:
        return {
            "shop": self.shop_id,
            "checked": self.checked,
            "in_sync": self.in_sync,
            "repaired": [
                {
                    "listing": r.listing_id,
                    "sku": r.sku_code,
                    "platform": r.platform_quantity,
                    "now": r.quantity,
                    "ok": r.ok,
                    **({"error": r.error} if r.error else {}),
                }
                for r in self.repaired
            ],
            "missing": self.missing,
            **({"error": self.error} if self.error else {}),
        }


def shop_can_push(shop: Shop) -> bool:
    """Whether the shop has a platform API to push to (not manual, connected)."""
    return (
        shop.is_active
        and shop.platform != Platform.MANUAL
        and ShopCredentials._base_manager.filter(shop_id=shop.pk).exists()
    )


def _ms(start: datetime | None, end: datetime) -> int | None:
    if start is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def _claim(
    *, shop: Shop, now: datetime, force: bool
) -> tuple[list[tuple[Listing, datetime | None]], datetime]:
    """Take the shop's due listings (all pending ones with `force`), their due mark moved to
    the end of the claim's lease; returns them with their request times, and the lease."""
    lease = max(now, timezone.now()) + PUSH_CLAIM_LEASE
    with transaction.atomic():
        due = Q(push_due_at__isnull=False) if force else Q(push_due_at__lte=now)
        listings = list(
            Listing._base_manager.select_for_update(skip_locked=True, of=("self",))
            .filter(due, tenant_id=shop.tenant_id, shop_id=shop.pk)
            .select_related("sku")
            .order_by("pk")
        )
        if listings:
            Listing._base_manager.filter(pk__in=[listing.pk for listing in listings]).update(
                push_due_at=lease
            )
    return [(listing, listing.push_requested_at) for listing in listings], lease


def _claim_done(*, listing_ids: list[int], lease: datetime) -> None:
    """The claimed listings' push is recorded: clear their due mark where it is still the
    claim's lease (one a stock change made sooner meanwhile stays due)."""
    if listing_ids:
        Listing._base_manager.filter(pk__in=listing_ids, push_due_at=lease).update(
            push_due_at=None, push_requested_at=None
        )


def _send(shop: Shop, updates: list[InventoryUpdate]) -> tuple[list[InventoryResult], datetime]:
    """Call the platform (no transaction open); every update gets a result, and the ack time."""
    if not updates:
        return [], timezone.now()
    try:
        connector = connector_for(shop)
    except (ValueError, ShopCredentials.DoesNotExist) as exc:
        # No connector or no credentials (disconnected meanwhile): the pushes fail and re-queue.
        acked_at = timezone.now()
        return [InventoryResult(u.platform_sku_id, ok=False, error=str(exc)) for u in updates], (
            acked_at
        )
    try:
        results = connector.set_inventory(updates=updates)
    except PlatformError as exc:
        results = [InventoryResult(u.platform_sku_id, ok=False, error=str(exc)) for u in updates]
    finally:
        connector.http.close()
    return results, timezone.now()


def _update_for(listing: Listing, quantity: int) -> InventoryUpdate:
    return InventoryUpdate(
        platform_sku_id=listing.platform_sku_id,
        quantity=quantity,
        platform_product_id=listing.platform_product_id,
        seller_sku=listing.sku.code,
    )


def push_pending(*, shop: Shop, force: bool = False, now: datetime | None = None) -> PushSummary:
    """Push the shop's due listings (with `force`, every pending one, due or not)."""
    summary = PushSummary(shop_id=shop.pk)
    now = now or timezone.now()
    if not shop_can_push(shop):
        # Nothing to push to: drop the marks so the sweeper doesn't pick them up forever.
        Listing._base_manager.filter(shop_id=shop.pk, push_due_at__isnull=False).update(
            push_due_at=None, push_requested_at=None
        )
        return summary
    claimed, lease = _claim(shop=shop, now=now, force=force)
    if not claimed:
        return summary
    listings = [listing for listing, _ in claimed]
    requested = {listing.pk: requested_at for listing, requested_at in claimed}
    quantities = listings_available(listings)

    records: list[InventoryPush] = []
    to_send: list[Listing] = []
    for listing in listings:
        quantity = quantities[listing.pk]
        if listing.published_quantity == quantity:
            summary.skipped += 1
            records.append(
                InventoryPush(
                    tenant_id=shop.tenant_id,
                    listing=listing,
                    quantity=quantity,
                    result=PushResult.SKIPPED,
                    attempts=0,
                    requested_at=requested[listing.pk],
                )
            )
        else:
            to_send.append(listing)

    results, acked_at = _send(shop, [_update_for(lst, quantities[lst.pk]) for lst in to_send])
    ok_ids: list[int] = []
    for listing, result in zip(to_send, results, strict=True):
        quantity = quantities[listing.pk]
        attempts = listing.push_failures + 1
        if result.ok:
            summary.pushed += 1
            ok_ids.append(listing.pk)
            Listing._base_manager.filter(pk=listing.pk).update(
                published_quantity=quantity, published_at=acked_at, push_failures=0
            )
        else:
            summary.failed += 1
            summary.errors.append(f"{listing.sku.code}: {result.error}")
            if _requeue(
                listing=listing, requested_at=requested[listing.pk], now=acked_at, lease=lease
            ):
                summary.requeued += 1
        records.append(
            InventoryPush(
                tenant_id=shop.tenant_id,
                listing=listing,
                quantity=quantity,
                result=PushResult.OK if result.ok else PushResult.ERROR,
                error=(result.error or "")[:500],
                attempts=attempts,
                latency_ms=_ms(requested[listing.pk], acked_at) if result.ok else None,
                requested_at=requested[listing.pk],
                pushed_at=acked_at if result.ok else None,
            )
        )
    InventoryPush._base_manager.bulk_create(records)
    sent_ids = {listing.pk for listing in to_send}
    _claim_done(
        listing_ids=ok_ids + [listing.pk for listing in listings if listing.pk not in sent_ids],
        lease=lease,
    )
    if ok_ids:
        _recheck(shop=shop, listing_ids=ok_ids, sent=quantities)
    if summary.failed:
        logger.warning("shop %s: %s inventory pushes failed", shop.pk, summary.failed)
    return summary


def _requeue(
    *, listing: Listing, requested_at: datetime | None, now: datetime, lease: datetime
) -> bool:
    """Mark a failed listing due again after a backoff; False once it has failed too often
    (then it waits for the reconcile, unless a stock change since the claim marked it due)."""
    failures = listing.push_failures + 1
    claimed = Q(push_due_at=lease)  # no stock change since the claim
    if failures >= MAX_PUSH_FAILURES:
        Listing._base_manager.filter(pk=listing.pk).update(
            push_failures=failures,
            push_due_at=Case(When(claimed, then=None), default=F("push_due_at")),
            push_requested_at=Case(When(claimed, then=None), default=F("push_requested_at")),
        )
        return False
    delay = min(RETRY_CAP, RETRY_BASE * (2 ** (failures - 1)))
    due_at = now + delay
    requested_at = requested_at or now
    Listing._base_manager.filter(pk=listing.pk).update(
        push_failures=failures,
        # A stock change since the claim may have marked it due sooner: keep the sooner time.
        push_due_at=Case(
            When(claimed, then=Value(due_at)),
            default=Least(Coalesce(F("push_due_at"), due_at), due_at),
        ),
        push_requested_at=Least(Coalesce(F("push_requested_at"), requested_at), requested_at),
    )
    return True


def _recheck(*, shop: Shop, listing_ids: list[int], sent: dict[int, int]) -> None:
    """Mark due again the listings whose number moved while their push was in flight and that
    no stock change has already marked (those are queued already)."""
    fresh = list(
        Listing._base_manager.filter(pk__in=listing_ids, push_due_at__isnull=True).select_related(
            "sku"
        )
    )
    now_quantities = listings_available(fresh)
    moved = [pk for pk, quantity in now_quantities.items() if quantity != sent[pk]]
    if moved:
        shop_ids = listings_mark_due(
            tenant_id=shop.tenant_id, listing_filter=Q(pk__in=moved), delay=timedelta(0)
        )
        from inventory.tasks import flush_enqueue

        for shop_id in shop_ids:
            flush_enqueue(tenant_id=shop.tenant_id, shop_id=shop_id)


# --- reconcile ----------------------------------------------------------------------------------


def shop_reconcile(*, shop: Shop) -> ReconcileSummary:
    """Read the platform's quantities back, push the right number where they differ, and
    report each repair (`InventoryPush` rows with result "repaired", or "error")."""
    summary = ReconcileSummary(shop_id=shop.pk)
    if not shop_can_push(shop):
        return summary
    listings = list(
        Listing._base_manager.filter(tenant_id=shop.tenant_id, shop_id=shop.pk, is_active=True)
        .exclude(platform_sku_id="")
        .select_related("sku")
        .order_by("pk")
    )
    if not listings:
        return summary
    connector = connector_for(shop)
    try:
        try:
            levels = connector.get_inventory(
                platform_sku_ids=[listing.platform_sku_id for listing in listings]
            )
        except PlatformError as exc:
            summary.error = str(exc)
            return summary
        shown = {level.platform_sku_id: level.quantity for level in levels}
        wanted = listings_available(listings)
        drifted: list[Listing] = []
        for listing in listings:
            summary.checked += 1
            platform_quantity = shown.get(listing.platform_sku_id)
            if platform_quantity is None:
                summary.missing.append(listing.platform_sku_id)
            elif platform_quantity == wanted[listing.pk]:
                summary.in_sync += 1
                if listing.published_quantity != platform_quantity:
                    Listing._base_manager.filter(pk=listing.pk).update(
                        published_quantity=platform_quantity
                    )
            else:
                drifted.append(listing)
        if not drifted:
            return summary
        started = timezone.now()
        updates = [_update_for(listing, wanted[listing.pk]) for listing in drifted]
        try:
            results = connector.set_inventory(updates=updates)
        except PlatformError as exc:
            results = [
                InventoryResult(u.platform_sku_id, ok=False, error=str(exc)) for u in updates
            ]
    finally:
        connector.http.close()
    acked_at = timezone.now()
    records = []
    for listing, result in zip(drifted, results, strict=True):
        quantity = wanted[listing.pk]
        summary.repaired.append(
            Repair(
                listing_id=listing.pk,
                sku_code=listing.sku.code,
                platform_quantity=shown[listing.platform_sku_id],
                quantity=quantity,
                ok=result.ok,
                error=result.error,
            )
        )
        if result.ok:
            Listing._base_manager.filter(pk=listing.pk).update(
                published_quantity=quantity, published_at=acked_at
            )
        records.append(
            InventoryPush(
                tenant_id=shop.tenant_id,
                listing=listing,
                quantity=quantity,
                platform_quantity=shown[listing.platform_sku_id],
                result=PushResult.REPAIRED if result.ok else PushResult.ERROR,
                error=(result.error or "")[:500],
                latency_ms=_ms(started, acked_at) if result.ok else None,
                requested_at=started,
                pushed_at=acked_at if result.ok else None,
            )
        )
    InventoryPush._base_manager.bulk_create(records)
    # Like a push's step 6: a stock change (and its push) while the repair was in flight would
    # otherwise leave the platform on the repair's older number until the next reconcile.
    repaired_ids = [repair.listing_id for repair in summary.repaired if repair.ok]
    if repaired_ids:
        _recheck(shop=shop, listing_ids=repaired_ids, sent=wanted)
    if summary.repaired:
        logger.info("shop %s: reconcile repaired %s listings", shop.pk, len(summary.repaired))
    return summary
