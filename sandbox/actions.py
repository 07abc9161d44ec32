"""What a person does to a platform sandbox: a spike of orders, loading orders from a file,
looking inside, injecting faults. The `sandbox` management command is their thin caller.

Everything goes through the `SandboxPlatform` interface, so each function works for every
platform. Two optional hooks make a sandbox faster or richer where it offers them:
`load_orders(store=, payloads=)` (bulk upsert, all or nothing) and
`notify_order_changed(store=, order=)` (the platform's order/cancellation webhooks).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from sandbox.base import SANDBOX_BASE_URL, OrderDraft, SandboxInputError, sandbox_for
from sandbox.connect import sandbox_connect
from sandbox.models import SandboxOrder, SandboxStore
from shops.models import Shop, ShopCredentials

FAULT_KINDS = ("429", "500", "503", "timeout", "badsign")
SHOW_VIEWS = ("orders", "inventory", "shipments", "cancellations")


@dataclass(slots=True)
class SpikeResult:
    orders: int
    cancellations: int
    webhooks_sent: int
    webhooks_failed: int
    first_order_id: str = ""
    last_order_id: str = ""


def sandbox_store_for_shop(*, shop: Shop) -> SandboxStore:
    """The shop's sandbox store, connecting the shop first if it is not yet.

    Refuses a shop whose credentials point at the real platform: a spike must never be aimed
    at a live shop's credentials by mistake.
    """
    try:
        sandbox_for(shop.platform)  # before anything is written
    except ValueError as exc:
        raise SandboxInputError(str(exc)) from None
    credentials = ShopCredentials._base_manager.filter(shop=shop).first()
    if (
        credentials is not None
        and not (credentials.api_base_url or "").startswith(SANDBOX_BASE_URL)
        and (credentials.access_token or credentials.app_key)
    ):
        raise SandboxInputError(
            f"shop {shop.pk} ({shop}) is connected to the real platform; "
            "refusing to touch it from the sandbox"
        )
    store = None
    if shop.platform_shop_id:
        store = SandboxStore.objects.filter(
            platform=shop.platform, shop_key=shop.platform_shop_id
        ).first()
    if store is None or credentials is None:
        store = sandbox_connect(shop=shop)
    return store


def _store_orders(sandbox, store: SandboxStore, payloads: list) -> None:
    """All or nothing; errors name the order's index in `payloads`."""
    bulk = getattr(sandbox, "load_orders", None)
    with transaction.atomic():
        if bulk is not None:
            bulk(store=store, payloads=payloads)
            return
        for index, payload in enumerate(payloads):
            try:
                sandbox.load_order(store=store, payload=payload)
            except SandboxInputError as exc:
                raise SandboxInputError(f"order {index}: {exc}") from None


def sandbox_spike(
    *,
    shop: Shop,
    orders: int,
    seed: int | None = None,
    cancel_rate: float = 0.03,
    webhooks: bool = False,
    now: datetime | None = None,
) -> SpikeResult:
    """A live stream's worth of paid orders landing at once on the shop's sandbox store; a
    share of them (`cancel_rate`) get a buyer's cancellation request. With `webhooks`, the
    platform's order webhooks are sent too (after the orders are committed)."""
    if orders < 1:
        raise SandboxInputError("a spike needs at least one order")
    if not 0 <= cancel_rate <= 1:
        raise SandboxInputError("cancel rate must be between 0 and 1")
    store = sandbox_store_for_shop(shop=shop)
    sandbox = sandbox_for(shop.platform)
    products = list(store.products.order_by("pk"))
    rng = random.Random(seed)
    now = now or timezone.now()
    payloads = [
        sandbox.generate_order(store=store, rng=rng, products=products, now=now)
        for _ in range(orders)
    ]
    with transaction.atomic():
        # Generated orders are always new rows: the ones above the highest pk are this spike's,
        # whatever the platform calls its order id.
        before = store.orders.aggregate(top=Max("pk"))["top"] or 0
        _store_orders(sandbox, store, payloads)
        new_orders = list(
            store.orders.filter(pk__gt=before).order_by("pk").values_list("pk", "order_id")
        )
        cancelled = [pk for pk, _ in new_orders if rng.random() < cancel_rate]
        for order in store.orders.filter(pk__in=cancelled).order_by("pk"):
            sandbox.request_cancellation(store=store, order=order)
    sent = failed = 0
    notify = getattr(sandbox, "notify_order_changed", None)
    if webhooks and notify is not None and store.webhook_url:
        # Read them all first: each webhook is answered in-process, and a task run there may
        # recycle the connection a streaming cursor would still be reading from.
        for order in list(store.orders.filter(pk__gt=before).order_by("pk")):
            for status in notify(store=store, order=order):
                if status is not None and 200 <= status < 300:
                    sent += 1
                else:
                    failed += 1
    return SpikeResult(
        orders=len(new_orders),
        cancellations=len(cancelled),
        webhooks_sent=sent,
        webhooks_failed=failed,
        first_order_id=new_orders[0][1] if new_orders else "",
        last_order_id=new_orders[-1][1] if new_orders else "",
    )


def sandbox_store_drafts(*, shop: Shop, drafts: Sequence[OrderDraft]) -> dict[str, SandboxOrder]:
    """Render `drafts` in the shop's platform shape and store them in its sandbox store, every
    one or none; returns the stored orders by platform order id."""
    store = sandbox_store_for_shop(shop=shop)
    sandbox = sandbox_for(shop.platform)
    _store_orders(
        sandbox, store, [sandbox.compose_order(store=store, draft=draft) for draft in drafts]
    )
    ids = [draft.order_id for draft in drafts]
    return {row.order_id: row for row in store.orders.filter(order_id__in=ids)}


def sandbox_load(*, shop: Shop, path: str | Path) -> int:
    """Load a JSON list of orders in the platform's order-detail shape: every order or none."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SandboxInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        payloads = json.loads(text)
    except ValueError as exc:
        raise SandboxInputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(payloads, list) or not payloads:
        raise SandboxInputError(f"{path} must hold a non-empty JSON list of orders")
    store = sandbox_store_for_shop(shop=shop)
    _store_orders(sandbox_for(shop.platform), store, payloads)
    return len(payloads)


def sandbox_show(*, shop: Shop, what: str) -> list[dict]:
    if what not in SHOW_VIEWS:
        raise SandboxInputError(f"cannot show {what!r}: choose one of {', '.join(SHOW_VIEWS)}")
    store = sandbox_store_for_shop(shop=shop)
    return sandbox_for(shop.platform).show(store=store, what=what)


def sandbox_set_faults(
    *,
    shop: Shop,
    rate: float,
    kinds: list[str] | None = None,
    slow_seconds: float | None = None,
) -> SandboxStore:
    """Make a share (`rate`) of the store's API calls fail with one of `kinds`; `slow_seconds`
    delays every response. Rate 0 turns faults off."""
    if not 0 <= rate <= 1:
        raise SandboxInputError("fault rate must be between 0 and 1")
    unknown = sorted(set(kinds or []) - set(FAULT_KINDS))
    if unknown:
        raise SandboxInputError(
            f"unknown fault kind(s) {', '.join(unknown)}: choose from {', '.join(FAULT_KINDS)}"
        )
    if slow_seconds is not None and slow_seconds < 0:
        raise SandboxInputError("slow seconds cannot be negative")
    store = sandbox_store_for_shop(shop=shop)
    store.fault_rate = rate
    if kinds is not None:
        store.fault_kinds = list(dict.fromkeys(kinds))
    elif rate and not store.fault_kinds:
        store.fault_kinds = ["429", "500"]
    if slow_seconds is not None:
        store.slow_seconds = slow_seconds
    store.save(update_fields=["fault_rate", "fault_kinds", "slow_seconds"])
    return store
