"""Tracking write-back against every platform's sandbox over real HTTP, with real commits.

An order is synced from the sandbox, reserved and split into its parcel; a tracking number is
given through the one door (`shipment_tracking_accept`), which ships the parcel; the outbox
(`tracking_push_shop`, what the task and `push_tracking` run) tells the platform, and the
sandbox's own records are read back.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from inventory.models import MovementKind, Reservation, ReservationState, WarehouseKind
from inventory.stock import stock_adjust
from logistics.models import (
    Shipment,
    ShipmentStatus,
    TrackingAttemptResult,
    TrackingPush,
    TrackingPushAttempt,
    TrackingPushState,
)
from logistics.outbox import tracking_push_shop, tracking_writeback_release
from logistics.tasks import push_shop_tracking
from logistics.tracking import TrackingRefused, TrackingSource, shipment_tracking_accept
from logistics.tracking_numbers import make_tracking_number
from orders.models import Order, OrderStatus, ReviewSettings
from sandbox.models import SandboxShipment
from shops.models import Shop, ShopCredentials
from tests.e2e.conftest import REVIEW_CHECKS
from tests.e2e.helpers import add_orders, connect_shop, sync_now
from tests.factories import CarrierFactory, CarrierServiceFactory, WarehouseFactory
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

PLATFORMS = ["tiktok", "shopify", "amazon", "ebay"]
TIKTOK_USPS = "7117858858072016686"  # the TikTok sandbox's USPS shipping provider id


def usps(serial: int) -> str:
    return make_tracking_number(carrier="usps", service="", account="", serial=serial)


@pytest.fixture(params=PLATFORMS)
def world(request, tenant_a):
    """A shop of the platform on its sandbox, stock in an own warehouse, review off, and a USPS
    carrier (with TikTok's provider id for it)."""
    return world_for(tenant_a, request.param)


def world_for(tenant, platform: str):
    """`world` for any tenant: (shop, store)."""
    shop, store = connect_shop(tenant, platform)
    warehouse = WarehouseFactory(tenant=tenant, code="A-OWN", kind=WarehouseKind.OWN)
    with tenant_context(tenant):
        ReviewSettings.objects.update_or_create(
            tenant=tenant, defaults=dict.fromkeys(REVIEW_CHECKS, False)
        )
        for listing in shop.listings.select_related("sku"):
            stock_adjust(
                sku=listing.sku,
                warehouse=warehouse,
                delta=50,
                kind=MovementKind.RECEIVE,
                user=None,
                note="delivery",
            )
    carrier = CarrierFactory(
        tenant=tenant, code="usps", name="USPS", platform_provider_ids={"tiktok": TIKTOK_USPS}
    )
    CarrierServiceFactory(tenant=tenant, carrier=carrier, code="ground", name="Ground")
    return shop, store


def parcels_of(shop, store, count: int = 1, *, seed: int = 0) -> list[Shipment]:
    """`count` orders synced from the sandbox, each reserved and split into its parcel."""
    generated = add_orders(store, count, start=timezone.now() - timedelta(minutes=5), seed=seed)
    sync_now(shop)
    with tenant_context(shop.tenant):
        parcels = []
        for row in generated:
            order = Order.objects.get(shop=shop, platform_order_id=row.order_id)
            assert order.status == OrderStatus.READY, order.status
            parcels.append(Shipment.objects.get(order=order))
    return parcels


def push(shop):
    with tenant_context(shop.tenant):
        return tracking_push_shop(shop=Shop.objects.get(pk=shop.pk))


def ship_call(shop) -> str:
    """The call a whole parcel's first number goes by: TikTok ships packages it already holds
    in batches; the others have one call a parcel."""
    return "batch_ship" if shop.platform == "tiktok" else "ship"


def sandbox_shipments(store, order_id: str) -> list[SandboxShipment]:
    return list(SandboxShipment.objects.filter(store=store, order_id=order_id).order_by("pk"))


def carrier_on_platform(store, shipment: SandboxShipment) -> str:
    """The carrier the platform recorded for a package, in its own words."""
    payload = shipment.payload
    if store.platform == "tiktok":
        return payload["shipping_provider_name"]
    if store.platform == "shopify":
        return payload["tracking_company"]
    if store.platform == "amazon":
        return payload["packageDetail"]["carrierCode"]
    return shipment.provider_id  # eBay's shippingCarrierCode


def test_the_task_sends_them_as_a_worker_would(tenant_a):
    """A worker starts with no tenant scope (row-level security shows it nothing): the task
    finds its shop in the tenant's scope and sends."""
    shop, store = world_for(tenant_a, "shopify")
    (parcel,) = parcels_of(shop, store)
    shipment_tracking_accept(
        parcel, tracking_number=usps(150), carrier_code="usps", source=TrackingSource.ADMIN
    )

    assert push_shop_tracking(tenant_a.pk, shop.pk) == {
        "shop": shop.pk,
        "sent": 1,
        "failed": 0,
        "blocked": 0,
    }
    assert [
        s.tracking_number for s in sandbox_shipments(store, parcel.order.platform_order_id)
    ] == [usps(150)]


def test_the_platform_ships_the_order_with_exactly_that_number_and_carrier(world):
    shop, store = world
    (parcel,) = parcels_of(shop, store)
    number = usps(101)

    stored = shipment_tracking_accept(
        parcel, tracking_number=number, carrier_code="usps", source=TrackingSource.ADMIN
    )
    with tenant_context(shop.tenant):
        stored.refresh_from_db()
        assert stored.status == ShipmentStatus.SHIPPED
        assert stored.carrier.code == "usps" and stored.tracking_number == number
        assert set(
            Reservation.objects.filter(order=stored.order).values_list("state", flat=True)
        ) == {ReservationState.COMMITTED}
        assert TrackingPush.objects.get(shipment=stored).state == TrackingPushState.PENDING

    summary = push(shop)

    assert (summary.sent, summary.failed, summary.blocked) == (1, 0, 0)
    order_id = stored.order.platform_order_id
    (on_platform,) = sandbox_shipments(store, order_id)
    assert on_platform.tracking_number == number
    assert carrier_on_platform(store, on_platform) == "USPS"
    with tenant_context(shop.tenant):
        push_row = TrackingPush.objects.get(shipment=stored)
        assert push_row.state == TrackingPushState.SENT and push_row.sent_number == number
        (attempt,) = TrackingPushAttempt.objects.filter(push=push_row)
        assert (attempt.call, attempt.result, attempt.number, attempt.platform) == (
            ship_call(shop),
            TrackingAttemptResult.SENT,
            number,
            shop.platform,
        )
        assert attempt.latency_ms >= 0
        assert Order.objects.get(pk=stored.order_id).tracking_uploaded_at is not None

    assert push(shop).sent == 0  # nothing due: nothing sent again
    assert len(sandbox_shipments(store, order_id)) == 1


def test_an_invalid_number_never_reaches_the_sandbox(world):
    shop, store = world
    (parcel,) = parcels_of(shop, store)
    good = usps(102)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)

    with pytest.raises(TrackingRefused, match="check digit is wrong"):
        shipment_tracking_accept(
            parcel, tracking_number=bad, carrier_code="usps", source=TrackingSource.CSV
        )
    with pytest.raises(TrackingRefused, match="is not a USPS tracking number"):
        shipment_tracking_accept(
            parcel, tracking_number="1Z5R89390357567127", carrier_code="usps", source="csv"
        )

    assert push(shop).sent == 0
    assert sandbox_shipments(store, parcel.order.platform_order_id) == []
    with tenant_context(shop.tenant):
        parcel.refresh_from_db()
        assert parcel.tracking_number == "" and parcel.status == ShipmentStatus.PENDING
        assert not TrackingPush.objects.exists()


def test_a_platform_rejection_stops_the_shops_writeback_after_one(world):
    shop, store = world
    first, second = parcels_of(shop, store, 2)
    rejected, fine = usps(103), usps(104)
    store.unknown_tracking_numbers = [rejected]  # the carrier has no record of it
    store.save(update_fields=["unknown_tracking_numbers"])
    # One package a call, so the two go in two calls (a rejection inside a batch:
    # test_tracking_batch.py).
    credentials = ShopCredentials._base_manager.get(shop=shop)
    credentials.extra = {**(credentials.extra or {}), "ship_batch_size": 1}
    credentials.save(update_fields=["extra"])
    shipment_tracking_accept(first, tracking_number=rejected, carrier_code="usps", source="api")
    shipment_tracking_accept(second, tracking_number=fine, carrier_code="usps", source="api")

    summary = push(shop)

    assert (summary.sent, summary.failed, summary.blocked) == (0, 1, 1)
    with tenant_context(shop.tenant):
        shop.refresh_from_db()
        assert shop.tracking_paused_at is not None
        assert rejected in shop.tracking_pause_reason
        assert TrackingPushAttempt.objects.count() == 1  # one call; the second never went
        assert TrackingPush.objects.get(shipment=first).state == TrackingPushState.REJECTED
        assert TrackingPush.objects.get(shipment=second).state == TrackingPushState.BLOCKED
        alert = Alert.objects.get(key=f"tracking.paused.{shop.pk}")
        assert alert.resolved_at is None
    assert sandbox_shipments(store, second.order.platform_order_id) == []

    again = push(shop)  # still stopped: nothing is called, the waiting row is reported
    assert (again.sent, again.failed, again.blocked) == (0, 0, 1)
    with tenant_context(shop.tenant):
        assert TrackingPushAttempt.objects.count() == 1

    with tenant_context(shop.tenant):
        assert tracking_writeback_release(shop=Shop.objects.get(pk=shop.pk)) == 1
    released = push(shop)

    assert (released.sent, released.failed) == (1, 0)
    (on_platform,) = sandbox_shipments(store, second.order.platform_order_id)
    assert on_platform.tracking_number == fine
    assert sandbox_shipments(store, first.order.platform_order_id) == []  # never re-sent
    with tenant_context(shop.tenant):
        assert Alert.objects.get(key=f"tracking.paused.{shop.pk}").resolved_at is not None


def test_a_retried_task_posts_once(world):
    shop, store = world
    (parcel,) = parcels_of(shop, store)
    number = usps(105)
    shipment_tracking_accept(parcel, tracking_number=number, carrier_code="usps", source="admin")
    assert push(shop).sent == 1
    # The worker died after the platform took the number, before tkerp recorded it: the row is
    # due again as if never sent.
    with tenant_context(shop.tenant):
        TrackingPush.objects.filter(shipment=parcel).update(
            state=TrackingPushState.PENDING, sent_number="", sent_at=None, due_at=timezone.now()
        )

    summary = push(shop)

    assert summary.sent == 1
    assert len(sandbox_shipments(store, parcel.order.platform_order_id)) == 1
    with tenant_context(shop.tenant):
        results = list(TrackingPushAttempt.objects.order_by("pk").values_list("call", "result"))
    assert [result for _, result in results].count(TrackingAttemptResult.SENT) == 1
    # Asked first (Amazon cannot list a package's number: its confirm skips what has shipped).
    assert results[-1] == (
        ("ship" if shop.platform == "amazon" else "check"),
        TrackingAttemptResult.ALREADY,
    )


def test_a_split_order_sends_each_parcels_lines(world):
    shop, store = world
    parcels = parcels_of(shop, store, 12, seed=7)
    with tenant_context(shop.tenant):
        parcel = next(p for p in parcels if p.lines.count() >= 2)
        lines = list(parcel.lines.select_related("order_line").order_by("pk"))
    first_line = lines[0].order_line
    first_number, rest_number = usps(106), usps(107)

    split = shipment_tracking_accept(
        parcel,
        tracking_number=first_number,
        carrier_code="usps",
        source="csv",
        lines=[first_line.platform_line_id],
    )
    rest = shipment_tracking_accept(
        parcel, tracking_number=rest_number, carrier_code="usps", source="csv"
    )
    assert split.pk != parcel.pk and rest.pk == parcel.pk
    with tenant_context(shop.tenant):
        assert list(split.lines.values_list("order_line_id", flat=True)) == [first_line.pk]
        assert first_line.pk not in set(rest.lines.values_list("order_line_id", flat=True))

    assert push(shop).sent == 2

    on_platform = {
        s.tracking_number: s for s in sandbox_shipments(store, parcel.order.platform_order_id)
    }
    assert set(on_platform) == {first_number, rest_number}
    expected_first = set(first_line.platform_line_ids or [first_line.platform_line_id])
    assert set(map(str, on_platform[first_number].line_ids)) == expected_first
    assert not expected_first & set(map(str, on_platform[rest_number].line_ids))
    with tenant_context(shop.tenant):
        assert Order.objects.get(pk=parcel.order_id).tracking_uploaded_at is not None


@pytest.mark.parametrize("world", ["tiktok", "shopify", "amazon"], indirect=True)
def test_a_changed_number_uses_the_update_call(world):
    """Amazon has no update operation: confirmShipment again under the package's
    packageReferenceId edits the package (its sandbox replaces the number, items unchanged)."""
    shop, store = world
    (parcel,) = parcels_of(shop, store)
    shipment_tracking_accept(parcel, tracking_number=usps(108), carrier_code="usps", source="csv")
    assert push(shop).sent == 1

    corrected = usps(109)
    shipment_tracking_accept(parcel, tracking_number=corrected, carrier_code="usps", source="csv")
    assert push(shop).sent == 1

    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == corrected
    with tenant_context(shop.tenant):
        calls = list(TrackingPushAttempt.objects.order_by("pk").values_list("call", flat=True))
    assert calls == [ship_call(shop), "update"]


@pytest.mark.parametrize("world", ["ebay"], indirect=True)
def test_a_changed_number_on_ebay_is_the_sellers_to_enter_and_says_how(world):
    shop, store = world
    (parcel,) = parcels_of(shop, store)
    first, corrected = usps(111), usps(112)
    shipment_tracking_accept(parcel, tracking_number=first, carrier_code="usps", source="csv")
    assert push(shop).sent == 1
    shipment_tracking_accept(parcel, tracking_number=corrected, carrier_code="usps", source="csv")

    summary = push(shop)

    assert (summary.sent, summary.failed) == (0, 1)
    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == first  # nothing was sent
    with tenant_context(shop.tenant):
        assert TrackingPushAttempt.objects.count() == 1  # the first ship only: no call made
        row = TrackingPush.objects.get(shipment=parcel)
        assert row.state == TrackingPushState.FAILED and corrected in row.last_error
        alert = Alert.objects.get(key=f"tracking.by_hand.{row.pk}")
    assert "Seller Hub" in alert.message and parcel.order.platform_order_id in alert.message
    assert first in alert.message and corrected in alert.message
    assert push(shop).sent == 0  # not retried: it waits for the seller


@pytest.mark.parametrize("world", ["ebay"], indirect=True)
def test_the_seller_marks_a_number_changed_by_hand_and_the_alert_closes(
    world, client_a, tenant_b, client_b
):
    shop, store = world
    (parcel,) = parcels_of(shop, store)
    shipment_tracking_accept(parcel, tracking_number=usps(113), carrier_code="usps", source="csv")
    push(shop)
    shipment_tracking_accept(parcel, tracking_number=usps(114), carrier_code="usps", source="csv")
    push(shop)
    url = "/admin/logistics/shipment/"
    action = {"action": "tracking_done_by_hand", "_selected_action": [parcel.pk]}

    # Another tenant's staff can't reach the parcel: the action changes nothing.
    client_b.post(url, action)
    with tenant_context(shop.tenant):
        assert TrackingPush.objects.get(shipment=parcel).state == TrackingPushState.FAILED

    response = client_a.post(url, action, follow=True)

    assert "as on the platform; nothing was sent" in response.content.decode()
    with tenant_context(shop.tenant):
        row = TrackingPush.objects.get(shipment=parcel)
        assert (row.state, row.sent_number, row.last_error) == (
            TrackingPushState.SENT,
            usps(114),
            "",
        )
        assert Alert.objects.get(key=f"tracking.by_hand.{row.pk}").resolved_at is not None
        assert TrackingPushAttempt.objects.count() == 1  # still only the first ship: no call
    assert push(shop).sent == 0


@pytest.mark.parametrize("world", ["tiktok"], indirect=True)
def test_push_tracking_prints_one_summary_line(world):
    shop, store = world
    (parcel,) = parcels_of(shop, store)
    shipment_tracking_accept(parcel, tracking_number=usps(110), carrier_code="usps", source="api")
    out = StringIO()

    call_command("push_tracking", "--shop", str(shop.pk), stdout=out)

    assert out.getvalue().splitlines() == ["tracking: 1 sent, 0 failed, 0 blocked"]
    assert len(sandbox_shipments(store, parcel.order.platform_order_id)) == 1


def _labelled_with_number_queued(parcel, number: str) -> Shipment:
    """As a label leaves a parcel: labelled, its number stored and queued for the platform."""
    from django.db import transaction

    from logistics.tracking import tracking_push_queue

    with tenant_context(parcel.tenant), transaction.atomic():
        Shipment.objects.filter(pk=parcel.pk).update(
            status=ShipmentStatus.LABELLED, tracking_number=number
        )
        parcel = Shipment.objects.select_related("order__shop").get(pk=parcel.pk)
        tracking_push_queue(shipment=parcel, source=TrackingSource.LABEL)
    return parcel


def test_a_cancelled_orders_labelled_parcel_number_never_reaches_the_platform(tenant_a):
    """The order is cancelled after its label was printed and before the number went out: the
    platform must not be told the cancelled order shipped (it would tell the buyer so)."""
    from orders.cancellations import order_cancel_close

    shop, store = world_for(tenant_a, "shopify")
    (parcel,) = parcels_of(shop, store)
    parcel = _labelled_with_number_queued(parcel, usps(151))
    with tenant_context(tenant_a):
        order_cancel_close(order=parcel.order, reason="buyer")
        assert not TrackingPush.objects.filter(shipment=parcel).exists()

    assert push(shop).sent == 0
    assert sandbox_shipments(store, parcel.order.platform_order_id) == []


def test_an_order_the_platform_cancels_has_its_unsent_parcels_cancelled(tenant_a):
    """The platform cancels the order itself (the seller centre, a timeout: its sync stores it
    cancelled, and no request passes through the inbox) after the label was printed. As for an
    approved request: the parcel is cancelled (so its label goes back for a refund), its number
    never reaches the platform, and its stock is released."""
    from inventory.reservations import orders_reserve
    from logistics.labels.cancelled import shipment_label_refund_due

    shop, store = world_for(tenant_a, "shopify")
    (parcel,) = parcels_of(shop, store)
    parcel = _labelled_with_number_queued(parcel, usps(154))
    Shipment._base_manager.filter(pk=parcel.pk).update(
        label_source="labelapi", source_label_id="lbl_154"
    )
    Order._base_manager.filter(pk=parcel.order_id).update(status=OrderStatus.CANCELLED)

    orders_reserve(tenant=tenant_a, order_ids=[parcel.order_id])  # the pipeline's stock step

    parcel.refresh_from_db()
    assert parcel.status == ShipmentStatus.CANCELLED
    assert shipment_label_refund_due(parcel)
    with tenant_context(tenant_a):
        assert not TrackingPush.objects.filter(shipment=parcel).exists()
        assert not Reservation.objects.filter(
            order_id=parcel.order_id, state=ReservationState.RESERVED
        ).exists()
    assert push(shop).sent == 0
    assert sandbox_shipments(store, parcel.order.platform_order_id) == []


def test_a_parcel_cancelled_by_hand_has_its_number_withdrawn_not_sent(tenant_a):
    shop, store = world_for(tenant_a, "shopify")
    first, second = parcels_of(shop, store, 2)
    first = _labelled_with_number_queued(first, usps(152))
    second = _labelled_with_number_queued(second, usps(153))
    with tenant_context(tenant_a):  # a person sets the status in the parcel's admin page
        Shipment.objects.filter(pk=first.pk).update(status=ShipmentStatus.CANCELLED)

    assert push(shop).sent == 1  # the other parcel's number still goes

    assert sandbox_shipments(store, first.order.platform_order_id) == []
    assert [
        s.tracking_number for s in sandbox_shipments(store, second.order.platform_order_id)
    ] == [usps(153)]
    with tenant_context(tenant_a):
        assert not TrackingPush.objects.filter(shipment=first).exists()
