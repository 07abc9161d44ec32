"""A pipeline step that fails after a page was stored strands nothing: the SLA sweep finishes it.

Each test makes one step fail once during a real sync pass against the TikTok sandbox, shows the
pass still succeeds with the page stored (and that the next pass, finding the orders unchanged,
does not help), then runs the minute sweep a few minutes later and finds every order reserved,
reviewed and in its parcel. Real commits (`transaction=True`), as a worker would run them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from inventory.models import Reservation, ReservationState, StockLevel
from logistics.models import Shipment
from orders import pipeline
from orders.models import Order, OrderStatus
from orders.pipeline import pipeline_alert_key
from orders.sla import sla_sweep
from tests.e2e.helpers import add_orders, django_q_sync, platform_cancels, sync_now
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = 3


def fail_once(monkeypatch, module, name: str) -> list[int]:
    """Make `module.name` raise on its first call only; returns the call counter."""
    real = getattr(module, name)
    calls: list[int] = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"{name} failed (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


def state(shop) -> dict[str, tuple[str, int, int]]:
    """Per order: (status, reserved reservations, parcels)."""
    with tenant_context(shop.tenant):
        return {
            order.platform_order_id: (
                order.status,
                Reservation.objects.filter(order=order, state=ReservationState.RESERVED).count(),
                Shipment.objects.filter(order=order).count(),
            )
            for order in Order.objects.order_by("pk")
        }


def open_alert(shop) -> Alert | None:
    return Alert._base_manager.filter(
        key=pipeline_alert_key(shop.pk), resolved_at__isnull=True
    ).first()


def sweep_later(minutes: int = 10) -> None:
    with django_q_sync():
        results = sla_sweep(now=timezone.now() + timedelta(minutes=minutes))
    assert not any(result.get("error") for result in results.values()), results


def assert_all_processed(shop) -> None:
    orders = state(shop)
    assert len(orders) == ORDERS
    for platform_order_id, (status, reserved, parcels) in orders.items():
        assert status == OrderStatus.READY, platform_order_id
        assert reserved >= 1 and parcels == 1, (platform_order_id, reserved, parcels)


def test_a_failed_stock_step_is_finished_by_the_sweep(stocked, monkeypatch):
    import inventory.reservations

    shop, store, _ = stocked
    add_orders(store, ORDERS, start=timezone.now() - timedelta(minutes=3))
    calls = fail_once(monkeypatch, inventory.reservations, "orders_reserve")

    run = sync_now(shop)  # the page is stored and the pass succeeds

    assert run.created == ORDERS and calls
    # Reviewed, but with no stock reserved nothing may be ready (or split).
    assert set(state(shop).values()) == {(OrderStatus.NEW, 0, 0)}
    alert = open_alert(shop)
    assert alert is not None and "stock" in alert.message and alert.shop_id == shop.pk
    # The next pass finds the orders unchanged on the platform: it cannot be what fixes them.
    assert sync_now(shop).created == 0
    assert set(state(shop).values()) == {(OrderStatus.NEW, 0, 0)}

    sweep_later()

    assert_all_processed(shop)
    assert open_alert(shop) is not None  # resolved by the sweep that finds nothing stranded
    sweep_later()
    assert open_alert(shop) is None


def test_a_failed_review_leaves_orders_new_and_the_sweep_reviews_them(stocked, monkeypatch):
    import orders.review

    shop, store, _ = stocked
    add_orders(store, ORDERS, start=timezone.now() - timedelta(minutes=3))
    fail_once(monkeypatch, orders.review, "orders_review")

    sync_now(shop)

    # Reserved, but never reviewed: stranded in "new", without parcels.
    assert {status for status, _, parcels in state(shop).values()} == {OrderStatus.NEW}
    assert all(reserved and not parcels for _, reserved, parcels in state(shop).values())

    sweep_later()

    assert_all_processed(shop)


def test_a_lost_split_task_leaves_ready_orders_the_sweep_splits(stocked, monkeypatch):
    shop, store, _ = stocked
    add_orders(store, ORDERS, start=timezone.now() - timedelta(minutes=3))

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(pipeline, "async_task", broker_down)
    sync_now(shop)  # the task could not be queued: the pass still succeeds

    assert {(status, parcels) for status, _, parcels in state(shop).values()} == {
        (OrderStatus.READY, 0)
    }

    monkeypatch.undo()
    sweep_later()

    assert_all_processed(shop)


def test_a_failed_release_of_a_cancelled_order_is_finished_by_the_sweep(stocked, monkeypatch):
    """A state the sweep once missed: not "new" but cancelled, still holding its units, which
    would stay off sale for ever."""
    import inventory.reservations

    shop, store, _ = stocked
    (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=3))
    sync_now(shop)
    with tenant_context(shop.tenant):
        order = Order.objects.get()
        held = sum(Reservation.objects.filter(order=order).values_list("quantity", flat=True))
    status, _, parcels = state(shop)[order.platform_order_id]
    assert (status, parcels) == (OrderStatus.READY, 1) and held > 0

    platform_cancels(store, generated.order_id)
    fail_once(monkeypatch, inventory.reservations, "orders_reserve")
    sync_now(shop)

    with tenant_context(shop.tenant):
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert StockLevel.objects.aggregate(reserved=Sum("reserved"))["reserved"] == held

    sweep_later()

    with tenant_context(shop.tenant):
        assert not Reservation.objects.filter(state=ReservationState.RESERVED).exists()
        assert StockLevel.objects.aggregate(reserved=Sum("reserved"))["reserved"] == 0
