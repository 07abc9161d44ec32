"""Tracking write-back defects found in review, each with the scenario that showed it. Same
sandbox world as test_tracking_writeback.py (real HTTP, real commits)."""

from __future__ import annotations

import pytest

from logistics.models import Carrier, TrackingPush, TrackingPushState
from logistics.tracking import shipment_tracking_accept
from tests.logistics.test_tracking_writeback import (
    parcels_of,
    push,
    sandbox_shipments,
    usps,
    world_for,
)
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failed_push_sent_after_a_correction_closes_its_alert(tenant_a):
    """A push the platform refused raises "Tracking ... was not accepted: correct it and give
    the number again". Once the seller did and the platform took it, the alert must close
    (it used to stay open for ever, next to a parcel the platform has)."""
    shop, store = world_for(tenant_a, "tiktok")
    (parcel,) = parcels_of(shop, store)
    with tenant_context(tenant_a):  # the carrier is not mapped to TikTok's provider yet
        Carrier.objects.filter(code="usps").update(platform_provider_ids={})
    shipment_tracking_accept(parcel, tracking_number=usps(301), carrier_code="usps", source="csv")
    assert push(shop).failed == 1
    with tenant_context(tenant_a):
        row = TrackingPush.objects.get(shipment=parcel)
        assert row.state == TrackingPushState.FAILED
        assert Alert.objects.get(key=f"tracking.failed.{row.pk}").resolved_at is None
        Carrier.objects.filter(code="usps").update(
            platform_provider_ids={"tiktok": "7117858858072016686"}
        )
    # The seller gives the number again (the parcel list's action, a file...).
    shipment_tracking_accept(parcel, tracking_number=usps(301), carrier_code="usps", source="csv")

    assert push(shop).sent == 1

    assert [
        s.tracking_number for s in sandbox_shipments(store, parcel.order.platform_order_id)
    ] == [usps(301)]
    with tenant_context(tenant_a):
        assert TrackingPush.objects.get(pk=row.pk).state == TrackingPushState.SENT
        assert Alert.objects.get(key=f"tracking.failed.{row.pk}").resolved_at is not None


def test_the_parcel_form_refuses_a_carrier_the_number_is_not_of(tenant_a, client_a):
    """A person changes only the carrier of a parcel whose USPS number waits for the platform:
    the form used to check the number only when the number itself changed, so the parcel kept a
    USPS number under UPS, and TikTok would be told UPS's provider with a USPS number."""
    from logistics.models import Shipment
    from tests.factories import CarrierFactory
    from tests.inventory.helpers import admin_url
    from tests.logistics.test_tracking_doors import parcel_form_data

    shop, store = world_for(tenant_a, "tiktok")
    ups = CarrierFactory(
        tenant=tenant_a,
        code="ups",
        name="UPS",
        platform_provider_ids={"tiktok": "7117859084333745966"},
    )
    (parcel,) = parcels_of(shop, store)
    number = usps(311)
    shipment_tracking_accept(
        parcel, tracking_number=number, carrier_code="usps", source="csv", ship=False
    )
    data = parcel_form_data(client_a, parcel)
    data["carrier"] = ups.pk

    response = client_a.post(admin_url(Shipment, "change", parcel.pk), data)

    assert response.status_code == 200
    assert "is not a UPS tracking number" in str(response.context["adminform"].form.errors)
    with tenant_context(tenant_a):
        parcel.refresh_from_db()
        assert (parcel.carrier.code, parcel.tracking_number) == ("usps", number)
    push(shop)
    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert (on_platform.tracking_number, on_platform.payload["shipping_provider_name"]) == (
        number,
        "USPS",
    )


def test_a_number_given_by_hand_stops_the_orders_tracking_clock(tenant_a):
    """The platform refused the write-back; the seller keys the number in on the platform and
    marks it given by hand. The order used to stay "awaiting write-back", its tracking clock
    running to an overdue alert, though the platform has its number."""
    from logistics.models import Shipment
    from logistics.outbox import tracking_pushes_done_by_hand
    from orders.models import Order

    shop, store = world_for(tenant_a, "tiktok")
    (parcel,) = parcels_of(shop, store)
    with tenant_context(tenant_a):
        Carrier.objects.filter(code="usps").update(platform_provider_ids={})
    shipment_tracking_accept(parcel, tracking_number=usps(321), carrier_code="usps", source="csv")
    assert push(shop).failed == 1

    with tenant_context(tenant_a):
        assert tracking_pushes_done_by_hand(shipments=Shipment.objects.filter(pk=parcel.pk)) == 1

        row = TrackingPush.objects.get(shipment=parcel)
        assert (row.state, row.sent_number) == (TrackingPushState.SENT, usps(321))
        assert Order.objects.get(pk=parcel.order_id).tracking_uploaded_at is not None


@pytest.mark.parametrize("platform", ["shopify", "tiktok"])
def test_a_number_corrected_while_a_dead_run_was_sending_the_first_goes_out_as_an_update(
    tenant_a, monkeypatch, platform
):
    """The run sending the first number posts it and dies; meanwhile a person corrects the
    number. The run that takes the row over used to post the corrected number as a first
    shipment, unchecked (the correction had reset the row's attempts): the platform, which
    already has the first number, refused it (a failed parcel and an alert) or took it as a
    second package. It must find the first number there and send the correction as an
    update."""
    from shops.platforms.shopify import ShopifyConnector
    from shops.platforms.tiktok import TikTokConnector
    from tests.logistics.test_tracking_outbox_races import _lease_over, _WorkerDied

    shop, store = world_for(tenant_a, platform)
    (parcel,) = parcels_of(shop, store)
    first, corrected = usps(331), usps(332)
    shipment_tracking_accept(parcel, tracking_number=first, carrier_code="usps", source="csv")
    connector = ShopifyConnector if platform == "shopify" else TikTokConnector
    method = "ship" if platform == "shopify" else "ship_batch"
    real = getattr(connector, method)

    def post_correct_then_die(self, **kwargs):
        real(self, **kwargs)
        shipment_tracking_accept(
            parcel, tracking_number=corrected, carrier_code="usps", source="csv"
        )
        raise _WorkerDied

    monkeypatch.setattr(connector, method, post_correct_then_die)
    with pytest.raises(_WorkerDied):
        push(shop)
    monkeypatch.setattr(connector, method, real)
    _lease_over(shop, parcel)

    summary = push(shop)

    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == corrected, summary
    with tenant_context(tenant_a):
        row = TrackingPush.objects.get(shipment=parcel)
        assert (row.state, row.sent_number) == (TrackingPushState.SENT, corrected)
        assert not Alert.objects.filter(
            kind="tracking_push_failed", resolved_at__isnull=True
        ).exists()


def test_a_tiktok_split_parcel_posted_by_a_run_that_died_can_still_be_corrected(
    tenant_a, monkeypatch
):
    """A parcel that splits a TikTok order is shipped by "mark shipped", which makes its
    package; the run dies before storing it. The next run finds the number on TikTok and reads
    the package back from the order detail, but took the order's own id (the order carries the
    latest tracking_number beside its id): the later correction was posted to a package that
    does not exist, refused, and the parcel failed with an alert."""
    from shops.platforms.tiktok import TikTokConnector
    from tests.logistics.test_tracking_outbox_races import _lease_over, _WorkerDied

    shop, store = world_for(tenant_a, "tiktok")
    parcels = parcels_of(shop, store, 12, seed=7)
    with tenant_context(tenant_a):
        parcel = next(p for p in parcels if p.lines.count() >= 2)
        first_line = parcel.lines.select_related("order_line").order_by("pk")[0].order_line
    first, corrected = usps(341), usps(342)
    split = shipment_tracking_accept(
        parcel,
        tracking_number=first,
        carrier_code="usps",
        source="csv",
        lines=[first_line.platform_line_id],
    )
    real_ship = TikTokConnector.ship

    def ship_then_die(self, *, request):
        real_ship(self, request=request)
        raise _WorkerDied

    monkeypatch.setattr(TikTokConnector, "ship", ship_then_die)
    with pytest.raises(_WorkerDied):
        push(shop)
    monkeypatch.setattr(TikTokConnector, "ship", real_ship)
    _lease_over(shop, split)
    assert push(shop).sent == 1  # found on TikTok: counted as sent, nothing posted again

    shipment_tracking_accept(split, tracking_number=corrected, carrier_code="usps", source="csv")
    summary = push(shop)

    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == corrected, summary
    with tenant_context(tenant_a):
        split.refresh_from_db()
        assert split.platform_package_id == on_platform.package_id
        row = TrackingPush.objects.get(shipment=split)
        assert (row.state, row.sent_number) == (TrackingPushState.SENT, corrected)


def test_an_outage_longer_than_the_retries_neither_gives_up_nor_floods_alerts(tenant_a):
    """The platform answers 500 to every call for longer than the outbox's tries (about an
    hour of backoff). Every parcel used to be given up for good with an alert of its own (a
    live-stream spike: thousands of alerts for one outage), and none was sent once the
    platform was back. They keep retrying, one alert says the shop's write-back is failing, and
    it closes when the platform takes numbers again."""
    from django.utils import timezone

    from logistics.outbox import MAX_ATTEMPTS

    shop, store = world_for(tenant_a, "shopify")
    parcels = parcels_of(shop, store, 3)
    for serial, parcel in enumerate(parcels, start=351):
        shipment_tracking_accept(
            parcel, tracking_number=usps(serial), carrier_code="usps", source="csv"
        )
    store.fault_rate, store.fault_kinds = 1.0, ["500"]
    store.save(update_fields=["fault_rate", "fault_kinds"])

    for _ in range(MAX_ATTEMPTS + 1):
        with tenant_context(tenant_a):  # the backoff is over
            TrackingPush.objects.exclude(due_at=None).update(due_at=timezone.now())
        push(shop)

    with tenant_context(tenant_a):
        states = set(TrackingPush.objects.values_list("state", flat=True))
        open_alerts = list(
            Alert.objects.filter(resolved_at__isnull=True, key__startswith="tracking.")
            .exclude(key__startswith=f"tracking.paused.{shop.pk}")
            .values_list("key", flat=True)
        )
    assert states == {TrackingPushState.RETRYING}
    assert len(open_alerts) == 1, open_alerts

    store.fault_rate = 0.0
    store.save(update_fields=["fault_rate"])
    with tenant_context(tenant_a):
        TrackingPush.objects.update(due_at=timezone.now())
    assert push(shop).sent == 3
    with tenant_context(tenant_a):
        assert not Alert.objects.filter(resolved_at__isnull=True, key=open_alerts[0]).exists()


def test_a_frozen_tiktok_package_shipped_alone_is_retried_not_given_up(tenant_a):
    """TikTok's "package in freeze status" (10007014) is read as "not now" inside a batch call,
    but the same answer to a package shipped on its own (batching off for the shop, or the one
    number sent alone after a release) failed the parcel for good with an alert."""
    from django.utils import timezone

    from tests.logistics.test_tracking_batch import batch_size

    shop, store = world_for(tenant_a, "tiktok")
    batch_size(shop, 0)
    (parcel,) = parcels_of(shop, store)
    with tenant_context(tenant_a):
        parcel.refresh_from_db()
    package_id = parcel.order.raw["line_items"][0]["package_id"]
    store.package_faults = {package_id: ["frozen"]}
    store.save(update_fields=["package_faults"])
    shipment_tracking_accept(parcel, tracking_number=usps(361), carrier_code="usps", source="csv")

    assert push(shop).failed == 1

    with tenant_context(tenant_a):
        row = TrackingPush.objects.get(shipment=parcel)
        assert row.state == TrackingPushState.RETRYING and row.due_at is not None
        assert not Alert.objects.filter(kind="tracking_push_failed").exists()
        TrackingPush.objects.filter(pk=row.pk).update(due_at=timezone.now())
    assert push(shop).sent == 1
    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == usps(361)
