"""A label bought and stored for a parcel whose order is then cancelled: the sweep of labels left
behind refunds it at the label sandbox, over real HTTP (in-process WSGI), once, records the
outcome on the parcel and names the label on the order; a refund refused is left to a person
with an alert; a parcel that shipped is never voided; only the tenant it runs for is touched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from logistics.labels import cancelled as cancelled_labels
from logistics.labels.base import LabelError
from logistics.labels.labelapi import LabelApiSource
from logistics.labels.store import shipment_label_buy
from logistics.models import LabelRefund, Shipment, ShipmentStatus
from logistics.tasks import resolve_left_labels
from orders.cancellations import order_cancel_close
from orders.models import OrderEvent
from sandbox.models import SandboxLabelAccount, SandboxLabelShipment
from tests.logistics.labels_helpers import label_world, purchases, refunds_then_stop
from tests.logistics.test_label_api import reload
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.usefixtures("label_media")


@pytest.fixture
def world(tenant_a):
    return label_world(tenant_a)


def labelled(world, service: str = "usps") -> Shipment:
    parcel = shipment_label_buy(shipment=world.parcel(service))
    assert parcel.status == ShipmentStatus.LABELLED and parcel.source_label_id
    return parcel


def cancelled(parcel) -> None:
    """The buyer's cancellation closes the parcel's order."""
    with tenant_context(parcel.tenant):
        order_cancel_close(order=parcel.order, reason="buyer changed their mind")
    assert reload(parcel).status == ShipmentStatus.CANCELLED


def refunds(world) -> int:
    return SandboxLabelAccount.objects.get(pk=world.remote.pk).refunds


def refund_status(parcel) -> str | None:
    return SandboxLabelShipment.objects.get(shipment_id=parcel.source_label_id).refund_status


def events(parcel, kind: str):
    return list(OrderEvent._base_manager.filter(order_id=parcel.order_id, kind=kind))


@pytest.fixture
def refunds_asked(monkeypatch) -> list[str]:
    """Every refund request sent to the service (the sandbox answers a repeat without counting
    it, so the requests are counted here)."""
    asked: list[str] = []
    real = LabelApiSource._refund

    def counted(self, label_id):
        asked.append(label_id)
        return real(self, label_id)

    monkeypatch.setattr(LabelApiSource, "_refund", counted)
    return asked


@pytest.mark.django_db
class TestCancelledAfterLabelling:
    def test_the_label_is_refunded_named_on_the_order_and_recorded_once(self, world, refunds_asked):
        parcel = labelled(world)
        cancelled(parcel)

        done = resolve_left_labels()

        assert refund_status(parcel) == "submitted" and refunds(world) == 1
        assert refunds_asked == [parcel.source_label_id]
        assert done["labels_refunded"] == 1 and done["labels_failed"] == 0
        fresh = reload(parcel)
        assert fresh.label_refund == LabelRefund.REFUNDED and fresh.label_refund_at is not None
        assert fresh.status == ShipmentStatus.CANCELLED
        [event] = events(parcel, "shipment.label_refunded")
        assert f"the label with tracking number {parcel.tracking_number}" in event.message
        assert event.data["tracking_number"] == parcel.tracking_number
        assert purchases(world) == 1

        again = resolve_left_labels()

        assert again["labels_refunded"] == 0 and refunds_asked == [parcel.source_label_id]
        assert len(events(parcel, "shipment.label_refunded")) == 1

    def test_a_run_stopped_after_asking_is_finished_without_asking_again(self, world, monkeypatch):
        parcel = labelled(world)
        cancelled(parcel)
        asked = refunds_then_stop(monkeypatch)
        with pytest.raises(SystemExit):
            resolve_left_labels()
        assert reload(parcel).label_refund == LabelRefund.ASKING and refunds(world) == 1
        # Another run while the first may still be asking leaves it alone.
        assert resolve_left_labels()["labels_refunded"] == 0 and asked == [parcel.source_label_id]
        # The stopped run's claim runs out.
        Shipment._base_manager.filter(pk=parcel.pk).update(
            label_refund_at=timezone.now() - timedelta(hours=1)
        )

        done = resolve_left_labels()

        assert asked == [parcel.source_label_id]  # no second refund request
        assert done["labels_refunded"] == 1
        assert reload(parcel).label_refund == LabelRefund.REFUNDED
        assert len(events(parcel, "shipment.label_refunded")) == 1

    def test_a_service_not_answering_keeps_the_label_for_the_next_run(self, world, monkeypatch):
        parcel = labelled(world)
        cancelled(parcel)

        def unanswered(self, label_id):
            raise LabelError("the label service is not answering", retryable=True)

        monkeypatch.setattr(LabelApiSource, "_refund", unanswered)
        done = resolve_left_labels()

        assert done["labels_failed"] == 1 and refunds(world) == 0
        assert reload(parcel).label_refund == LabelRefund.NONE
        assert not events(parcel, "shipment.label_refunded")
        assert not events(parcel, "shipment.label_void_failed")

        monkeypatch.undo()
        assert resolve_left_labels()["labels_refunded"] == 1 and refunds(world) == 1

    def test_a_label_the_service_keeps_failing_on_waits_behind_the_others(self, world, monkeypatch):
        first, second = labelled(world), labelled(world)
        cancelled(first)
        cancelled(second)
        monkeypatch.setattr(cancelled_labels, "BATCH", 1)
        real = LabelApiSource._refund

        def first_unanswered(self, label_id):
            if label_id == first.source_label_id:
                raise LabelError("the label service is not answering", retryable=True)
            return real(self, label_id)

        monkeypatch.setattr(LabelApiSource, "_refund", first_unanswered)
        assert resolve_left_labels()["labels_failed"] == 1  # the first parcel, the older one
        failed = reload(first)
        assert failed.label_refund == LabelRefund.NONE and failed.label_refund_at is not None

        assert resolve_left_labels()["labels_refunded"] == 1  # the other parcel's turn
        assert reload(second).label_refund == LabelRefund.REFUNDED
        monkeypatch.undo()
        assert resolve_left_labels()["labels_refunded"] == 1
        assert reload(first).label_refund == LabelRefund.REFUNDED and refunds(world) == 2

    def test_a_refund_the_service_refuses_names_the_label_for_a_person(self, world):
        parcel = labelled(world)
        # The carrier turned the refund down (EasyPost's refund_status "rejected").
        remote = SandboxLabelShipment.objects.get(shipment_id=parcel.source_label_id)
        remote.refund_status = remote.payload["refund_status"] = "rejected"
        remote.save()
        cancelled(parcel)

        done = resolve_left_labels()

        assert done["labels_named"] == 1
        assert reload(parcel).label_refund == LabelRefund.REFUSED
        [event] = events(parcel, "shipment.label_void_failed")
        assert f"the label with tracking number {parcel.tracking_number}" in event.message
        assert "void it at the label service" in event.message
        alert = Alert._base_manager.get(tenant=world.tenant, kind="label.void_failed")
        assert parcel.tracking_number in alert.message
        assert resolve_left_labels()["labels_named"] == 0
        assert len(events(parcel, "shipment.label_void_failed")) == 1

    def test_a_parcel_cancelled_by_a_person_is_refunded_too(self, world):
        parcel = labelled(world)
        # The parcel's status set by hand (its change form), not through the order.
        Shipment._base_manager.filter(pk=parcel.pk).update(status=ShipmentStatus.CANCELLED)

        assert resolve_left_labels()["labels_refunded"] == 1 and refunds(world) == 1


@pytest.mark.django_db
class TestNeverVoided:
    def test_a_parcel_on_its_way_is_not_voided(self, world):
        shipped, scanned = labelled(world), labelled(world)
        Shipment._base_manager.filter(pk=shipped.pk).update(
            status=ShipmentStatus.SHIPPED, shipped_at=timezone.now()
        )
        # Cancelled, yet the carrier scanned it: it left, its label is used.
        Shipment._base_manager.filter(pk=scanned.pk).update(
            status=ShipmentStatus.CANCELLED, first_scan_at=timezone.now()
        )

        done = resolve_left_labels()

        assert refunds(world) == 0 and done["labels_refunded"] == 0
        assert not refund_status(shipped) and not refund_status(scanned)
        assert reload(shipped).label_refund == LabelRefund.NONE
        assert reload(scanned).label_refund == LabelRefund.BY_HAND
        [event] = events(scanned, "shipment.label_void_failed")
        assert "scanned" in event.message and scanned.tracking_number in event.message

    def test_tiktok_shipping_labels_are_left_to_tiktok(self, world):
        parcel = labelled(world)
        # As TikTok's own shipping label is stored: TikTok cancels it with the order's package.
        Shipment._base_manager.filter(pk=parcel.pk).update(
            label_source="tiktok", label_account=None
        )
        cancelled(parcel)

        done = resolve_left_labels()

        assert (done["labels_refunded"], done["labels_named"], refunds(world)) == (0, 0, 0)
        assert reload(parcel).label_refund == LabelRefund.NONE
        assert not events(parcel, "shipment.label_void_failed")
        assert not Alert._base_manager.filter(
            tenant=world.tenant, kind="label.void_failed"
        ).exists()


@pytest.mark.django_db
class TestTenants:
    def test_another_tenants_parcels_are_not_touched(self, world, tenant_b):
        from logistics.labels.cancelled import cancelled_labels_refund

        other = label_world(tenant_b)
        ours, theirs = labelled(world), labelled(other)
        cancelled(ours)
        cancelled(theirs)

        done = cancelled_labels_refund(tenant=world.tenant)

        assert done.refunded == 1 and refunds(world) == 1
        assert refunds(other) == 0 and reload(theirs).label_refund == LabelRefund.NONE
        assert not events(theirs, "shipment.label_refunded")
        # The sweep of every tenant gets to theirs, in their own scope.
        assert resolve_left_labels()["labels_refunded"] == 1
        assert refunds(other) == 1 and reload(theirs).label_refund == LabelRefund.REFUNDED


@pytest.mark.django_db
def test_approving_the_buyers_request_in_the_inbox_gets_the_label_refunded(world, client_a):
    from orders.models import CancellationRequest, Order, OrderHold, OrderLine, OrderStatus
    from sandbox.base import sandbox_for
    from sandbox.models import SandboxOrder
    from shops.sync import shop_sync
    from tests.e2e.helpers import add_orders, connect_shop
    from tests.factories import ShipmentFactory, ShipmentLineFactory, TenantOrderPolicyFactory
    from tests.orders.admin_helpers import run_action

    TenantOrderPolicyFactory(tenant=world.tenant, cancel_auto_approve=False)
    shop, store = connect_shop(world.tenant, "shopify")
    [generated] = add_orders(store, 1, start=timezone.now() - timedelta(minutes=30))
    with tenant_context(world.tenant):
        assert shop_sync(shop=shop).status == "success"
    order = Order._base_manager.get(shop=shop)
    # Its stock is not the point here: the order is taken as allocated, out of its hold.
    OrderHold._base_manager.filter(order=order).update(released_at=timezone.now())
    Order._base_manager.filter(pk=order.pk).update(status=OrderStatus.ALLOCATED)
    parcel = ShipmentFactory(order=order, warehouse=world.warehouse, service=world.services["usps"])
    line = OrderLine._base_manager.filter(order=order).first()
    ShipmentLineFactory(shipment=parcel, order_line=line, quantity=line.quantity)
    parcel = shipment_label_buy(shipment=parcel)
    # The label is printed; then the buyer asks to cancel, and a person approves in the inbox.
    sandbox_for("shopify").request_cancellation(
        store=store, order=SandboxOrder.objects.get(pk=generated.pk)
    )
    with tenant_context(world.tenant):
        assert shop_sync(shop=shop).status == "success"
    request = CancellationRequest._base_manager.get(order=order)

    response = run_action(client_a, CancellationRequest, "approve_requests", [request.pk])

    assert response.status_code == 302
    assert reload(parcel).status == ShipmentStatus.CANCELLED
    assert resolve_left_labels()["labels_refunded"] == 1
    assert refund_status(parcel) == "submitted" and refunds(world) == 1
    assert events(parcel, "shipment.label_refunded")


@pytest.mark.django_db
def test_voiding_a_cancelled_parcel_by_hand_says_the_refund_comes_by_itself(world):
    from logistics.labels.store import shipment_label_void

    parcel = labelled(world)
    cancelled(parcel)

    with pytest.raises(LabelError) as caught:
        shipment_label_void(shipment=parcel)

    assert (
        caught.value.code == "cancelled" and "goes back to the label service" in caught.value.reason
    )
    assert refunds(world) == 0


@pytest.mark.django_db
def test_a_parcel_cancelled_while_a_person_voids_its_label_stays_cancelled(world, monkeypatch):
    from logistics.labels.store import shipment_label_void

    parcel = labelled(world)
    real = LabelApiSource.void

    def void_then_cancelled(self, *, shipment):
        real(self, shipment=shipment)
        order_cancel_close(order=shipment.order, reason="the platform cancelled it meanwhile")

    monkeypatch.setattr(LabelApiSource, "void", void_then_cancelled)
    voided = shipment_label_void(shipment=parcel)

    assert voided.status == ShipmentStatus.CANCELLED and refunds(world) == 1
    assert not voided.tracking_number and voided.label_voids == 1
    monkeypatch.undo()
    assert resolve_left_labels()["labels_refunded"] == 0 and refunds(world) == 1


@pytest.mark.django_db
def test_a_person_voiding_the_label_a_moment_before_the_sweep_raises_no_alert(world, monkeypatch):
    """A person's *Void label* reaches the service just before the sweep's refund, and the
    service refuses the repeat (as a real one may: the sandbox answers it): the label went
    back, so it is recorded refunded, with no alert to void it by hand."""
    parcel = labelled(world)
    cancelled(parcel)
    real = LabelApiSource._refund

    def voided_first_then_refused(self, label_id):
        real(self, label_id)  # the person's request, a moment before
        raise LabelError("the label service refused the refund: already submitted")

    monkeypatch.setattr(LabelApiSource, "_refund", voided_first_then_refused)
    done = resolve_left_labels()

    assert done["labels_refunded"] == 1 and done["labels_named"] == 0
    assert reload(parcel).label_refund == LabelRefund.REFUNDED
    assert refund_status(parcel) == "submitted"
    assert not events(parcel, "shipment.label_void_failed")
    assert not Alert._base_manager.filter(kind="label.void_failed").exists()


@pytest.mark.django_db
def test_parcels_cancelled_before_the_sweep_existed_are_left_as_they_were(world):
    """Migration 0019: a label cancelled before this release may be past its refund window or
    voided at the service by a person; it is marked by hand, never asked about (no flood of
    refusals and alerts at deploy). Parcels cancelled afterwards are refunded as usual."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("logistics.migrations.0019_cancelled_labels_before_the_refund_sweep")
    before, tiktok = labelled(world), labelled(world)
    Shipment._base_manager.filter(pk=tiktok.pk).update(label_source="tiktok")
    cancelled(before)
    cancelled(tiktok)

    migration.cancelled_labels_left_by_hand(apps, None)

    assert reload(before).label_refund == LabelRefund.BY_HAND
    assert reload(tiktok).label_refund == LabelRefund.NONE  # nothing to refund: untouched
    after = labelled(world)
    cancelled(after)
    done = resolve_left_labels()
    assert done["labels_refunded"] == 1 and refunds(world) == 1
    assert reload(after).label_refund == LabelRefund.REFUNDED
    assert not events(before, "shipment.label_refunded")


@pytest.mark.django_db
def test_a_parcel_whose_refund_was_asked_unanswered_cannot_be_set_back(
    world, client_a, monkeypatch
):
    """The service took the refund but its answer was lost: the claim is released (`none`, with
    the time it was asked). The label may well be refunded, so the parcel must not be set back
    to labelled in the admin (it would print and ship a voided label, and leave the sweep)."""
    from django.urls import reverse

    parcel = labelled(world)
    cancelled(parcel)
    real = LabelApiSource._refund

    def taken_answer_lost(self, label_id):
        real(self, label_id)
        raise LabelError("the label service is not answering", retryable=True)

    monkeypatch.setattr(LabelApiSource, "_refund", taken_answer_lost)
    assert resolve_left_labels()["labels_failed"] == 1
    fresh = reload(parcel)
    assert fresh.label_refund == LabelRefund.NONE and fresh.label_refund_at is not None
    assert refund_status(parcel) == "submitted"

    page = client_a.get(reverse("admin:logistics_shipment_change", args=[parcel.pk]))

    assert page.status_code == 200
    assert 'name="status"' not in page.content.decode()


@pytest.mark.django_db
def test_a_refusal_whose_check_goes_unanswered_is_asked_again_not_named(world, monkeypatch):
    """A person's *Void label* reached the service a moment before the sweep, which refuses the
    repeat; asking whether the refund was asked after all then goes unanswered. The label went
    back: no alert to void it by hand, the parcel is asked about again by a later run."""
    parcel = labelled(world)
    cancelled(parcel)
    real_refund, real_asked = LabelApiSource._refund, LabelApiSource.void_asked
    checks = []

    def voided_first_then_refused(self, label_id):
        real_refund(self, label_id)  # the person's request, a moment before
        raise LabelError("the label service refused the refund: already submitted")

    def second_check_unanswered(self, *, shipment):
        checks.append(shipment.pk)
        if len(checks) == 2:
            raise LabelError("the label service is not answering", retryable=True)
        return real_asked(self, shipment=shipment)

    monkeypatch.setattr(LabelApiSource, "_refund", voided_first_then_refused)
    monkeypatch.setattr(LabelApiSource, "void_asked", second_check_unanswered)
    done = resolve_left_labels()

    assert done["labels_named"] == 0
    assert not Alert._base_manager.filter(kind="label.void_failed").exists()
    assert reload(parcel).label_refund == LabelRefund.NONE  # given back to a later run
    monkeypatch.undo()
    assert resolve_left_labels()["labels_refunded"] == 1
    assert reload(parcel).label_refund == LabelRefund.REFUNDED


@pytest.mark.django_db
def test_a_refused_api_key_keeps_the_refund_for_a_later_run(world):
    """The seller rotated the account's API key at the service: the service refuses to be asked
    at all, which is not a refund refused. The label is refunded once the key is put right, not
    left for a person to void by hand."""
    parcel = labelled(world)
    cancelled(parcel)
    key = world.account.api_key
    world.account.api_key = "EZTK-not-a-key"
    world.account.save()

    done = resolve_left_labels()

    assert done["labels_named"] == 0 and done["labels_failed"] == 1
    assert reload(parcel).label_refund == LabelRefund.NONE
    assert not Alert._base_manager.filter(kind="label.void_failed").exists()
    unchecked = Alert._base_manager.filter(kind="label.refunds_unchecked", resolved_at__isnull=True)
    assert unchecked.count() == 1 and "API key" in unchecked.get().message
    world.account.api_key = key
    world.account.save()
    assert resolve_left_labels()["labels_refunded"] == 1
    assert refund_status(parcel) == "submitted"
    assert not unchecked.exists()


@pytest.mark.django_db(transaction=True)
def test_a_person_saving_the_parcel_while_the_sweep_refunds_it_leaves_it_cancelled(
    world, client_a, monkeypatch
):
    """A person has the cancelled parcel's page open (its status still editable: nothing asked
    yet) and saves it set back to labelled; between the admin reading the parcel and saving it,
    the sweep (another worker) claims it, has the label refunded and records that. The save
    must not write back what the page read: the parcel stays cancelled, its refund recorded."""
    import threading

    from django.db import connection
    from django.urls import reverse

    from logistics.admin import ShipmentAdmin
    from tests.logistics.test_tracking_doors import parcel_form_data

    parcel = labelled(world)
    cancelled(parcel)
    data = {**parcel_form_data(client_a, parcel), "status": ShipmentStatus.LABELLED}
    swept: list[dict] = []

    def sweep():
        try:
            swept.append(resolve_left_labels())
        finally:
            connection.close()

    real_save_form = ShipmentAdmin.save_form

    def sweep_runs_meanwhile(self, request, form, change):
        worker = threading.Thread(target=sweep)
        worker.start()
        worker.join()
        return real_save_form(self, request, form, change)

    monkeypatch.setattr(ShipmentAdmin, "save_form", sweep_runs_meanwhile)
    url = reverse("admin:logistics_shipment_change", args=[parcel.pk])
    page = client_a.post(url, data, follow=True)

    assert page.status_code == 200
    assert swept and swept[0]["labels_refunded"] == 1
    assert "stays cancelled" in page.content.decode()
    fresh = reload(parcel)
    assert fresh.status == ShipmentStatus.CANCELLED
    assert fresh.label_refund == LabelRefund.REFUNDED and fresh.label_refund_at is not None
    assert refund_status(parcel) == "submitted"
    assert len(events(parcel, "shipment.label_refunded")) == 1
