"""Parcels followed until delivered, over real HTTP (in-process WSGI) against the label-API
sandbox's Trackers and TikTok Shop's order tracking: events stored once, deliveries moving the
parcel and its order on, exceptions marked and alerted, the parcel admin, the command, the
schedule, and another tenant seeing none of it."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from logistics.labels.store import shipment_label_buy
from logistics.models import (
    Shipment,
    ShipmentStatus,
    TrackingEvent,
    TrackingException,
    TrackingStatus,
)
from logistics.tasks import poll_tracking
from logistics.tracking_events import tiktok_status, tracking_alert_key, tracking_poll
from orders.models import Order, OrderEvent, OrderStatus
from sandbox.base import sandbox_for
from sandbox.models import SandboxTracker
from sandbox.tracking import tracking_scenario_set
from shops.schedules import schedule_specs
from tests.e2e.helpers import add_orders, connect_shop
from tests.factories import OrderFactory, ShipmentFactory, ShopFactory
from tests.logistics.labels_helpers import label_world
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("label_media")]


@pytest.fixture
def world(tenant_a):
    return label_world(tenant_a)


def _labelled(world, scenario: str, *, hours_ago: float, reference: str = "") -> Shipment:
    """A parcel with a label bought from the sandbox, handed over, whose carrier journey
    (`scenario`) started `hours_ago`."""
    parcel = world.parcel("usps", reference=reference, status=OrderStatus.SHIPPED)
    parcel = shipment_label_buy(shipment=parcel)
    started = timezone.now() - timedelta(hours=hours_ago)
    Shipment._base_manager.filter(pk=parcel.pk).update(
        status=ShipmentStatus.SHIPPED, labelled_at=started, shipped_at=started
    )
    tracking_scenario_set(
        tracking_code=parcel.tracking_number, scenario=scenario, started_at=started
    )
    parcel.refresh_from_db()
    return parcel


def _open_alerts(tenant) -> dict[str, str]:
    with tenant_context(tenant):
        return {a.key: a.title for a in Alert.objects.filter(resolved_at__isnull=True)}


class TestLabelServiceTrackers:
    def test_a_delivered_journey_is_stored_once_and_delivers_parcel_and_order(self, world):
        parcel = _labelled(world, "delivered", hours_ago=100)

        first = tracking_poll(tenant=world.tenant, force=True)
        second = tracking_poll(tenant=world.tenant, force=True)

        assert (first.parcels, first.events, first.delivered, first.failed) == (1, 7, 1, 0)
        # Polled again: the same seven events come back, none is stored twice.
        assert (second.parcels, second.events, second.delivered) == (0, 0, 0)
        events = list(TrackingEvent._base_manager.filter(shipment=parcel).order_by("occurred_at"))
        assert [e.status for e in events] == [
            "pre_transit",
            "in_transit",
            "in_transit",
            "in_transit",
            "in_transit",
            "out_for_delivery",
            "delivered",
        ]
        assert events[1].message == "Accepted at Origin Facility"
        assert events[1].location == "Reno, NV 89502"
        parcel.refresh_from_db()
        assert parcel.status == ShipmentStatus.DELIVERED
        assert parcel.delivered_at == events[-1].occurred_at
        assert parcel.first_scan_at == events[1].occurred_at
        assert parcel.tracking_status == TrackingStatus.DELIVERED
        # The label's own tracker (made when the label was bought) is the one followed.
        assert (
            parcel.tracker_id
            == SandboxTracker.objects.get(tracking_code=parcel.tracking_number).tracker_id
        )
        order = Order._base_manager.get(pk=parcel.order_id)
        assert order.status == OrderStatus.DELIVERED
        assert order.delivered_at == parcel.delivered_at
        assert OrderEvent._base_manager.filter(order=order, kind="delivered").count() == 1

    def test_polling_twice_without_force_waits_for_the_interval(self, world):
        parcel = _labelled(world, "stalled", hours_ago=10)
        assert tracking_poll(tenant=world.tenant).parcels == 1
        assert tracking_poll(tenant=world.tenant).parcels == 0  # polled a moment ago
        later = timezone.now() + timedelta(minutes=61)
        again = tracking_poll(tenant=world.tenant, now=later)
        assert again.parcels == 1 and again.events == 0
        assert TrackingEvent._base_manager.filter(shipment=parcel).count() == 3

    def test_a_journey_moves_on_between_polls(self, world):
        parcel = _labelled(world, "delivered", hours_ago=30)  # accepted, departed, at the hub
        assert tracking_poll(tenant=world.tenant, force=True).events == 4
        parcel.refresh_from_db()
        assert parcel.status == ShipmentStatus.IN_TRANSIT and parcel.delivered_at is None
        # A day later the sandbox tells the rest of the journey: only the new events are added.
        later = timezone.now() + timedelta(hours=30)
        with time_machine.travel(later, tick=False):
            result = tracking_poll(tenant=world.tenant, force=True)
        assert (result.events, result.delivered) == (3, 1)
        assert TrackingEvent._base_manager.filter(shipment=parcel).count() == 7

    def test_a_tracker_the_service_forgot_is_made_again(self, world):
        parcel = _labelled(world, "delivered", hours_ago=30)
        tracking_poll(tenant=world.tenant, force=True)
        SandboxTracker.objects.filter(tracking_code=parcel.tracking_number).delete()
        result = tracking_poll(tenant=world.tenant, shipment_ids=[parcel.pk], force=True)
        assert (result.parcels, result.failed) == (1, 0)
        parcel.refresh_from_db()
        assert (
            parcel.tracker_id
            == SandboxTracker.objects.get(tracking_code=parcel.tracking_number).tracker_id
        )

    def test_a_source_that_cannot_answer_is_recorded_on_the_parcel_and_retried_later(
        self, tenant_a
    ):
        order = OrderFactory(tenant=tenant_a, shop__platform="tiktok", status="shipped")
        parcel = ShipmentFactory(
            order=order, tracking_number="9400100000000000000001", status=ShipmentStatus.SHIPPED
        )
        result = tracking_poll(tenant=tenant_a, force=True)  # the shop was never connected
        assert (result.parcels, result.failed) == (1, 1)
        parcel.refresh_from_db()
        assert parcel.tracking_poll_error == "the shop is not connected to its platform"
        assert parcel.tracking_polled_at is not None and parcel.tracking_exception == ""


class TestExceptions:
    def test_each_exception_fires_from_sandbox_events_and_raises_its_alert(self, world, client_a):
        fine = _labelled(world, "delivered", hours_ago=100, reference="P-FINE")
        no_scan = _labelled(world, "no_scan", hours_ago=60, reference="P-NOSCAN")
        early = _labelled(world, "no_scan", hours_ago=5, reference="P-EARLY")
        stalled = _labelled(world, "stalled", hours_ago=200, reference="P-STALLED")
        failed = _labelled(world, "failure", hours_ago=100, reference="P-FAILED")
        returned = _labelled(world, "returned", hours_ago=100, reference="P-RETURNED")

        result = tracking_poll(tenant=world.tenant, force=True)

        assert result.exceptions == {
            TrackingException.RETURNED: 1,
            TrackingException.DELIVERY_FAILED: 1,
            TrackingException.NO_SCAN: 1,
            TrackingException.STALLED: 1,
        }
        marked = dict(
            Shipment._base_manager.filter(tenant=world.tenant).values_list(
                "reference", "tracking_exception"
            )
        )
        assert marked == {
            fine.reference: "",
            no_scan.reference: TrackingException.NO_SCAN,
            early.reference: "",  # labelled 5 h ago: the carrier has time yet
            stalled.reference: TrackingException.STALLED,
            failed.reference: TrackingException.DELIVERY_FAILED,
            returned.reference: TrackingException.RETURNED,
        }
        alerts = _open_alerts(world.tenant)
        assert alerts[tracking_alert_key("no_scan")] == (
            "1 parcel labelled 48 h ago with no carrier scan"
        )
        assert alerts[tracking_alert_key("stalled")] == "1 parcel with no tracking news for 72 h"
        assert alerts[tracking_alert_key("delivery_failed")] == "1 parcel whose delivery failed"
        assert alerts[tracking_alert_key("returned")] == "1 parcel returned to sender"

        # The parcel list filters by exception.
        assert changelist_pks(client_a, Shipment, "?tracking_exception=returned") == {returned.pk}
        assert changelist_pks(client_a, Shipment, "?tracking_exception=_any") == {
            no_scan.pk,
            stalled.pk,
            failed.pk,
            returned.pk,
        }

        # The stalled parcel turns up and is delivered: its exception and alert clear.
        tracking_scenario_set(
            tracking_code=stalled.tracking_number,
            scenario="delivered",
            started_at=timezone.now() - timedelta(hours=200),
        )
        tracking_poll(tenant=world.tenant, shipment_ids=[stalled.pk], force=True)
        stalled.refresh_from_db()
        assert stalled.tracking_exception == "" and stalled.delivered_at is not None
        assert tracking_alert_key("stalled") not in _open_alerts(world.tenant)
        assert tracking_alert_key("returned") in _open_alerts(world.tenant)

    def test_a_parcel_no_source_can_track_is_not_judged(self, tenant_a):
        order = OrderFactory(tenant=tenant_a, shop__platform="manual", status="shipped")
        long_ago = timezone.now() - timedelta(days=5)
        ShipmentFactory(
            order=order,
            tracking_number="9400100000000000000000",
            status=ShipmentStatus.SHIPPED,
            labelled_at=long_ago,
            shipped_at=long_ago,
        )
        result = tracking_poll(tenant=tenant_a, force=True)
        assert (result.parcels, result.untracked) == (0, 1)
        assert sum(result.exceptions.values()) == 0


class TestTikTokOrderTracking:
    def test_tiktok_descriptions_become_events_and_exceptions(self, tenant_a):
        shop, store = connect_shop(tenant_a, "tiktok")
        [remote] = add_orders(store, 1, start=timezone.now() - timedelta(days=6))
        shipped = timezone.now() - timedelta(hours=100)
        sandbox_for("tiktok").ship_order(
            store=store,
            order=remote,
            tracking_number="9400111899223100001234",
            carrier="usps",
            at=shipped,
        )
        tracking_scenario_set(tracking_code="9400111899223100001234", scenario="returned")
        order = OrderFactory(
            tenant=tenant_a, shop=shop, platform_order_id=remote.order_id, status="shipped"
        )
        parcel = ShipmentFactory(
            order=order,
            tracking_number="9400111899223100001234",
            status=ShipmentStatus.SHIPPED,
            shipped_at=shipped,
        )

        result = tracking_poll(tenant=tenant_a, force=True)

        assert (result.parcels, result.failed) == (1, 0)
        statuses = list(
            TrackingEvent._base_manager.filter(shipment=parcel)
            .order_by("occurred_at")
            .values_list("status", "source")
        )
        assert [status for status, _ in statuses] == [
            "pre_transit",
            "in_transit",
            "in_transit",
            "in_transit",
            "in_transit",
            "out_for_delivery",
            "failure",
            "return_to_sender",
        ]
        assert {source for _, source in statuses} == {"tiktok"}
        parcel.refresh_from_db()
        assert parcel.tracking_exception == TrackingException.RETURNED
        assert Order._base_manager.get(pk=order.pk).status == OrderStatus.SHIPPED
        assert tracking_poll(tenant=tenant_a, force=True).events == 0

    @pytest.mark.parametrize(
        ("description", "status"),
        [
            ("Shipping label created, awaiting carrier pickup", "pre_transit"),
            ("In transit: Arrived at Hub (Denver, CO)", "in_transit"),
            ("Out for delivery", "out_for_delivery"),
            ("Delivered (Austin, TX)", "delivered"),
            ("Delivery failed: Address Not Found", "failure"),
            ("Returned to sender", "return_to_sender"),
        ],
    )
    def test_statuses_are_read_from_the_words(self, description, status):
        assert tiktok_status(description) == status


class TestDoors:
    def test_the_command_polls_now_with_one_summary_line(self, world):
        _labelled(world, "returned", hours_ago=100)
        out = StringIO()
        call_command("poll_tracking", "--shop", str(world.shop.pk), stdout=out)
        assert out.getvalue().splitlines() == [
            "tracking events: 1 parcels polled, 8 new events, 0 delivered, 1 exceptions, 0 failed"
        ]
        with pytest.raises(CommandError, match="no shop with id 999999"):
            call_command("poll_tracking", "--shop", "999999")

    def test_the_demo_chooses_a_parcels_fate_from_the_command_line(self, world, tenant_b):
        parcel = _labelled(world, "delivered", hours_ago=1)
        out = StringIO()
        call_command(
            "sandbox",
            "tracking",
            "--shop",
            str(world.shop.pk),
            "--tracking",
            parcel.tracking_number,
            "--scenario",
            "failure",
            "--hours-ago",
            "100",
            stdout=out,
        )
        assert out.getvalue().strip() == (
            f"parcel {parcel.reference} ({parcel.tracking_number}): failure, "
            "journey started 100 h ago"
        )
        tracking_poll(tenant=world.tenant, force=True)
        parcel.refresh_from_db()
        assert parcel.tracking_exception == TrackingException.DELIVERY_FAILED
        # Another tenant's shop does not reach this parcel.
        other = ShopFactory(tenant=tenant_b)
        with pytest.raises(CommandError, match="has no parcel with tracking number"):
            call_command(
                "sandbox",
                "tracking",
                "--shop",
                str(other.pk),
                "--tracking",
                parcel.tracking_number,
                "--scenario",
                "returned",
            )

    def test_the_schedule_runs_the_poll_every_15_minutes(self, world):
        _labelled(world, "delivered", hours_ago=100)
        spec = next(s for s in schedule_specs() if s.func == "logistics.tasks.poll_tracking")
        assert spec.minutes == 15
        assert poll_tracking().startswith("tracking events: 1 parcels polled, 7 new events")

    def test_the_parcel_page_shows_its_events_read_only(self, world, client_a):
        parcel = _labelled(world, "delivered", hours_ago=100)
        tracking_poll(tenant=world.tenant, force=True)
        response = client_a.get(admin_url(Shipment, "change", parcel.pk))
        body = response.content.decode()
        assert response.status_code == 200
        assert "Accepted at Origin Facility" in body and "Out for Delivery" in body
        assert "tracking_events-0-message" not in body  # shown, not editable

    def test_the_admin_action_polls_the_selected_parcels(self, world, client_a):
        parcel = _labelled(world, "failure", hours_ago=100)
        response = client_a.post(
            admin_url(Shipment, "changelist"),
            {"action": "poll_tracking_now", "_selected_action": [str(parcel.pk)]},
            follow=True,
        )
        assert "Tracking: 1 parcels polled, 7 new events" in response.content.decode()
        parcel.refresh_from_db()
        assert parcel.tracking_exception == TrackingException.DELIVERY_FAILED


class TestTenancy:
    def test_another_tenant_sees_and_polls_none_of_it(self, world, tenant_b, client_b):
        parcel = _labelled(world, "returned", hours_ago=100)
        tracking_poll(tenant=world.tenant, force=True)

        assert tracking_poll(tenant=tenant_b, force=True).parcels == 0
        assert changelist_pks(client_b, Shipment, "?tracking_exception=_any") == set()
        assert_not_found(client_b, admin_url(Shipment, "change", parcel.pk))
        assert _open_alerts(tenant_b) == {}
        assert tracking_alert_key("returned") in _open_alerts(world.tenant)
        # The action, posted with another tenant's parcel, polls nothing of it.
        before = TrackingEvent._base_manager.filter(shipment=parcel).count()
        client_b.post(
            admin_url(Shipment, "changelist"),
            {"action": "poll_tracking_now", "_selected_action": [str(parcel.pk)]},
        )
        assert TrackingEvent._base_manager.filter(shipment=parcel).count() == before
