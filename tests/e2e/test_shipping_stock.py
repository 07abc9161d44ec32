"""Shipping takes the stock out, once, whichever door reports it; a cancel after it gives nothing
back. Against the TikTok sandbox over real HTTP, with real commits (`transaction=True`).

The seller ships on the platform (the connector's real ship call, as from the seller centre);
tkerp learns it by the minute sync or by the platform's webhook, and the pipeline commits the
stock through `inventory.reservations.order_ship_commit`. The platform then cancels the order
(a parcel it says was never collected): the order is recorded cancelled, the stock stays out.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import (
    MovementKind,
    Reservation,
    ReservationState,
    StockLevel,
    StockMovement,
)
from inventory.stock import stock_ledger_balance
from logistics.models import Shipment, ShipmentStatus
from orders.models import Order, OrderEvent, OrderStatus
from sandbox.base import sandbox_for
from sandbox.models import SandboxOrder
from shops.platforms import connector_for
from shops.platforms.base import ShipRequest
from tests.e2e.helpers import add_orders, django_q_sync, platform_cancels, sync_now
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

USPS = "7117858858072016686"  # the sandbox's USPS shipping provider id


def webhook(store, platform_order_id: str) -> None:
    """The platform tells tkerp the order changed, as TikTok does: a signed POST to our webhook
    endpoint, processed (re-fetching the order) by the queued task."""
    row = SandboxOrder.objects.get(store=store, order_id=platform_order_id)
    with django_q_sync():
        statuses = sandbox_for("tiktok").notify_order_changed(store=store, order=row)
    assert statuses and all(status == 200 for status in statuses), statuses


def ship_on_platform(shop, platform_order_id: str, line_ids: list[str] | None = None) -> None:
    """The seller marks the order shipped on TikTok (the connector's real call): the whole of
    it, or only the line items `line_ids`."""
    connector = connector_for(shop)
    try:
        connector.ship(
            request=ShipRequest(
                platform_order_id=platform_order_id,
                tracking_number="9400111899223817321050",
                carrier_code="usps",
                platform_provider_id=USPS,
                platform_line_ids=line_ids or [],
            )
        )
    finally:
        connector.http.close()


def numbers(tenant) -> dict[int, tuple[int, int]]:
    with tenant_context(tenant):
        return {
            level.sku_id: (level.on_hand, level.reserved)
            for level in StockLevel.objects.order_by("pk")
        }


def assert_ledger_matches(tenant) -> None:
    with tenant_context(tenant):
        for level in StockLevel.objects.select_related("sku", "warehouse"):
            assert stock_ledger_balance(sku=level.sku, warehouse=level.warehouse) == (
                level.on_hand,
                level.reserved,
            ), level


def reserved_order(shop, store, arrive) -> tuple[Order, dict[int, int]]:
    """One paid order stored, reserved, ready and split into its parcel; returns it with the
    units it holds per SKU."""
    (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=3))
    arrive(generated.order_id)
    with tenant_context(shop.tenant):
        order = Order.objects.get(platform_order_id=generated.order_id)
        assert order.status == OrderStatus.READY
        held: dict[int, int] = {}
        for reservation in Reservation.objects.filter(order=order):
            assert reservation.state == ReservationState.RESERVED
            held[reservation.sku_id] = held.get(reservation.sku_id, 0) + reservation.quantity
        assert held
        assert list(Shipment.objects.filter(order=order).values_list("status", flat=True)) == [
            ShipmentStatus.PENDING
        ]
    return order, held


def assert_shipped_once(order, held: dict[int, int], start: dict[int, tuple[int, int]]) -> None:
    tenant = order.tenant
    with tenant_context(tenant):
        order.refresh_from_db()
        assert order.status == OrderStatus.SHIPPED and order.shipped_at is not None
        assert set(Reservation.objects.filter(order=order).values_list("state", flat=True)) == {
            ReservationState.COMMITTED
        }
        ships = StockMovement.objects.filter(order=order, kind=MovementKind.SHIP)
        assert sorted((m.sku_id, m.on_hand_delta, m.reserved_delta) for m in ships) == sorted(
            (sku_id, -units, -units) for sku_id, units in held.items()
        )
        parcel = Shipment.objects.get(order=order)
        assert parcel.status == ShipmentStatus.SHIPPED and parcel.shipped_at is not None
    after = numbers(tenant)
    for sku_id, (on_hand, reserved) in start.items():
        units = held.get(sku_id, 0)
        assert after[sku_id] == (on_hand - units, reserved - units), sku_id
    assert_ledger_matches(tenant)


def assert_cancel_released_nothing(order, shipped: dict[int, tuple[int, int]]) -> None:
    tenant = order.tenant
    with tenant_context(tenant):
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED  # recorded: the platform's word
        assert not StockMovement.objects.filter(order=order, kind=MovementKind.RELEASE).exists()
        assert set(Reservation.objects.filter(order=order).values_list("state", flat=True)) == {
            ReservationState.COMMITTED
        }
        assert Shipment.objects.get(order=order).status == ShipmentStatus.SHIPPED
        update = OrderEvent.objects.filter(order=order, kind="platform_update").latest("pk")
        assert "after it shipped" in update.message
    assert numbers(tenant) == shipped
    assert_ledger_matches(tenant)


def test_shipped_on_the_platform_commits_once_by_sync_and_a_cancel_releases_nothing(stocked):
    shop, store, _ = stocked
    order, held = reserved_order(shop, store, arrive=lambda _: sync_now(shop))
    start = numbers(shop.tenant)

    ship_on_platform(shop, order.platform_order_id)
    sync_now(shop)
    assert_shipped_once(order, held, start)
    shipped = numbers(shop.tenant)

    sync_now(shop)  # the same report again: nothing more leaves
    assert numbers(shop.tenant) == shipped
    with tenant_context(shop.tenant):
        assert StockMovement.objects.filter(order=order, kind=MovementKind.SHIP).count() == len(
            held
        )
        assert OrderEvent.objects.filter(order=order, kind="stock.shipped").count() == 1

    platform_cancels(store, order.platform_order_id)
    sync_now(shop)
    assert_cancel_released_nothing(order, shipped)


def test_shipped_on_the_platform_commits_once_by_webhook_and_a_cancel_releases_nothing(stocked):
    shop, store, _ = stocked
    order, held = reserved_order(shop, store, arrive=lambda order_id: webhook(store, order_id))
    start = numbers(shop.tenant)

    ship_on_platform(shop, order.platform_order_id)
    webhook(store, order.platform_order_id)
    assert_shipped_once(order, held, start)
    shipped = numbers(shop.tenant)

    webhook(store, order.platform_order_id)  # a second delivery of the same news
    sync_now(shop)  # and the minute poll finding it too
    assert numbers(shop.tenant) == shipped
    with tenant_context(shop.tenant):
        assert StockMovement.objects.filter(order=order, kind=MovementKind.SHIP).count() == len(
            held
        )

    platform_cancels(store, order.platform_order_id)
    webhook(store, order.platform_order_id)
    assert_cancel_released_nothing(order, shipped)


def test_a_cancel_reaching_a_shipped_order_before_its_stock_was_committed_commits_it(
    stocked, monkeypatch
):
    """The shipping step keeps failing (the platform's "shipped" is stored, the stock still
    reserved) when the platform's cancel arrives: giving the stock back would oversell, so the
    cancel's release commits it instead."""
    import inventory.reservations

    shop, store, _ = stocked
    order, held = reserved_order(shop, store, arrive=lambda _: sync_now(shop))
    start = numbers(shop.tenant)

    def broken(**kwargs):
        raise RuntimeError("shipping step down")

    monkeypatch.setattr(inventory.reservations, "orders_ship_commit", broken)
    ship_on_platform(shop, order.platform_order_id)
    sync_now(shop)
    with tenant_context(shop.tenant):
        order.refresh_from_db()
        assert order.status == OrderStatus.SHIPPED
        assert Reservation.objects.filter(order=order, state=ReservationState.RESERVED).exists()

    platform_cancels(store, order.platform_order_id)
    sync_now(shop)

    with tenant_context(shop.tenant):
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert not StockMovement.objects.filter(order=order, kind=MovementKind.RELEASE).exists()
        assert set(Reservation.objects.filter(order=order).values_list("state", flat=True)) == {
            ReservationState.COMMITTED
        }
    after = numbers(shop.tenant)
    for sku_id, (on_hand, reserved) in start.items():
        units = held.get(sku_id, 0)
        assert after[sku_id] == (on_hand - units, reserved - units)
    assert_ledger_matches(shop.tenant)


def test_a_partial_shipment_on_the_platform_leaves_the_rest_of_the_order_open(stocked):
    """Some of the order's packages left (TikTok's PARTIALLY_SHIPPING), here shipped at the
    platform outside tkerp: the order stays open, its parcel waiting and its stock reserved,
    instead of every parcel being marked shipped and its stock committed by the next sync. As no
    parcel of it left through tkerp, it waits for a person on a `shipped.partly` hold (its
    parcel would send the line already gone again). The platform's word is kept as its status."""
    import random

    shop, store, _ = stocked
    sandbox = sandbox_for("tiktok")
    products = list(store.products.order_by("pk"))
    start = timezone.now() - timedelta(minutes=3)
    # TikTok has one line item a unit: an order of two units or more can part-ship.
    payload = next(
        generated
        for seed in range(50)
        if len(
            (
                generated := sandbox.generate_order(
                    store=store, rng=random.Random(seed), products=products, now=start
                )
            )["line_items"]
        )
        > 1
    )
    sandbox.load_order(store=store, payload=payload)
    sync_now(shop)
    with tenant_context(shop.tenant):
        order = Order.objects.get(platform_order_id=payload["id"])
        assert order.status == OrderStatus.READY
    before = numbers(shop.tenant)
    ship_on_platform(shop, payload["id"], line_ids=[payload["line_items"][0]["id"]])

    sync_now(shop)

    with tenant_context(shop.tenant):
        order.refresh_from_db()
        assert (order.status, order.platform_status) == (
            OrderStatus.ON_HOLD,
            "PARTIALLY_SHIPPING",
        )
        assert set(order.holds.filter(released_at__isnull=True).values_list("code", flat=True)) == {
            "shipped.partly"
        }
        assert order.shipped_at is None
        assert set(Shipment.objects.filter(order=order).values_list("status", flat=True)) == {
            ShipmentStatus.PENDING
        }
        assert set(Reservation.objects.filter(order=order).values_list("state", flat=True)) == {
            ReservationState.RESERVED
        }
        assert not StockMovement.objects.filter(order=order, kind=MovementKind.SHIP).exists()
    assert numbers(shop.tenant) == before
    assert_ledger_matches(shop.tenant)
