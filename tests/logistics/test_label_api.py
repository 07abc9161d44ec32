"""Buying labels from the label API (EasyPost-shaped) through its sandbox, over real HTTP
(in-process WSGI), on PostgreSQL: idempotency proven by the sandbox's purchase counter, retries,
clear refusals, real PDF and ZPL documents, tracking numbers with valid check digits, voids."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from logistics.labels import store as label_store
from logistics.labels.base import LabelError, PurchasedLabel, label_idempotency_key
from logistics.labels.labelapi import KEY_REUSED, LabelApiSource
from logistics.labels.sources import label_source_for
from logistics.labels.store import (
    shipment_label_buy,
    shipment_label_void,
    shipments_label_buy,
)
from logistics.models import Shipment, ShipmentLine, ShipmentStatus
from logistics.tracking_numbers import tracking_number_valid
from orders.models import OrderEvent
from sandbox.models import SandboxLabelAccount, SandboxLabelShipment
from shops.platforms.http import json_bytes
from tests.logistics.labels_helpers import label_world, page_size, pdf_text, purchases
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.usefixtures("label_media")


@pytest.fixture
def world(tenant_a):
    return label_world(tenant_a)


class ScriptedFaults:
    """The sandbox's fault dice, loaded: the given kinds first, then never a fault again."""

    def __init__(self, *kinds: str):
        self.kinds = list(kinds)

    def random(self) -> float:
        return 0.0 if self.kinds else 0.999

    def choice(self, kinds):
        return self.kinds.pop(0)


def reload(shipment) -> Shipment:
    return Shipment._base_manager.get(pk=shipment.pk)


def label_bytes(shipment) -> bytes:
    with shipment.label_file.open("rb") as handle:
        return handle.read()


@pytest.mark.django_db
class TestBuying:
    def test_a_label_is_bought_stored_and_readable(self, world):
        parcel = world.parcel("usps")

        stored = shipment_label_buy(shipment=parcel)

        assert stored.status == ShipmentStatus.LABELLED
        assert stored.label_source == "labelapi"
        assert stored.label_account_id == world.account.pk
        assert stored.source_label_id.startswith("shp_")
        assert stored.label_format == "pdf"
        assert stored.labelled_at is not None
        assert stored.label_file.name.startswith(f"labels/{world.tenant.pk}/")
        assert tracking_number_valid(carrier="usps", number=stored.tracking_number)
        remote = SandboxLabelShipment.objects.get(shipment_id=stored.source_label_id)
        assert stored.shipping_cost == remote.rate > Decimal("0")
        document = label_bytes(stored)
        assert page_size(document) == (288, 432)  # 4 x 6 inches
        text = pdf_text(document).replace(" ", "")
        assert stored.tracking_number in text
        assert "JAMIEBUYER" in text and "1MARKETST" in text
        assert purchases(world) == 1

    def test_buying_twice_buys_once(self, world):
        parcel = world.parcel("usps")
        first = shipment_label_buy(shipment=parcel)
        again = shipment_label_buy(shipment=parcel)

        assert again.tracking_number == first.tracking_number
        assert again.label_file.name == first.label_file.name
        assert purchases(world) == 1

    def test_the_source_returns_the_first_label_for_the_same_key(self, world):
        parcel = world.parcel("ups")
        with tenant_context(world.tenant):
            parcel = Shipment.objects.select_related("order", "warehouse", "service__carrier").get(
                pk=parcel.pk
            )
        source = label_source_for(parcel)
        try:
            first = source.buy(shipment=parcel)
            second = source.buy(shipment=parcel)
        finally:
            source.close()
        assert second.tracking_number == first.tracking_number
        assert second.source_label_id == first.source_label_id
        assert purchases(world) == 1
        assert (
            SandboxLabelShipment.objects.filter(
                idempotency_key=label_idempotency_key(parcel)
            ).count()
            == 1
        )

    @pytest.mark.parametrize(
        ("service", "carrier", "shape"),
        [
            ("usps", "usps", r"^94\d{20}$"),
            ("ups", "ups", r"^1ZA1B2C303\d{8}$"),  # shipper number, 03 = Ground
            ("fedex", "fedex", r"^\d{15}$"),  # Ground / Home Delivery: 15 digits
            ("fedex_2day", "fedex", r"^\d{12}$"),  # Express: 12 digits
        ],
    )
    def test_tracking_numbers_pass_their_carriers_check_digit(self, world, service, carrier, shape):
        import re

        stored = shipment_label_buy(shipment=world.parcel(service))

        assert re.match(shape, stored.tracking_number), stored.tracking_number
        assert tracking_number_valid(carrier=carrier, number=stored.tracking_number)
        assert stored.tracking_number in pdf_text(label_bytes(stored)).replace(" ", "")

    def test_zpl_when_the_printer_wants_it(self, world):
        world.account.label_format = "zpl"
        world.account.save()

        stored = shipment_label_buy(shipment=world.parcel("usps"))

        zpl = label_bytes(stored).decode()
        assert stored.label_format == "zpl" and stored.label_file.name.endswith(".zpl")
        assert zpl.startswith("^XA") and zpl.rstrip().endswith("^XZ")
        assert "^PW812" in zpl and "^LL1218" in zpl  # 4 x 6 inches at 203 dpi
        barcode = next(line for line in zpl.splitlines() if "^BC" in line)
        assert f"420{94105}{stored.tracking_number}" in barcode  # IMpb: 420 + ZIP + number
        assert purchases(world) == 1

    def test_void_refunds_and_a_new_buy_buys_anew(self, world, django_capture_on_commit_callbacks):
        parcel = world.parcel("usps")
        first = shipment_label_buy(shipment=parcel)
        file_name = first.label_file.name

        with django_capture_on_commit_callbacks(execute=True):
            voided = shipment_label_void(shipment=first)

        assert voided.status == ShipmentStatus.PENDING
        assert voided.tracking_number == "" and not voided.label_file
        assert voided.shipping_cost == 0 and voided.label_voids == 1
        remote = SandboxLabelShipment.objects.get(shipment_id=first.source_label_id)
        assert remote.refund_status == "submitted"
        assert SandboxLabelAccount.objects.get(pk=world.remote.pk).refunds == 1
        assert not first.label_file.storage.exists(file_name)

        second = shipment_label_buy(shipment=voided)
        assert second.tracking_number != first.tracking_number
        assert purchases(world) == 2
        shipment_label_void(shipment=second)
        with pytest.raises(LabelError, match="no label to void"):
            shipment_label_void(shipment=second)


@pytest.mark.django_db
class TestRefusals:
    def test_a_bad_address_is_a_clear_non_retryable_error(self, world):
        parcel = world.parcel("usps", address_line1="Market Street")

        with pytest.raises(LabelError) as caught:
            shipment_label_buy(shipment=parcel)

        assert caught.value.code == "address"
        assert not caught.value.retryable
        assert "recipient address" in caught.value.reason
        assert "House number is missing" in caught.value.reason
        parcel = reload(parcel)
        assert parcel.status == ShipmentStatus.PENDING and not parcel.label_file
        assert purchases(world) == 0

    def test_a_bad_warehouse_address_names_the_sender(self, world):
        world.warehouse.postal_code = "RENO"
        world.warehouse.save()
        with pytest.raises(LabelError, match=r"sender \(warehouse\) address .*zip: Invalid ZIP"):
            shipment_label_buy(shipment=world.parcel("usps"))

    def test_an_unknown_service(self, world):
        with pytest.raises(LabelError) as caught:
            shipment_label_buy(shipment=world.parcel("teleport"))
        assert caught.value.code == "service"
        assert "teleport" in caught.value.reason
        assert not caught.value.retryable

    def test_insufficient_funds(self, world):
        SandboxLabelAccount.objects.filter(pk=world.remote.pk).update(balance=Decimal("1.00"))
        with pytest.raises(LabelError) as caught:
            shipment_label_buy(shipment=world.parcel("usps"))
        assert caught.value.code == "funds" and not caught.value.retryable
        assert purchases(world) == 0

    def test_a_refused_api_key(self, world):
        world.account.api_key = "EZTK-not-a-key"
        world.account.save()
        with pytest.raises(LabelError) as caught:
            shipment_label_buy(shipment=world.parcel("usps"))
        assert caught.value.code == "auth"

    def test_a_parcel_without_weight(self, world):
        parcel = world.parcel("usps")
        ShipmentLine._base_manager.filter(shipment=parcel).delete()
        with pytest.raises(LabelError, match="has no weight"):
            shipment_label_buy(shipment=parcel)

    def test_only_pending_parcels_get_labels(self, world):
        parcel = world.parcel("usps")
        Shipment._base_manager.filter(pk=parcel.pk).update(status=ShipmentStatus.CANCELLED)
        with pytest.raises(LabelError, match="is cancelled"):
            shipment_label_buy(shipment=parcel)
        assert purchases(world) == 0

    def test_an_idempotency_key_sent_with_another_body_is_refused_by_the_service(self, world):
        parcel = world.parcel("usps")
        source = LabelApiSource(account=world.account)
        with tenant_context(world.tenant):
            body = source._shipment_body(reload(parcel), carrier="USPS", service="GroundAdvantage")
        key = label_idempotency_key(parcel)
        source._send("POST", "/shipments", content=json_bytes(body), idempotency_key=key)
        body["shipment"]["to_address"]["street1"] = "2 Market St"
        with pytest.raises(LabelError) as caught:
            source._send("POST", "/shipments", content=json_bytes(body), idempotency_key=key)
        assert caught.value.code == KEY_REUSED
        assert purchases(world) == 1


def _stops_after_the_purchase(monkeypatch):
    """The worker stops (is killed) after the label service sold the label, before tkerp
    stored it: once."""
    real = label_store._label_store
    calls = []

    def dies(**kwargs):
        if not calls:
            calls.append(kwargs["label"])
            raise SystemExit("killed")
        return real(**kwargs)

    monkeypatch.setattr(label_store, "_label_store", dies)
    return calls


def _readdress(parcel, street: str) -> None:
    order = parcel.order
    order.address_line1 = street
    order.save(update_fields=["address_line1"])


def _bought_then_stopped(monkeypatch, parcel, *, then_street: str = "") -> PurchasedLabel:
    """The label service sells the parcel's label and the worker stops before storing it; then,
    with `then_street`, the order's address changes. Returns the label sold."""
    left = _stops_after_the_purchase(monkeypatch)
    with pytest.raises(SystemExit):
        shipment_label_buy(shipment=parcel)
    if then_street:
        _readdress(parcel, then_street)
    return left[0]


@pytest.mark.django_db
class TestPurchaseLeftBehind:
    """A worker stopped between the label service selling a label and tkerp storing it."""

    def test_a_retry_gets_the_same_label_and_forgets_the_request(self, world, monkeypatch):
        parcel = world.parcel("usps")
        sold = _bought_then_stopped(monkeypatch, parcel)
        written = reload(parcel)
        assert written.label_request_key == label_idempotency_key(parcel)
        assert '"street1"' in written.label_request and not written.tracking_number

        stored = shipment_label_buy(shipment=parcel)

        assert stored.tracking_number == sold.tracking_number
        assert purchases(world) == 1
        assert (reload(parcel).label_request_key, reload(parcel).label_request) == ("", "")

    def test_an_order_changed_before_the_retry_voids_that_label_and_buys_anew(
        self, world, monkeypatch
    ):
        parcel = world.parcel("usps", address_line1="1 Old Road")
        sold = _bought_then_stopped(monkeypatch, parcel, then_street="2 New Street")

        stored = shipment_label_buy(shipment=parcel)

        earlier = SandboxLabelShipment.objects.get(shipment_id=sold.source_label_id)
        assert earlier.refund_status == "submitted"
        assert earlier.payload["to_address"]["street1"] == "1 Old Road"
        now = SandboxLabelShipment.objects.get(shipment_id=stored.source_label_id)
        assert now.payload["to_address"]["street1"] == "2 New Street" and not now.refund_status
        assert purchases(world) == 2
        assert stored.status == ShipmentStatus.LABELLED and stored.label_voids == 1
        assert stored.tracking_number == now.tracking_code != earlier.tracking_code
        assert (stored.label_request_key, stored.label_request) == ("", "")
        event = OrderEvent._base_manager.get(order=parcel.order, kind="shipment.label_replaced")
        assert sold.source_label_id in event.message and "for a refund" in event.message
        assert earlier.tracking_code in event.message
        assert event.data["tracking_number"] == earlier.tracking_code
        # Asking again changes nothing: the parcel keeps its label.
        assert shipment_label_buy(shipment=parcel).tracking_number == stored.tracking_number
        assert purchases(world) == 2

    def test_a_retry_at_another_account_refunds_the_label_sold_at_the_first(
        self, world, monkeypatch
    ):
        """The worker stopped after account A sold the label; the seller then switched to
        account B. B has never seen the key and sells a label of its own: A's label is refunded
        first (before, storing B's label forgot the request, and A's label was never refunded:
        two labels paid for one parcel)."""
        from logistics.models import LabelAccount
        from sandbox.labelapi import sandbox_label_account_connect

        parcel = world.parcel("usps")
        sold = _bought_then_stopped(monkeypatch, parcel)
        LabelAccount._base_manager.filter(pk=world.account.pk).update(is_active=False)
        other = LabelAccount._base_manager.create(
            tenant=world.tenant, name="EasyPost 2", carriers="usps", requests_per_second=1000
        )
        remote = sandbox_label_account_connect(account=other, rate_per_second=1000, rate_burst=1000)

        stored = shipment_label_buy(shipment=reload(parcel))

        earlier = SandboxLabelShipment.objects.get(shipment_id=sold.source_label_id)
        assert earlier.refund_status == "submitted"
        assert purchases(world) == 1
        assert SandboxLabelAccount.objects.get(pk=remote.pk).purchases == 1
        assert stored.status == ShipmentStatus.LABELLED and stored.label_account_id == other.pk
        assert stored.tracking_number != sold.tracking_number
        assert (stored.label_request_key, stored.label_request) == ("", "")
        event = OrderEvent._base_manager.get(order=parcel.order, kind="shipment.label_replaced")
        assert sold.tracking_number in event.message

    def test_a_refused_request_is_not_the_one_asked_with_after_a_stop(self, world, monkeypatch):
        parcel = world.parcel("usps", address_line1="Market Street")  # no house number
        with pytest.raises(LabelError) as refused:
            shipment_label_buy(shipment=parcel)
        assert refused.value.code == "address" and reload(parcel).label_request == ""
        _readdress(parcel, "1 Market Street")
        sold = _bought_then_stopped(monkeypatch, parcel, then_street="2 Market Street")

        stored = shipment_label_buy(shipment=parcel)

        earlier = SandboxLabelShipment.objects.get(shipment_id=sold.source_label_id)
        assert earlier.payload["to_address"]["street1"] == "1 Market Street"
        assert earlier.refund_status == "submitted" and purchases(world) == 2
        assert stored.label_voids == 1 and stored.tracking_number != earlier.tracking_code

    def test_a_purchase_without_its_request_is_named_for_a_person(self, world, monkeypatch):
        parcel = world.parcel("usps")
        _bought_then_stopped(monkeypatch, parcel)
        # As left by a worker before the request was written down.
        Shipment._base_manager.filter(pk=parcel.pk).update(label_request_key="", label_request="")
        _readdress(parcel, "2 New Street")

        with pytest.raises(LabelError) as caught:
            shipment_label_buy(shipment=parcel)

        assert caught.value.code == "unknown_purchase" and not caught.value.retryable
        assert f"find reference {parcel.reference} at the label service" in caught.value.reason
        assert reload(parcel).label_voids == 1 and purchases(world) == 1
        assert OrderEvent._base_manager.filter(order=parcel.order, kind="shipment.label_replaced")
        # A retry buys the parcel's label (the person voids the other one at the service).
        assert shipment_label_buy(shipment=parcel).status == ShipmentStatus.LABELLED
        assert purchases(world) == 2

    def test_a_void_the_service_refuses_names_the_label_and_a_retry_buys(self, world, monkeypatch):
        parcel = world.parcel("usps")
        sold = _bought_then_stopped(monkeypatch, parcel, then_street="2 New Street")
        # The carrier turned the refund down (EasyPost's refund_status "rejected").
        remote = SandboxLabelShipment.objects.get(shipment_id=sold.source_label_id)
        remote.refund_status = remote.payload["refund_status"] = "rejected"
        remote.save()

        with pytest.raises(LabelError) as caught:
            shipment_label_buy(shipment=parcel)

        assert caught.value.code == "refund"
        number = sold.tracking_number
        assert f"the label with tracking number {number}, bought for parcel" in caught.value.reason
        assert "void it at the label service" in caught.value.reason
        assert reload(parcel).label_voids == 1
        assert shipment_label_buy(shipment=parcel).status == ShipmentStatus.LABELLED
        assert purchases(world) == 2

    def test_a_worker_stopped_before_the_void_leaves_it_to_the_retry(self, world, monkeypatch):
        parcel = world.parcel("usps")
        sold = _bought_then_stopped(monkeypatch, parcel, then_street="2 New Street")
        real = LabelApiSource._refund
        stopped = []

        def dies(self, label_id):
            if not stopped:
                stopped.append(label_id)
                raise SystemExit("killed")
            return real(self, label_id)

        monkeypatch.setattr(LabelApiSource, "_refund", dies)
        # Stopped once more: after the parcel moved to its next key, before the refund.
        with pytest.raises(SystemExit):
            shipment_label_buy(shipment=parcel)
        assert stopped == [sold.source_label_id] and reload(parcel).label_voids == 1

        stored = shipment_label_buy(shipment=parcel)

        earlier = SandboxLabelShipment.objects.get(shipment_id=sold.source_label_id)
        assert earlier.refund_status == "submitted"
        assert stored.status == ShipmentStatus.LABELLED and stored.label_voids == 1
        assert stored.tracking_number != earlier.tracking_code
        assert (stored.label_request_key, stored.label_request) == ("", "")
        assert purchases(world) == 2

    def test_a_worker_that_read_the_parcel_before_it_was_labelled_leaves_no_request_on_it(
        self, world
    ):
        parcel = world.parcel("usps")
        with tenant_context(world.tenant):
            read = label_store._fresh(parcel.pk)  # as a batch's thread read it, at its start
        stored = shipment_label_buy(shipment=parcel)
        source = LabelApiSource(account=world.account)

        with tenant_context(world.tenant):
            again = label_store._label_buy(read, source)

        assert again.tracking_number == stored.tracking_number and purchases(world) == 1
        # The recipient's name, address and phone stay on the order, not on a labelled parcel.
        assert (reload(parcel).label_request_key, reload(parcel).label_request) == ("", "")

    def test_a_recorded_request_the_service_refuses_does_not_leave_the_parcel_stuck(
        self, world, monkeypatch
    ):
        parcel = world.parcel("usps", address_line1="1 Old Road")
        # The first purchase never gets an answer (a 503, retries spent): the service may have
        # sold a label for it, so its request stays written down.
        source = LabelApiSource(account=world.account, sleep=lambda _: None, max_retries=0)
        source._carrier_account("USPS")
        SandboxLabelAccount.objects.filter(pk=world.remote.pk).update(
            fault_rate=1.0, fault_kinds=["503"]
        )
        monkeypatch.setattr("sandbox.base._rng", ScriptedFaults("503"))
        with pytest.raises(LabelError) as unanswered:
            shipment_label_buy(shipment=parcel, source=source)
        assert unanswered.value.retryable and purchases(world) == 0
        assert '"street1":"1 Old Road"' in reload(parcel).label_request
        SandboxLabelAccount.objects.filter(pk=world.remote.pk).update(fault_rate=0)
        # It had not sold; the next, for a corrected address, sells under the key, and its
        # worker stops before storing it; then the order changes again.
        _readdress(parcel, "2 New Street")
        sold = _bought_then_stopped(monkeypatch, parcel, then_street="3 Third Avenue")

        with pytest.raises(LabelError) as caught:
            shipment_label_buy(shipment=parcel)

        # Asked again with what the parcel holds, the service refuses it too (the key went
        # with another request): the label sold under the key is named for a person instead of
        # the parcel failing so for ever, and a retry buys anew.
        assert caught.value.code == "unknown_purchase"
        assert f"find reference {parcel.reference} at the label service" in caught.value.reason
        assert OrderEvent._base_manager.filter(order=parcel.order, kind="shipment.label_replaced")
        stored = shipment_label_buy(shipment=parcel)
        assert stored.status == ShipmentStatus.LABELLED and stored.label_voids == 1
        assert stored.tracking_number != sold.tracking_number
        assert purchases(world) == 2
        source.close()


@pytest.mark.django_db
class TestRetries:
    def source(self, world, sleeps, **options):
        return LabelApiSource(
            account=world.account, sleep=sleeps.append, backoff_base=0.01, **options
        )

    def parcel(self, world):
        parcel = world.parcel("usps")
        with tenant_context(world.tenant):
            return Shipment.objects.select_related("order", "warehouse", "service__carrier").get(
                pk=parcel.pk
            )

    def test_429_and_server_faults_are_retried_and_buy_once(self, world, monkeypatch):
        SandboxLabelAccount.objects.filter(pk=world.remote.pk).update(
            fault_rate=0.5, fault_kinds=["429", "500", "503"]
        )
        monkeypatch.setattr("sandbox.base._rng", ScriptedFaults("429", "500", "503"))
        sleeps: list[float] = []
        source = self.source(world, sleeps)
        parcel = self.parcel(world)

        stored = shipment_label_buy(shipment=parcel, source=source)

        assert stored.status == ShipmentStatus.LABELLED
        # Listing carrier accounts met the 429 (Retry-After: 1) and the 500; buying the 503.
        assert sleeps[0] == 1.0
        assert len(sleeps) == 3 and all(0 < delay <= 1.0 for delay in sleeps)
        assert purchases(world) == 1
        source.close()

    def test_the_rate_limit_when_retries_run_out_is_retryable(self, world):
        SandboxLabelAccount.objects.filter(pk=world.remote.pk).update(
            rate_per_second=0.01, rate_burst=1
        )
        sleeps: list[float] = []
        source = self.source(world, sleeps, max_retries=0)
        parcel = self.parcel(world)
        source.rates(shipment=parcel)  # the one request the bucket allows
        with pytest.raises(LabelError) as caught:
            source.buy(shipment=parcel)
        assert caught.value.retryable and caught.value.code == "unavailable"
        assert purchases(world) == 0
        source.close()

    def test_rate_shopping_lists_every_service_cheapest_first(self, world):
        source = self.source(world, [])
        rates = source.rates(shipment=self.parcel(world))
        source.close()
        offered = {(rate["carrier"], rate["service"]) for rate in rates}
        assert ("USPS", "GroundAdvantage") in offered and ("UPS", "Ground") in offered
        assert [rate["rate"] for rate in rates] == sorted(rate["rate"] for rate in rates)
        assert purchases(world) == 0


@pytest.mark.django_db(transaction=True)
class TestConcurrency:
    def test_concurrent_buys_of_one_parcel_buy_once(self, tenant_a):
        world = label_world(tenant_a, purchase_latency_ms=200)
        parcel = world.parcel("usps")
        results, errors = [], []
        start = threading.Barrier(3)

        def buy():
            from django.db import connection

            try:
                start.wait()
                results.append(shipment_label_buy(shipment=parcel))
            except Exception as exc:  # the assertion below shows it
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=buy) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert len({stored.tracking_number for stored in results}) == 1
        assert purchases(world) == 1
        stored = reload(parcel)
        assert stored.tracking_number == results[0].tracking_number

    def test_a_batch_buys_in_parallel_and_one_failure_stops_nothing(self, tenant_a):
        world = label_world(tenant_a, purchase_latency_ms=50)
        parcels = [world.parcel("usps") for _ in range(5)]
        bad = world.parcel("ups", address_line1="Nowhere Lane")
        ids = [p.pk for p in parcels[:2]] + [bad.pk] + [p.pk for p in parcels[2:]]
        seen = []

        results = shipments_label_buy(tenant=tenant_a, shipment_ids=ids, on_result=seen.append)

        assert [r.shipment_id for r in results] == ids
        assert sorted(r.shipment_id for r in seen) == sorted(ids)
        failed = [r for r in results if not r.ok]
        assert [r.shipment_id for r in failed] == [bad.pk]
        assert failed[0].code == "address" and "House number" in failed[0].reason
        assert all(r.bought for r in results if r.ok)
        assert purchases(world) == 5

        again = shipments_label_buy(tenant=tenant_a, shipment_ids=ids)
        assert [r.ok for r in again] == [r.ok for r in results]
        assert not any(r.bought for r in again)
        assert purchases(world) == 5


@pytest.mark.django_db
def test_no_label_is_bought_while_the_buyer_asks_to_cancel(tenant_a):
    """An open (or approved) cancellation keeps a parcel out of "Print everything ready" and
    refuses a label bought for it by hand: nothing is bought, the reason says why."""
    from logistics.batches import label_batch_ready_parcels
    from tests.factories import CancellationRequestFactory

    world = label_world(tenant_a)
    clean, asked = world.parcel(status="ready"), world.parcel(status="ready")
    CancellationRequestFactory(tenant=tenant_a, order=asked.order)

    with tenant_context(tenant_a):
        assert set(label_batch_ready_parcels(shop=world.shop)) == {clean}
    with pytest.raises(LabelError) as refused:
        shipment_label_buy(shipment=asked)
    assert refused.value.code == "cancellation"
    assert "asked to cancel" in refused.value.reason
    assert purchases(world) == 0


@pytest.mark.django_db(transaction=True)  # the buying threads have connections of their own
def test_no_label_is_bought_for_an_order_put_on_hold(tenant_a):
    """A ready order held by hand (suspected fraud) keeps its pending parcel, but no label is
    bought for it, alone or in a parallel buy ("Print labels" on selected parcels): the label's
    number would reach the platform, which then counts the held order shipped. Released, it
    buys normally."""
    from logistics.models import TrackingPush
    from orders.holds import order_hold, order_release

    world = label_world(tenant_a)
    held, other = world.parcel("usps", status="ready"), world.parcel("usps", status="ready")
    with tenant_context(tenant_a):
        order_hold(order=held.order, code="fraud.suspected", message="card flagged")

    with pytest.raises(LabelError) as refused:
        shipment_label_buy(shipment=held)
    assert refused.value.code == "on_hold"
    assert "on hold (fraud.suspected)" in refused.value.reason
    results = {
        r.shipment_id: r
        for r in shipments_label_buy(tenant=tenant_a, shipment_ids=[held.pk, other.pk])
    }
    assert results[other.pk].ok
    assert not results[held.pk].ok and results[held.pk].code == "on_hold"
    assert "release it first" in results[held.pk].reason
    assert purchases(world) == 1
    assert reload(held).status == ShipmentStatus.PENDING and not reload(held).tracking_number
    assert not TrackingPush._base_manager.filter(shipment_id=held.pk).exists()

    with tenant_context(tenant_a):
        order_release(order=held.order)
    assert shipment_label_buy(shipment=held).status == ShipmentStatus.LABELLED
    assert purchases(world) == 2


@pytest.mark.django_db(transaction=True)  # the buying threads have connections of their own
def test_a_parallel_buy_checks_cancellations_in_groups_and_queues_one_send_per_shop(tenant_a):
    """The parallel buy asks the cancellation guard for many parcels in one query (from the
    orders' current rows, not the instances read at its start), still refusing each blocked
    parcel with its reason; and the platform write-back of the numbers it stored is queued once
    for the shop, not once per parcel."""
    from django_q.models import OrmQ

    from orders.models import Order, OrderStatus
    from tests.factories import CancellationRequestFactory

    world = label_world(tenant_a)
    parcels = [world.parcel("usps") for _ in range(4)]
    asked, cancelled = world.parcel("usps"), world.parcel("usps")
    CancellationRequestFactory(tenant=tenant_a, order=asked.order)
    Order._base_manager.filter(pk=cancelled.order_id).update(status=OrderStatus.CANCELLED)
    ids = [parcels[0].pk, asked.pk, *[p.pk for p in parcels[1:]], cancelled.pk]
    OrmQ.objects.all().delete()

    results = {r.shipment_id: r for r in shipments_label_buy(tenant=tenant_a, shipment_ids=ids)}

    assert [results[p.pk].ok for p in parcels] == [True] * 4, [results[p.pk] for p in parcels]
    assert results[asked.pk].code == "cancellation"
    assert "asked to cancel" in results[asked.pk].reason
    assert results[cancelled.pk].code == "cancellation"
    assert "the order is cancelled" in results[cancelled.pk].reason
    assert purchases(world) == 4
    sends = [task.name() for task in OrmQ.objects.all()]
    assert sends == [f"tracking-shop-{world.shop.pk}"]
