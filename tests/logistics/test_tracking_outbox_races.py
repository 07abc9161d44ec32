"""The tracking outbox when a row changes, or is taken over, while its send is on the wire.

A claim is the worker's only while its lease token is on the row: a number corrected during the
call goes out next (as an update), a run that outlived its lease neither posts again nor writes
over the run that took the row over. Same sandbox world as test_tracking_writeback.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from logistics.labels.store import shipment_label_buy, shipment_label_void
from logistics.models import Shipment, ShipmentStatus, TrackingPush, TrackingPushState
from logistics.tracking import shipment_tracking_accept
from shops.platforms.ebay import EbayConnector
from shops.platforms.shopify import ShopifyConnector
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


def test_a_number_corrected_while_the_first_is_being_sent_is_sent_too(tenant_a, monkeypatch):
    shop, store = world_for(tenant_a, "shopify")
    (parcel,) = parcels_of(shop, store)
    first, corrected = usps(201), usps(202)
    shipment_tracking_accept(parcel, tracking_number=first, carrier_code="usps", source="csv")
    real_ship = ShopifyConnector.ship

    def ship_then_correct(self, *, request):
        result = real_ship(self, request=request)
        shipment_tracking_accept(
            parcel, tracking_number=corrected, carrier_code="usps", source="csv"
        )
        return result

    monkeypatch.setattr(ShopifyConnector, "ship", ship_then_correct)
    assert push(shop).sent == 1
    monkeypatch.setattr(ShopifyConnector, "ship", real_ship)
    push(shop)
    push(shop)

    with tenant_context(shop.tenant):
        row = TrackingPush.objects.get(shipment=parcel)
        state = (row.number, row.sent_number, row.state)
    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == corrected, state
    assert state == (corrected, corrected, TrackingPushState.SENT)


def test_a_send_outliving_its_lease_does_not_post_again_nor_undo_the_takeover(
    tenant_a, monkeypatch
):
    shop, store = world_for(tenant_a, "ebay")
    first, second = parcels_of(shop, store, 2)
    shipment_tracking_accept(first, tracking_number=usps(211), carrier_code="usps", source="csv")
    shipment_tracking_accept(second, tracking_number=usps(212), carrier_code="usps", source="csv")
    real_ship, calls = EbayConnector.ship, []

    def slow_ship(self, *, request):
        calls.append(request.tracking_number)
        result = real_ship(self, request=request)
        if len(calls) == 1:  # the lease ran out meanwhile; the minute schedule runs
            with tenant_context(shop.tenant):
                TrackingPush.objects.filter(state=TrackingPushState.SENDING).update(
                    lease_until=timezone.now() - timedelta(seconds=1)
                )
            push(shop)
        return result

    monkeypatch.setattr(EbayConnector, "ship", slow_ship)
    push(shop)

    with tenant_context(shop.tenant):
        rows = {p.shipment_id: (p.state, p.last_error) for p in TrackingPush.objects.all()}
        alerts = list(
            Alert.objects.filter(kind="tracking_push_failed").values_list("title", flat=True)
        )
    assert len(sandbox_shipments(store, second.order.platform_order_id)) == 1
    assert len(sandbox_shipments(store, first.order.platform_order_id)) == 1
    assert rows[first.pk][0] == TrackingPushState.SENT, rows
    assert rows[second.pk][0] == TrackingPushState.SENT, rows
    assert alerts == []


def test_a_label_voided_while_its_number_is_being_sent_keeps_what_the_platform_took(
    tenant_a, monkeypatch, settings, tmp_path
):
    """The void used to delete the row mid-send: the sending run then failed on recording its
    attempt, and tkerp had no record of the number the platform kept (the next one would have
    gone out as a second shipment, not an update)."""
    settings.MEDIA_ROOT = tmp_path
    shop, store = world_for(tenant_a, "shopify")
    (parcel,) = parcels_of(shop, store)
    voided_number, next_number = usps(221), usps(222)
    shipment_tracking_accept(
        parcel, tracking_number=voided_number, carrier_code="usps", source="csv", ship=False
    )
    with tenant_context(shop.tenant):
        labelled = shipment_label_buy(shipment=Shipment.objects.get(pk=parcel.pk))
    assert labelled.status == ShipmentStatus.LABELLED
    real_ship = ShopifyConnector.ship

    def ship_then_void(self, *, request):
        result = real_ship(self, request=request)
        shipment_label_void(shipment=labelled)
        return result

    monkeypatch.setattr(ShopifyConnector, "ship", ship_then_void)
    push(shop)
    monkeypatch.setattr(ShopifyConnector, "ship", real_ship)
    with tenant_context(shop.tenant):
        row = TrackingPush.objects.get(shipment=parcel)
        assert (row.number, row.sent_number, row.state) == ("", voided_number, "sent")
    shipment_tracking_accept(parcel, tracking_number=next_number, carrier_code="usps", source="csv")
    push(shop)

    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == next_number


class _WorkerDied(BaseException):
    """A worker killed mid-call: nothing of the run's own code gets to run after it."""


def _void_mid_send_then_die(tenant, monkeypatch, settings, tmp_path, *, landed: bool):
    """A parcel whose label is voided while its number is on the wire, and whose sending run
    dies there, after the platform took the number (`landed`) or before the call left; the
    run's lease then runs out. Returns (shop, store, parcel, the voided number)."""
    settings.MEDIA_ROOT = tmp_path
    shop, store = world_for(tenant, "shopify")
    (parcel,) = parcels_of(shop, store)
    voided_number = usps(231)
    shipment_tracking_accept(
        parcel, tracking_number=voided_number, carrier_code="usps", source="csv", ship=False
    )
    with tenant_context(shop.tenant):
        labelled = shipment_label_buy(shipment=Shipment.objects.get(pk=parcel.pk))

    def void_then_die(ship, connector, request):
        if landed:
            ship(connector, request=request)
        shipment_label_void(shipment=labelled)

    _push_dies(shop, monkeypatch, void_then_die)
    with tenant_context(shop.tenant):
        row = TrackingPush.objects.get(shipment=parcel)
        assert (row.number, row.state) == ("", TrackingPushState.SENDING)
        # Its run is gone: nothing settles the row before its lease is over.
        push(shop)
        assert TrackingPush.objects.get(pk=row.pk).state == TrackingPushState.SENDING
    _lease_over(shop, parcel)
    return shop, store, parcel, voided_number


def _push_dies(shop, monkeypatch, before_dying) -> None:
    """A push run whose worker is killed during its ship call, once `before_dying(ship,
    connector, request)` has run (the real call, or not)."""
    real_ship = ShopifyConnector.ship

    def ship_then_die(self, *, request):
        before_dying(real_ship, self, request)
        raise _WorkerDied

    monkeypatch.setattr(ShopifyConnector, "ship", ship_then_die)
    with pytest.raises(_WorkerDied):
        push(shop)
    monkeypatch.setattr(ShopifyConnector, "ship", real_ship)


def _lease_over(shop, parcel) -> None:
    with tenant_context(shop.tenant):
        TrackingPush.objects.filter(shipment=parcel).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )


def _next_number_is_the_one_shipment(shop, store, parcel, number: str) -> None:
    """The parcel's next number goes out, and the platform holds it as the order's only
    shipment (an update of a number it kept, or its first)."""
    shipment_tracking_accept(parcel, tracking_number=number, carrier_code="usps", source="csv")
    push(shop)
    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == number


def test_a_voided_number_whose_run_died_after_the_platform_took_it_is_recorded(
    tenant_a, monkeypatch, settings, tmp_path
):
    """The row used to stay 'Being sent' for ever, blank; the next number would have gone out
    as a second shipment rather than an update of the one the platform kept."""
    shop, store, parcel, voided_number = _void_mid_send_then_die(
        tenant_a, monkeypatch, settings, tmp_path, landed=True
    )

    from logistics.outbox import tracking_push_due

    tracking_push_due(shop_id=shop.pk)  # the minute schedule finds the shop

    with tenant_context(shop.tenant):
        row = TrackingPush.objects.get(shipment=parcel)
        assert (row.number, row.sent_number, row.state) == ("", voided_number, "sent")
    _next_number_is_the_one_shipment(shop, store, parcel, usps(232))


def test_a_voided_number_whose_run_died_before_the_call_is_dropped(
    tenant_a, monkeypatch, settings, tmp_path
):
    shop, store, parcel, _ = _void_mid_send_then_die(
        tenant_a, monkeypatch, settings, tmp_path, landed=False
    )

    push(shop)

    with tenant_context(shop.tenant):
        assert not TrackingPush.objects.filter(shipment=parcel).exists()
    assert sandbox_shipments(store, parcel.order.platform_order_id) == []
    _next_number_is_the_one_shipment(shop, store, parcel, usps(233))


def test_a_voided_number_whose_run_died_is_left_to_a_person_where_the_platform_cannot_say(
    tenant_a, monkeypatch, settings, tmp_path
):
    """Amazon never gives a package's number back: the row stops being sent and says why."""
    shop, _, parcel, _ = _void_mid_send_then_die(
        tenant_a, monkeypatch, settings, tmp_path, landed=True
    )
    monkeypatch.setattr(
        ShopifyConnector,
        "shipped_tracking_numbers_many",
        lambda self, *, platform_order_ids: dict.fromkeys(platform_order_ids),
    )

    push(shop)

    with tenant_context(shop.tenant):
        row = TrackingPush.objects.get(shipment=parcel)
    assert row.state == TrackingPushState.FAILED
    assert "the platform cannot say which numbers it holds" in row.last_error


def test_a_number_posted_by_a_run_that_died_can_still_be_corrected(tenant_a, monkeypatch):
    """The next run finds the number on the platform and counts it sent; it also learns the
    fulfillment the dead run never stored, without which Shopify refuses the correction."""
    shop, store = world_for(tenant_a, "shopify")
    (parcel,) = parcels_of(shop, store)
    first, corrected = usps(241), usps(242)
    shipment_tracking_accept(parcel, tracking_number=first, carrier_code="usps", source="csv")
    _push_dies(shop, monkeypatch, lambda ship, connector, request: ship(connector, request=request))
    _lease_over(shop, parcel)
    assert push(shop).sent == 1
    shipment_tracking_accept(parcel, tracking_number=corrected, carrier_code="usps", source="csv")
    assert push(shop).sent == 1

    (on_platform,) = sandbox_shipments(store, parcel.order.platform_order_id)
    assert on_platform.tracking_number == corrected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Shopify: the fulfillment carries the number.
        ({"fulfillments": [{"id": 71, "tracking_numbers": ["1Z9"]}, {"id": 72}]}, "71"),
        # TikTok: each line item names its package beside the number.
        ({"line_items": [{"package_id": "P-1", "tracking_number": "1z9 "}]}, "P-1"),
        ({"line_items": [{"package_id": "P-1", "tracking_number": "OTHER"}]}, ""),
        ({"tracking_number": "1Z9"}, ""),
    ],
)
def test_the_package_holding_a_number_is_read_from_the_order_detail(raw, expected):
    from shops.platforms.base import package_id_in

    assert package_id_in(raw, "1Z9") == expected
