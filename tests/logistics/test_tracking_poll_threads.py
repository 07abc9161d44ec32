"""The tracking poll fetches parcels concurrently (threads per source, each source's token bucket
pacing its calls) and stores what came back exactly as the serial poll does. Committed data
(transaction=True): the threads' own database connections must see it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.signals import request_started
from django.utils import timezone

from logistics.labels.store import shipment_label_buy
from logistics.models import Shipment, ShipmentStatus, TrackingEvent
from logistics.tracking_events import tracking_poll
from orders.models import OrderStatus
from sandbox.base import reset_rate_limits
from sandbox.tracking import tracking_scenario_set
from tests.logistics.labels_helpers import label_world

pytestmark = pytest.mark.django_db(transaction=True)

# Events each journey has 100 hours after it began (the sandbox's scenarios).
EVENTS = {"delivered": 7, "stalled": 3, "returned": 6}


@pytest.fixture(autouse=True)
def label_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.TKERP_TRACKING_POLL_WORKERS = 4
    reset_rate_limits()


def labelled(world, scenario: str) -> Shipment:
    parcel = shipment_label_buy(shipment=world.parcel("usps", status=OrderStatus.SHIPPED))
    started = timezone.now() - timedelta(hours=100)
    Shipment._base_manager.filter(pk=parcel.pk).update(
        status=ShipmentStatus.SHIPPED, labelled_at=started, shipped_at=started
    )
    tracking_scenario_set(
        tracking_code=parcel.tracking_number, scenario=scenario, started_at=started
    )
    return parcel


def test_parcels_are_fetched_in_threads_and_stored_as_by_one(tenant_a):
    world = label_world(tenant_a)
    scenarios = ["delivered", "stalled", "returned"] * 4
    parcels = [labelled(world, scenario) for scenario in scenarios]
    seen: set[str] = set()

    def note_thread(**kwargs):
        seen.add(threading.current_thread().name)

    request_started.connect(note_thread)
    try:
        result = tracking_poll(tenant=tenant_a, force=True)
    finally:
        request_started.disconnect(note_thread)

    assert (result.parcels, result.failed) == (12, 0)
    assert result.events == sum(EVENTS[s] for s in scenarios)
    assert result.delivered == 4
    # The sandbox was asked from the poll's threads, more than one of them.
    assert len({name for name in seen if name.startswith("tracking-")}) > 1
    for parcel, scenario in zip(parcels, scenarios, strict=True):
        assert TrackingEvent._base_manager.filter(shipment=parcel).count() == EVENTS[scenario]
        parcel.refresh_from_db()
        assert parcel.tracking_polled_at is not None and parcel.tracking_poll_error == ""
        assert (parcel.status == ShipmentStatus.DELIVERED) == (scenario == "delivered")

    again = tracking_poll(tenant=tenant_a, force=True)
    assert again.events == 0  # every event came back; none is stored twice
