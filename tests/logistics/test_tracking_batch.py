"""TikTok tracking write-back in batches (Batch Ship Packages), against the sandbox over HTTP.

Parcels that fill a package TikTok already holds go `ship_batch_size()` to a call; each package
is answered on its own. The sandbox counts every ship call naming a package
(`SandboxShipment.ship_requests`), so "never posted twice" is counted, not assumed.
"""

from __future__ import annotations

import math

import httpx
import pytest
from django.utils import timezone

from logistics.models import (
    TrackingAttemptResult,
    TrackingPush,
    TrackingPushAttempt,
    TrackingPushState,
)
from logistics.outbox import tracking_push_due, tracking_push_shop, tracking_writeback_release
from logistics.tracking import shipment_tracking_accept
from sandbox.models import SandboxShipment
from sandbox.tiktok import MAX_BATCH_SHIP
from shops.models import Shop, ShopCredentials
from shops.platforms import connector_for
from shops.platforms.http import sandbox_transport
from shops.platforms.tiktok import TikTokConnector
from tests.logistics.test_tracking_writeback import parcels_of, usps, world_for
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

BATCH_PATH = "/sandbox/tiktok/fulfillment/202309/packages/ship"


@pytest.fixture
def world(tenant_a):
    """A TikTok shop on its sandbox with stock, review off and USPS mapped: (shop, store)."""
    return world_for(tenant_a, "tiktok")


class CountingTransport(httpx.BaseTransport):
    """The in-process sandbox, with every request's method and path written down."""

    def __init__(self):
        self.inner = sandbox_transport()
        self.calls: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    def count(self, path: str = BATCH_PATH) -> int:
        return sum(1 for _, called in self.calls if called == path)

    def single_ships(self) -> int:
        """Calls that ship one package or mark one order's items shipped."""
        return sum(
            1
            for _, called in self.calls
            if called != BATCH_PATH and (called.endswith("/ship") or called.endswith("/packages"))
        )


def batch_size(shop, size: int) -> None:
    credentials = ShopCredentials._base_manager.get(shop=shop)
    credentials.extra = {**(credentials.extra or {}), "ship_batch_size": size}
    credentials.save(update_fields=["extra"])


def push_counted(shop) -> tuple:
    """One outbox run for the shop through a counting transport: (summary, transport)."""
    transport = CountingTransport()
    shop = Shop._base_manager.get(pk=shop.pk)
    connector = connector_for(shop, max_retries=0, transport=transport)
    try:
        with tenant_context(shop.tenant):
            summary = tracking_push_shop(shop=shop, connector=connector)
    finally:
        connector.http.close()
    return summary, transport


def accept(parcels, first_serial: int) -> dict[int, str]:
    """Give each parcel its number (through the one door); parcel pk -> number."""
    numbers = {}
    for offset, parcel in enumerate(parcels):
        number = usps(first_serial + offset)
        shipment_tracking_accept(parcel, tracking_number=number, carrier_code="usps", source="csv")
        numbers[parcel.pk] = number
    return numbers


def on_platform(store, parcel) -> list[SandboxShipment]:
    return list(
        SandboxShipment.objects.filter(store=store, order_id=parcel.order.platform_order_id)
    )


def test_a_batch_of_n_parcels_makes_ceil_n_over_max_calls(world):
    shop, store = world
    batch_size(shop, 3)
    parcels = parcels_of(shop, store, 7)
    numbers = accept(parcels, 300)

    summary, transport = push_counted(shop)

    assert (summary.sent, summary.failed, summary.blocked) == (7, 0, 0)
    assert transport.count() == math.ceil(7 / 3)
    assert transport.single_ships() == 0
    for parcel in parcels:
        (shipment,) = on_platform(store, parcel)
        assert shipment.tracking_number == numbers[parcel.pk]
        assert shipment.payload["shipping_provider_name"] == "USPS"
        assert shipment.ship_requests == 1
        with tenant_context(shop.tenant):
            parcel.refresh_from_db()
            assert parcel.platform_package_id == shipment.package_id
    with tenant_context(shop.tenant):
        attempts = list(TrackingPushAttempt.objects.values_list("call", "result", "latency_ms"))
        assert len(attempts) == 7
        assert {(call, result) for call, result, _ in attempts} == {
            ("batch_ship", TrackingAttemptResult.SENT)
        }
        assert all(latency >= 0 for *_, latency in attempts)
        assert set(TrackingPush.objects.values_list("state", flat=True)) == {TrackingPushState.SENT}


def test_the_batch_maximum_is_the_platforms_and_the_sandbox_refuses_more(world):
    shop, _ = world
    assert TikTokConnector.ship_batch_max == MAX_BATCH_SHIP
    connector = connector_for(Shop._base_manager.get(pk=shop.pk), max_retries=0)
    try:
        assert connector.ship_batch_size() == MAX_BATCH_SHIP
        # The sandbox checks the bound on its own (a client bug cannot hide behind it).
        body = {"packages": [{"id": str(n), "handover_method": "DROP_OFF"} for n in range(51)]}
        with pytest.raises(Exception, match="at most 50 per request"):
            connector.request("POST", "/fulfillment/202309/packages/ship", body=body)
    finally:
        connector.http.close()


def test_one_invalid_item_stops_the_shop_after_one_rejection_and_loses_nothing(world):
    shop, store = world
    batch_size(shop, 3)
    parcels = parcels_of(shop, store, 5)
    numbers = accept(parcels, 320)
    bad = parcels[1]
    store.unknown_tracking_numbers = [numbers[bad.pk]]  # the carrier has no record of it
    store.save(update_fields=["unknown_tracking_numbers"])

    summary, transport = push_counted(shop)

    # The first call carried parcels 0-2: 0 and 2 shipped, 1 was rejected. The second call
    # (3 and 4) was never made.
    assert (summary.sent, summary.failed, summary.blocked) == (2, 1, 2)
    assert transport.count() == 1 and transport.single_ships() == 0
    with tenant_context(shop.tenant):
        shop.refresh_from_db()
        assert shop.tracking_paused_at is not None and numbers[bad.pk] in shop.tracking_pause_reason
        states = dict(TrackingPush.objects.values_list("shipment_id", "state"))
        rejections = TrackingPushAttempt.objects.filter(result=TrackingAttemptResult.REJECTED)
        assert rejections.count() == 1
    assert states[bad.pk] == TrackingPushState.REJECTED
    assert [states[p.pk] for p in parcels[3:]] == [TrackingPushState.BLOCKED] * 2
    assert [len(on_platform(store, p)) for p in parcels] == [1, 0, 1, 0, 0]

    with tenant_context(shop.tenant):
        assert tracking_writeback_release(shop=Shop._base_manager.get(pk=shop.pk)) == 2
    released, transport = push_counted(shop)

    # After a rejection one number goes alone first, then the rest batch again.
    assert (released.sent, released.failed, released.blocked) == (2, 0, 0)
    assert transport.single_ships() == 1 and transport.count() == 1
    for parcel in parcels[3:]:
        (shipment,) = on_platform(store, parcel)
        assert shipment.tracking_number == numbers[parcel.pk] and shipment.ship_requests == 1
    assert on_platform(store, bad) == []  # the rejected number is never sent again


def test_a_package_failing_for_now_is_retried_and_the_others_ship(world):
    shop, store = world
    parcels = parcels_of(shop, store, 3)
    numbers = accept(parcels, 340)
    frozen = parcels[1]
    with tenant_context(shop.tenant):
        frozen.refresh_from_db()
    package_id = frozen.order.raw["line_items"][0]["package_id"]
    store.package_faults = {package_id: ["frozen"]}
    store.save(update_fields=["package_faults"])

    summary, transport = push_counted(shop)

    assert (summary.sent, summary.failed) == (2, 1) and transport.count() == 1
    with tenant_context(shop.tenant):
        row = TrackingPush.objects.get(shipment=frozen)
        assert row.state == TrackingPushState.RETRYING and row.due_at > timezone.now()
        attempt = TrackingPushAttempt.objects.get(push=row)
        assert attempt.result == TrackingAttemptResult.FAILED and "10007014" in attempt.error
        shop.refresh_from_db()
        assert shop.tracking_paused_at is None  # not the number's fault: no strike
        TrackingPush.objects.filter(pk=row.pk).update(due_at=timezone.now())
    assert on_platform(store, frozen) == []

    again, transport = push_counted(shop)

    assert again.sent == 1 and transport.count() == 1
    for parcel in parcels:
        (shipment,) = on_platform(store, parcel)
        assert shipment.tracking_number == numbers[parcel.pk] and shipment.ship_requests == 1


def test_a_retried_task_posts_nothing_twice(world):
    shop, store = world
    parcels = parcels_of(shop, store, 4)
    accept(parcels, 360)
    assert push_counted(shop)[0].sent == 4
    # The worker died after TikTok took the batch, before tkerp recorded it: every row is due
    # again as if never sent.
    with tenant_context(shop.tenant):
        TrackingPush.objects.update(
            state=TrackingPushState.PENDING, sent_number="", sent_at=None, due_at=timezone.now()
        )

    summary, transport = push_counted(shop)

    assert summary.sent == 4
    assert transport.count() == 0 and transport.single_ships() == 0
    assert transport.count("/sandbox/tiktok/order/202309/orders") == 1  # one check for all four
    assert [s.ship_requests for p in parcels for s in on_platform(store, p)] == [1, 1, 1, 1]
    with tenant_context(shop.tenant):
        last = TrackingPushAttempt.objects.order_by("-pk")[:4]
        assert {(a.call, a.result) for a in last} == {("check", TrackingAttemptResult.ALREADY)}


def test_a_package_shipped_already_with_the_number_counts_as_sent(world):
    shop, store = world
    parcels = parcels_of(shop, store, 2)
    numbers = accept(parcels, 380)
    by_hand = parcels[0]
    with tenant_context(shop.tenant):
        by_hand.refresh_from_db()
        package_id = by_hand.order.raw["line_items"][0]["package_id"]
    # The seller shipped it in Seller Center with the same number before tkerp's run.
    connector = connector_for(Shop._base_manager.get(pk=shop.pk), max_retries=0)
    try:
        connector.request(
            "POST",
            f"/fulfillment/202309/packages/{package_id}/ship",
            body={
                "handover_method": "DROP_OFF",
                "self_shipment": {
                    "tracking_number": numbers[by_hand.pk],
                    "shipping_provider_id": "7117858858072016686",
                },
            },
        )
    finally:
        connector.http.close()

    summary, _ = push_counted(shop)

    assert (summary.sent, summary.failed) == (2, 0)
    with tenant_context(shop.tenant):
        results = dict(TrackingPushAttempt.objects.values_list("shipment_id", "result"))
    assert results == {
        by_hand.pk: TrackingAttemptResult.ALREADY,
        parcels[1].pk: TrackingAttemptResult.SENT,
    }


def test_each_tenants_batch_carries_only_its_own_parcels(world, tenant_b):
    shop_a, store_a = world
    shop_b, store_b = world_for(tenant_b, "tiktok")
    parcels_a = parcels_of(shop_a, store_a, 2)
    parcels_b = parcels_of(shop_b, store_b, 2, seed=3)
    numbers = {**accept(parcels_a, 400), **accept(parcels_b, 410)}

    summary = tracking_push_due()

    assert summary.sent == 4 and sorted(summary.shops) == sorted([shop_a.pk, shop_b.pk])
    for store, parcels in ((store_a, parcels_a), (store_b, parcels_b)):
        shipped = SandboxShipment.objects.filter(store=store)
        assert sorted(s.tracking_number for s in shipped) == sorted(numbers[p.pk] for p in parcels)
    for tenant, parcels in ((shop_a.tenant, parcels_a), (tenant_b, parcels_b)):
        with tenant_context(tenant):
            assert set(TrackingPushAttempt.objects.values_list("shipment_id", flat=True)) == {
                p.pk for p in parcels
            }
            assert TrackingPush.objects.count() == 2
