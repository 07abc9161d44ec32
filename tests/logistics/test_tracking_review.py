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
