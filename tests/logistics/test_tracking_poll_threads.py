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
from sandbox.tracking import tracking_scenario_set
from tests.logistics.labels_helpers import label_world

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("label_media")]


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


def test_parcels_are_fetched_in_threads_and_stored_as_by_one(tenant_a, settings):
    world = label_world(tenant_a)
    scenarios = ["delivered", "stalled", "returned"] * 2
    by_one = [labelled(world, scenario) for scenario in scenarios]
    in_threads = [labelled(world, scenario) for scenario in scenarios * 2]
    settings.TKERP_TRACKING_POLL_WORKERS = 1
    serial = tracking_poll(tenant=tenant_a, force=True, shipment_ids=[p.pk for p in by_one])
    settings.TKERP_TRACKING_POLL_WORKERS = 4
    seen: set[str] = set()

    def note_thread(**kwargs):
        seen.add(threading.current_thread().name)

    request_started.connect(note_thread)
    try:
        result = tracking_poll(tenant=tenant_a, force=True, shipment_ids=[p.pk for p in in_threads])
    finally:
        request_started.disconnect(note_thread)

    # The sandbox was asked from the poll's threads, more than one of them.
    assert len({name for name in seen if name.startswith("tracking-")}) > 1
    assert (result.parcels, result.failed) == (12, 0)
    assert (result.events, result.delivered) == (2 * serial.events, 2 * serial.delivered)
    expected = {
        scenario: TrackingEvent._base_manager.filter(shipment=parcel).count()
        for parcel, scenario in zip(by_one, scenarios, strict=True)
    }
    for parcel, scenario in zip(in_threads, scenarios * 2, strict=True):
        assert TrackingEvent._base_manager.filter(shipment=parcel).count() == expected[scenario]
        parcel.refresh_from_db()
        assert parcel.tracking_polled_at is not None and parcel.tracking_poll_error == ""
        assert (parcel.status == ShipmentStatus.DELIVERED) == (scenario == "delivered")

    # Delivered and returned parcels are done; the stalled ones are asked again: every event
    # comes back, none is stored twice.
    again = tracking_poll(tenant=tenant_a, force=True)
    assert (again.parcels, again.events, again.failed) == (scenarios.count("stalled") * 3, 0, 0)
