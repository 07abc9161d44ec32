"""What a person does to a platform sandbox: a spike of orders, a live stream dripping them in
real time, loading orders from a file, looking inside, injecting faults. The `sandbox`
management command is their thin caller.

Everything goes through the `SandboxPlatform` interface, so each function works for every
platform. Two optional hooks make a sandbox faster or richer where it offers them:
`load_orders(store=, payloads=)` (bulk upsert, all or nothing) and
`notify_order_changed(store=, order=)` (the platform's order/cancellation webhooks).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from sandbox.base import OrderDraft, SandboxInputError, sandbox_for
from sandbox.connect import sandbox_connect
from sandbox.models import SandboxAffiliateOrder, SandboxOrder, SandboxStore
from shops.models import ApiEndpoint, Shop, ShopCredentials

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
        and credentials.api_endpoint != ApiEndpoint.SANDBOX
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


# --- a live stream, minute by minute ----------------------------------------------------------

#: The live curve over the window, as fractions of it (see `live_schedule`).
LIVE_RAMP = 0.02
LIVE_DECAY = 0.15
LIVE_FLOOR = 0.02
LIVE_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class LiveTick:
    """One step of a live stream: at `at` seconds from the start, `orders` new orders land and
    the buyers of `cancel` (indexes into every order dropped so far, in drop order) ask to
    cancel."""

    at: float
    orders: int
    cancel: tuple[int, ...] = ()


def live_schedule(
    *,
    orders: int,
    minutes: float,
    cancel_rate: float = 0.03,
    seed: int | None = None,
    tick_seconds: float = 1.0,
) -> list[LiveTick]:
    """When a live stream's `orders` arrive over `minutes`: one tick per `tick_seconds`.

    The curve, over x = how far into the window (0 to 1): weight(x) = (1 - e^(-x/0.02)) *
    e^(-x/0.15) + 0.02. The host opens the link and orders ramp to their peak within the first
    2 % of the window, then decay with a time constant of 15 % of it, over a small floor of
    latecomers buying from the replay: about 64 % of the orders land in the first fifth, 72 %
    in the first quarter, 90 % in the first half; the peak minute is about four times the
    average one. Each tick's weight is jittered by up to ±20 % (seeded), and the running total
    is rounded, so counts always add up to `orders`.

    `cancel_rate` of the orders (rounded) get a buyer's cancellation request, each between one
    minute (a tenth of windows under ten minutes) and a quarter of the window after its order
    landed, never after the last tick. Pure: the same arguments and seed give the same plan.
    """
    if orders < 1:
        raise SandboxInputError("a live stream needs at least one order")
    if not minutes > 0:
        raise SandboxInputError("a live stream lasts more than 0 minutes")
    if not 0 <= cancel_rate <= 1:
        raise SandboxInputError("cancel rate must be between 0 and 1")
    rng = random.Random(seed)
    window = minutes * 60
    ticks = max(1, round(window / tick_seconds))
    step = window / ticks
    weights = []
    for index in range(ticks):
        x = (index + 0.5) / ticks
        weight = (1 - math.exp(-x / LIVE_RAMP)) * math.exp(-x / LIVE_DECAY) + LIVE_FLOOR
        weights.append(weight * (1 + rng.uniform(-LIVE_JITTER, LIVE_JITTER)))
    # Rounding the running total (not each tick) keeps the sum exact and spreads the tail's
    # fractions of an order over the ticks instead of dropping them.
    total = sum(weights)
    counts, running, landed = [], 0.0, 0
    for weight in weights:
        running += orders * weight / total
        upto = min(orders, round(running))
        counts.append(upto - landed)
        landed = upto
    counts[-1] += orders - landed

    landed_at = [tick for tick, count in enumerate(counts) for _ in range(count)]
    cancels: dict[int, list[int]] = {}
    # A buyer thinks again a minute or more later (a tenth of a short window), within a quarter.
    shortest = min(ticks - 1, max(1, math.ceil(min(60.0, window / 10) / step)))
    longest = max(shortest, ticks // 4)
    for order_index in sorted(rng.sample(range(orders), round(orders * cancel_rate))):
        tick = min(ticks - 1, landed_at[order_index] + rng.randint(shortest, longest))
        cancels.setdefault(tick, []).append(order_index)
    return [
        LiveTick(at=index * step, orders=counts[index], cancel=tuple(cancels.get(index, ())))
        for index in range(ticks)
    ]


@dataclass(slots=True)
class LiveProgress:
    """Where a live stream stands: counts so far, and orders in the last minute."""

    target: int
    elapsed: float = 0.0
    orders: int = 0
    cancellations: int = 0
    webhooks_sent: int = 0
    webhooks_failed: int = 0
    per_minute: float = 0.0
    interrupted: bool = False
    done: bool = False


#: Who `sandbox live` says sold the stream's orders (TikTok's affiliate orders), by default.
DEFAULT_LIVE_CREATOR = "sunny.live"


def sandbox_credit_creator(
    *,
    store: SandboxStore,
    order_pks: Sequence[int],
    creator: str,
    content_id: str = "",
    content_type: str = "LIVE",
    commission_rate: int = 1000,
) -> int:
    """Record that `creator` sold these sandbox orders (the platform's affiliate orders, which
    `POST /affiliate_seller/202410/orders/search` serves); TikTok only. Returns how many."""
    if store.platform != "tiktok" or not creator or not order_pks:
        return 0
    rows = [
        SandboxAffiliateOrder(
            store=store,
            order_id=order_id,
            creator_username=creator,
            content_type=content_type,
            content_id=content_id,
            commission_rate=commission_rate,
            created=created,
        )
        for order_id, created in store.orders.filter(pk__in=list(order_pks)).values_list(
            "order_id", "created"
        )
    ]
    SandboxAffiliateOrder.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def sandbox_live(
    *,
    shop: Shop,
    orders: int,
    minutes: float,
    seed: int | None = None,
    cancel_rate: float = 0.03,
    webhooks: bool = True,
    creator: str = DEFAULT_LIVE_CREATOR,
    progress: Callable[[LiveProgress], None] | None = None,
    progress_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> LiveProgress:
    """Drip a live stream's paid orders into the shop's sandbox store on `live_schedule`'s
    curve, with a few buyers asking to cancel later in the window, in real time.

    With `webhooks`, each new or changed order is followed by the platform's order webhooks
    (where its sandbox sends any: TikTok, Shopify), so a running demo's q cluster picks the
    orders up at once; otherwise the minute sync does. Every tick is stored in its own
    transaction, before its webhooks go out. `progress` is called every `progress_seconds`
    (default: a twentieth of the window, at least 5 s) and after the last tick. Ctrl-C
    (KeyboardInterrupt) stops it between two writes and returns what landed, `interrupted`
    set. `sleep` and `clock` are injectable so tests need not wait. On TikTok the platform
    credits every order to `creator` (its affiliate orders, content type LIVE), which tkerp's
    live sessions read to attribute them.
    """
    schedule = live_schedule(orders=orders, minutes=minutes, cancel_rate=cancel_rate, seed=seed)
    store = sandbox_store_for_shop(shop=shop)
    sandbox = sandbox_for(shop.platform)
    products = list(store.products.order_by("pk"))
    notify = getattr(sandbox, "notify_order_changed", None)
    if not (webhooks and store.webhook_url):
        notify = None
    rng = random.Random(seed)
    stream_id = f"{int(timezone.now().timestamp())}{store.pk:06d}"
    every = progress_seconds or max(5.0, minutes * 60 / 20)
    state = LiveProgress(target=orders)
    dropped: list[int] = []
    recent: deque[tuple[float, int]] = deque([(0.0, 0)])
    next_report = every
    start = clock()
    try:
        for number, tick in enumerate(schedule, start=1):
            wait = tick.at - (clock() - start)
            if wait > 0:
                sleep(wait)
            landed = len(dropped)
            changed = _live_tick(sandbox, store, products, rng, tick, dropped, state)
            if creator:
                # Before the webhooks: the platform knows who sold an order once it exists.
                sandbox_credit_creator(
                    store=store, order_pks=dropped[landed:], creator=creator, content_id=stream_id
                )
            if notify is not None:
                _live_notify(notify, store, changed, state)
            state.elapsed = clock() - start
            recent.append((state.elapsed, state.orders))
            while len(recent) > 1 and recent[1][0] <= state.elapsed - 60:
                recent.popleft()
            since, then = recent[0]
            span = min(60.0, max(state.elapsed - since, _tick_span(schedule)))
            state.per_minute = (state.orders - then) * 60 / span if span else 0.0
            state.done = number == len(schedule)
            if progress is not None and (state.elapsed >= next_report or state.done):
                progress(state)
                next_report = state.elapsed + every
    except KeyboardInterrupt:
        state.interrupted = True
    state.elapsed = clock() - start
    return state


def _tick_span(schedule: list[LiveTick]) -> float:
    """Seconds one tick stands for (the whole window when there is only one)."""
    if len(schedule) > 1:
        return schedule[1].at - schedule[0].at
    return 60.0


def _live_tick(sandbox, store, products, rng, tick, dropped, state) -> list[int]:
    """Land one tick's orders and cancellation requests; returns the changed orders' pks."""
    changed: list[int] = []
    if tick.orders:
        now = timezone.now()
        payloads = [
            sandbox.generate_order(store=store, rng=rng, products=products, now=now, fresh=True)
            for _ in range(tick.orders)
        ]
        with transaction.atomic():
            before = store.orders.aggregate(top=Max("pk"))["top"] or 0
            _store_orders(sandbox, store, payloads)
            new = list(
                store.orders.filter(pk__gt=before).order_by("pk").values_list("pk", flat=True)
            )
        dropped.extend(new)
        changed.extend(new)
        state.orders += len(new)
    for index in tick.cancel:
        if index >= len(dropped):
            continue
        order = store.orders.filter(pk=dropped[index]).first()
        if order is None:
            continue
        try:
            with transaction.atomic():
                sandbox.request_cancellation(store=store, order=order)
        except SandboxInputError:
            continue  # shipped or cancelled meanwhile: too late to ask
        changed.append(order.pk)
        state.cancellations += 1
    return changed


def _live_notify(notify, store, changed: list[int], state: LiveProgress) -> None:
    # Read them all first: each webhook is answered in-process, and a task run there may
    # recycle the connection a streaming cursor would still be reading from.
    for order in list(store.orders.filter(pk__in=changed).order_by("pk")):
        for status in notify(store=store, order=order):
            if status is not None and 200 <= status < 300:
                state.webhooks_sent += 1
            else:
                state.webhooks_failed += 1
