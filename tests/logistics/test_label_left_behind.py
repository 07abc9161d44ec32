"""A label sold for a parcel and never stored (a worker stopped), when the parcel is not bought
again (its order cancelled...): the sweep refunds it at the label sandbox, over real HTTP
(in-process WSGI), once, and only for the tenant it runs for."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from logistics.labels import left_behind
from logistics.labels.base import LabelError
from logistics.labels.labelapi import KEY_REUSED, LabelApiSource
from logistics.labels.left_behind import SETTLE
from logistics.labels.store import shipment_label_buy
from logistics.models import Shipment, ShipmentStatus
from logistics.tasks import resolve_left_labels
from orders.cancellations import order_cancel_close
from orders.models import Order, OrderEvent, OrderStatus
from sandbox.models import SandboxLabelAccount, SandboxLabelShipment
from tests.logistics.labels_helpers import label_world, purchases, refunds_then_stop
from tests.logistics.test_label_api import ScriptedFaults, _bought_then_stopped, reload
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.usefixtures("label_media")


@pytest.fixture
def world(tenant_a):
    return label_world(tenant_a)


def cancelled(parcel, *, ago: timedelta = SETTLE + timedelta(minutes=1)) -> None:
    """The buyer's cancellation closes the parcel's order (`ago` before now)."""
    with tenant_context(parcel.tenant):
        order_cancel_close(order=parcel.order, reason="buyer changed their mind")
    Shipment._base_manager.filter(pk=parcel.pk).update(updated_at=timezone.now() - ago)
    assert reload(parcel).status == ShipmentStatus.CANCELLED


def waited(parcel) -> None:
    """The parcel's record has waited `SETTLE` since it was last touched."""
    Shipment._base_manager.filter(pk=parcel.pk).update(
        updated_at=timezone.now() - SETTLE - timedelta(minutes=1)
    )


def refunds(world) -> int:
    return SandboxLabelAccount.objects.get(pk=world.remote.pk).refunds


def events(parcel, kind: str):
    return list(OrderEvent._base_manager.filter(order_id=parcel.order_id, kind=kind))


def record(parcel) -> tuple[str, str]:
    fresh = reload(parcel)
    return fresh.label_request_key, fresh.label_request


@pytest.mark.django_db
class TestCancelledAfterTheSale:
    def test_the_label_is_refunded_noted_and_the_record_cleared(self, world, monkeypatch):
        parcel = world.parcel("usps")
        sold = _bought_then_stopped(monkeypatch, parcel)
        cancelled(parcel)

        done = resolve_left_labels()

        remote = SandboxLabelShipment.objects.get(shipment_id=sold.source_label_id)
        assert remote.refund_status == "submitted" and refunds(world) == 1
        assert purchases(world) == 1
        assert record(parcel) == ("", "")
        assert done["refunded"] == 1 and done["failed"] == 0
        [event] = events(parcel, "shipment.label_refunded")
        assert f"the label with tracking number {sold.tracking_number}" in event.message
        assert "went back to the label service for a refund" in event.message
        assert event.data["tracking_number"] == sold.tracking_number

    def test_running_again_does_nothing_more(self, world, monkeypatch):
        parcel = world.parcel("usps")
        _bought_then_stopped(monkeypatch, parcel)
        cancelled(parcel)
        resolve_left_labels()

        again = resolve_left_labels()

        assert again == {
            "refunded": 0,
            "cleared": 0,
            "named": 0,
            "failed": 0,
            "labels_refunded": 0,
            "labels_named": 0,
            "labels_failed": 0,
        }
        assert refunds(world) == 1 and purchases(world) == 1
        assert len(events(parcel, "shipment.label_refunded")) == 1

    def test_a_run_stopped_after_the_refund_is_finished_without_asking_again(
        self, world, monkeypatch
    ):
        parcel = world.parcel("usps")
        sold = _bought_then_stopped(monkeypatch, parcel)
        cancelled(parcel)
        asked = refunds_then_stop(monkeypatch)
        with pytest.raises(SystemExit):
            resolve_left_labels()
        assert record(parcel)[0] and refunds(world) == 1

        done = resolve_left_labels()

        assert asked == [sold.source_label_id]  # no second refund request
        assert done["refunded"] == 1 and record(parcel) == ("", "")
        assert refunds(world) == 1 and purchases(world) == 1
        assert len(events(parcel, "shipment.label_refunded")) == 1

    def test_a_parcel_cancelled_by_a_person_is_resolved_too(self, world, monkeypatch):
        parcel = world.parcel("usps")
        _bought_then_stopped(monkeypatch, parcel)
        Shipment._base_manager.filter(pk=parcel.pk).update(
            status=ShipmentStatus.CANCELLED, updated_at=timezone.now() - SETTLE * 2
        )

        assert resolve_left_labels()["refunded"] == 1
        assert refunds(world) == 1 and record(parcel) == ("", "")

    def test_a_label_account_the_service_refuses_raises_an_alert_until_it_answers(
        self, world, monkeypatch
    ):
        parcel = world.parcel("usps")
        _bought_then_stopped(monkeypatch, parcel)
        cancelled(parcel)
        key = world.account.api_key
        world.account.api_key = "EZTK-not-a-key"  # the seller rotated it at the service
        world.account.save()

        def open_alerts() -> list[Alert]:
            return list(
                Alert._base_manager.filter(
                    tenant=world.tenant, kind="label.left_unchecked", resolved_at__isnull=True
                )
            )

        assert resolve_left_labels()["failed"] == 1
        assert record(parcel)[0] and refunds(world) == 0  # kept for a later run
        [alert] = open_alerts()
        assert "API key" in alert.message
        # It waits before being asked again; the alert stays open meanwhile.
        assert resolve_left_labels()["failed"] == 0
        assert [alert.pk for alert in open_alerts()] == [alert.pk]
        waited(parcel)
        resolve_left_labels()  # still refused: the same alert counted again, not a second one
        [again] = open_alerts()
        assert again.pk == alert.pk and again.occurrences == 2

        world.account.api_key = key
        world.account.save()
        waited(parcel)
        assert resolve_left_labels()["refunded"] == 1 and refunds(world) == 1
        assert open_alerts() == []

    def test_a_record_the_service_fails_on_waits_behind_the_others(self, world, monkeypatch):
        first, second = world.parcel("usps"), world.parcel("usps")
        _bought_then_stopped(monkeypatch, first)
        _bought_then_stopped(monkeypatch, second)
        cancelled(first)
        cancelled(second)
        monkeypatch.setattr(left_behind, "BATCH", 1)
        key = world.account.api_key
        world.account.api_key = "EZTK-not-a-key"
        world.account.save()
        assert resolve_left_labels()["failed"] == 1  # the first parcel, the older one
        world.account.api_key = key
        world.account.save()

        # The first parcel now waits SETTLE at the back of the queue: the other one's turn.
        assert resolve_left_labels()["refunded"] == 1
        assert record(first)[0] and record(second) == ("", "")
        waited(first)
        assert resolve_left_labels()["refunded"] == 1 and record(first) == ("", "")
        assert refunds(world) == 2 and purchases(world) == 2

    def test_a_refund_the_service_refuses_names_the_label_for_a_person(self, world, monkeypatch):
        parcel = world.parcel("usps")
        sold = _bought_then_stopped(monkeypatch, parcel)
        # The carrier turned the refund down (EasyPost's refund_status "rejected").
        remote = SandboxLabelShipment.objects.get(shipment_id=sold.source_label_id)
        remote.refund_status = remote.payload["refund_status"] = "rejected"
        remote.save()
        cancelled(parcel)

        done = resolve_left_labels()

        assert done["named"] == 1 and record(parcel) == ("", "")
        [event] = events(parcel, "shipment.label_void_failed")
        assert f"the label with tracking number {sold.tracking_number}" in event.message
        assert "void it at the label service" in event.message
        alert = Alert._base_manager.get(tenant=world.tenant, kind="label.void_failed")
        assert sold.tracking_number in alert.message
        assert resolve_left_labels()["named"] == 0
        assert len(events(parcel, "shipment.label_void_failed")) == 1

    def test_a_parcel_cancelled_while_its_label_was_bought_gets_it_refunded(self, world):
        from logistics.labels import store as label_store

        parcel = world.parcel("usps")
        with tenant_context(world.tenant):
            read = label_store._fresh(parcel.pk)  # as a batch's thread read it, at its start
        cancelled(parcel)
        source = LabelApiSource(account=world.account)

        with tenant_context(world.tenant), pytest.raises(LabelError) as caught:
            label_store._label_buy(read, source, blocker=None)
        source.close()

        assert caught.value.code == "not_pending" and purchases(world) == 1
        assert "it goes back to the label service for a refund" in caught.value.reason
        Shipment._base_manager.filter(pk=parcel.pk).update(updated_at=timezone.now() - SETTLE * 2)
        assert resolve_left_labels()["refunded"] == 1
        assert refunds(world) == 1 and record(parcel) == ("", "")


@pytest.mark.django_db
class TestNothingSold:
    def test_a_purchase_never_answered_is_cleared_without_buying_or_refunding(
        self, world, monkeypatch
    ):
        parcel = world.parcel("usps")
        # The purchase never gets an answer (a 503, retries spent): its request stays written
        # down, and nothing was sold for it.
        source = LabelApiSource(account=world.account, sleep=lambda _: None, max_retries=0)
        source._carrier_account("USPS")
        SandboxLabelAccount.objects.filter(pk=world.remote.pk).update(
            fault_rate=1.0, fault_kinds=["503"]
        )
        monkeypatch.setattr("sandbox.base._rng", ScriptedFaults("503"))
        with pytest.raises(LabelError):
            shipment_label_buy(shipment=parcel, source=source)
        SandboxLabelAccount.objects.filter(pk=world.remote.pk).update(fault_rate=0)
        key, sent = record(parcel)
        assert key
        cancelled(parcel)

        done = resolve_left_labels()

        assert done["cleared"] == 1 and record(parcel) == ("", "")
        assert purchases(world) == 0 and refunds(world) == 0
        assert not OrderEvent._base_manager.filter(
            order_id=parcel.order_id,
            kind__in=("shipment.label_refunded", "shipment.label_void_failed"),
        )
        # The purchase, were it still on its way, is refused under its key rather than sold.
        with pytest.raises(LabelError) as late:
            source._send("POST", "/shipments", content=sent.encode(), idempotency_key=key)
        assert late.value.code == KEY_REUSED and purchases(world) == 0
        source.close()
        # Made pending again by a person, the parcel buys under its next key.
        Shipment._base_manager.filter(pk=parcel.pk).update(status=ShipmentStatus.PENDING)
        Order._base_manager.filter(pk=parcel.order_id).update(status=OrderStatus.ALLOCATED)
        stored = shipment_label_buy(shipment=parcel)
        assert stored.status == ShipmentStatus.LABELLED and stored.label_voids == 1
        assert purchases(world) == 1


@pytest.mark.django_db
class TestLeftAlone:
    def test_a_pending_parcel_is_left_to_its_purchase(self, world, monkeypatch):
        parcel, other = world.parcel("usps"), world.parcel("usps")
        sold = _bought_then_stopped(monkeypatch, parcel)
        Shipment._base_manager.filter(pk=parcel.pk).update(updated_at=timezone.now() - SETTLE * 2)
        monkeypatch.undo()
        _bought_then_stopped(monkeypatch, other)
        cancelled(other)

        assert resolve_left_labels()["refunded"] == 1  # the cancelled one only

        assert record(parcel)[0] and record(other) == ("", "") and refunds(world) == 1
        assert shipment_label_buy(shipment=parcel).tracking_number == sold.tracking_number

    def test_a_parcel_just_cancelled_waits_for_a_purchase_still_on_its_way(
        self, world, monkeypatch
    ):
        parcel = world.parcel("usps")
        _bought_then_stopped(monkeypatch, parcel)
        cancelled(parcel, ago=timedelta(0))

        resolve_left_labels()

        assert record(parcel)[0] and refunds(world) == 0
        # Settled: no purchase is on its way any more.
        Shipment._base_manager.filter(pk=parcel.pk).update(updated_at=timezone.now() - SETTLE * 2)
        assert resolve_left_labels()["refunded"] == 1 and refunds(world) == 1

    def test_another_tenants_parcels_are_not_touched(self, world, tenant_b, monkeypatch):
        from logistics.labels.left_behind import label_requests_left_resolve

        other = label_world(tenant_b)
        ours, theirs = world.parcel("usps"), other.parcel("usps")
        _bought_then_stopped(monkeypatch, ours)
        monkeypatch.undo()
        _bought_then_stopped(monkeypatch, theirs)
        cancelled(ours)
        cancelled(theirs)

        done = label_requests_left_resolve(tenant=world.tenant)

        assert done.refunded == 1 and record(ours) == ("", "") and refunds(world) == 1
        assert record(theirs)[0] and refunds(other) == 0
        assert not events(theirs, "shipment.label_refunded")
        # The sweep of every tenant gets to theirs, in their own scope.
        assert resolve_left_labels()["refunded"] == 1
        assert refunds(other) == 1 and record(theirs) == ("", "")


@pytest.mark.django_db
def test_the_unanswered_alert_stays_open_while_a_refused_record_waits(world, monkeypatch):
    """A record the service refused to be asked about waits SETTLE again; a run meanwhile that
    resolves some other record (a label account that answers) must not close the alert: the
    refused record is still unchecked, and nothing has answered for it."""
    refused, other = world.parcel("usps"), world.parcel("usps")
    _bought_then_stopped(monkeypatch, refused)
    _bought_then_stopped(monkeypatch, other)
    refused_key = record(refused)[0]
    cancelled(refused)
    real = LabelApiSource.purchase_left

    def key_refused_for_one(self, *, key, sent):
        if key == refused_key:  # e.g. that record's label account has a rotated API key
            raise LabelError("the label service refused the account's API key", code="auth")
        return real(self, key=key, sent=sent)

    monkeypatch.setattr(LabelApiSource, "purchase_left", key_refused_for_one)

    def open_alerts() -> list[Alert]:
        return list(
            Alert._base_manager.filter(
                tenant=world.tenant, kind="label.left_unchecked", resolved_at__isnull=True
            )
        )

    assert resolve_left_labels()["failed"] == 1
    [alert] = open_alerts()
    cancelled(other)  # another order cancelled meanwhile, its record settled

    assert resolve_left_labels()["refunded"] == 1  # the other record; the refused one waits
    assert record(refused)[0]
    assert [a.pk for a in open_alerts()] == [alert.pk]


@pytest.mark.django_db
def test_a_refund_refused_as_a_repeat_of_an_overlapping_run_is_recorded_refunded(
    world, monkeypatch
):
    """Two runs overlap (each every 5 minutes, one slow): both read the record and ask what was
    sold; the other run's refund reaches the service first, and the service refuses the repeat
    (as a real one may). The label went back: noted refunded, with no alert to void it by hand."""
    parcel = world.parcel("usps")
    sold = _bought_then_stopped(monkeypatch, parcel)
    cancelled(parcel)
    real = LabelApiSource._refund

    def other_run_first_then_refused(self, label_id):
        real(self, label_id)  # the overlapping run's request, a moment before
        raise LabelError("the label service refused the refund: already submitted")

    monkeypatch.setattr(LabelApiSource, "_refund", other_run_first_then_refused)
    done = resolve_left_labels()

    remote = SandboxLabelShipment.objects.get(shipment_id=sold.source_label_id)
    assert remote.refund_status == "submitted"
    assert done["named"] == 0 and done["refunded"] == 1
    assert not events(parcel, "shipment.label_void_failed")
    assert not Alert._base_manager.filter(kind="label.void_failed").exists()
    assert events(parcel, "shipment.label_refunded") and record(parcel) == ("", "")
