"""Starting label batches: which parcels are taken, in what order, and that a parcel belongs to
one live batch even when two people start batches over it at the same moment."""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from logistics.batches import (
    NothingToPrint,
    bin_sort_key,
    label_batch_ready_parcels,
    label_batch_start,
)
from logistics.models import LabelBatch, LabelBatchItem, Shipment, ShipmentStatus
from orders.models import OrderStatus
from tests.factories import ProviderFactory
from tests.logistics.batch_helpers import print_world, ready_parcels
from tkerp.tenancy import tenant_context


@pytest.fixture
def world(tenant_a):
    return print_world(tenant_a)


def item_references(batch) -> list[str]:
    return list(
        LabelBatchItem._base_manager.filter(batch=batch)
        .order_by("position")
        .values_list("shipment__reference", flat=True)
    )


def test_bins_sort_naturally_and_blank_bins_last():
    bins = ["B-7", "", "A-10", "a-2", "C-10", "A-2-3"]
    assert sorted(bins, key=bin_sort_key) == ["a-2", "A-2-3", "A-10", "B-7", "C-10", ""]


@pytest.mark.django_db
def test_parcels_come_in_pick_path_order(world):
    parcels = ready_parcels(world, 10)

    batch = label_batch_start(tenant=world.tenant, shop=world.shop, queue=False)

    by_reference = {parcel.reference: parcel for parcel in parcels}
    with tenant_context(world.tenant):
        first_bins = []
        for reference in item_references(batch):
            lines = by_reference[reference].lines.select_related("order_line__sku")
            bins = sorted(
                (line.order_line.sku.stock_levels.get().bin_location for line in lines),
                key=bin_sort_key,
            )
            first_bins.append(bins[0])
    assert first_bins == sorted(first_bins, key=bin_sort_key)
    assert first_bins[0] == "A-2" and first_bins[-1] == ""  # PIN-05 has no bin: last
    assert len(first_bins) == 10


@pytest.mark.django_db
def test_everything_ready_leaves_out_what_is_not_ready(world, tenant_a):
    ready, held, provider_parcel, cancelled, labelled = ready_parcels(world, 5)
    with tenant_context(tenant_a):
        held.order.status = OrderStatus.ON_HOLD
        held.order.save()
        Shipment.objects.filter(pk=provider_parcel.pk).update(
            provider=ProviderFactory(tenant=tenant_a)
        )
        Shipment.objects.filter(pk=cancelled.pk).update(status=ShipmentStatus.CANCELLED)
        Shipment.objects.filter(pk=labelled.pk).update(status=ShipmentStatus.LABELLED)

        assert list(label_batch_ready_parcels(shop=world.shop)) == [ready]
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    assert item_references(batch) == [ready.reference]


@pytest.mark.django_db
def test_due_before_and_limit_choose_the_most_urgent(world, tenant_a):
    parcels = ready_parcels(world, 30)  # ship_by spread over the next 30 hours
    due_before = timezone.now() + timedelta(hours=10)

    batch = label_batch_start(
        tenant=tenant_a, shop=world.shop, due_before=due_before, limit=4, queue=False
    )

    with tenant_context(tenant_a):
        taken = Shipment.objects.filter(batch_items__batch=batch).select_related("order")
        deadlines = sorted(shipment.order.ship_by for shipment in taken)
        all_due = sorted(
            parcel.order.ship_by
            for parcel in Shipment.objects.filter(pk__in=[p.pk for p in parcels]).select_related(
                "order"
            )
            if parcel.order.ship_by <= due_before
        )
    assert len(deadlines) == 4
    assert deadlines == all_due[:4]


@pytest.mark.django_db
def test_nothing_ready_is_a_clear_error_and_writes_nothing(world, tenant_a):
    with pytest.raises(NothingToPrint, match="no parcel is ready to print for ALPHA TikTok"):
        label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    assert not LabelBatch._base_manager.exists()


@pytest.mark.django_db
def test_a_parcel_in_a_live_batch_is_not_taken_again(world, tenant_a):
    parcels = ready_parcels(world, 3)
    first = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)

    with pytest.raises(NothingToPrint, match="already in a batch being printed"):
        label_batch_start(
            tenant=tenant_a, shipment_ids=[parcel.pk for parcel in parcels], queue=False
        )
    assert len(item_references(first)) == 3


@pytest.mark.django_db
def test_the_database_refuses_a_second_live_batch_for_a_parcel(world, tenant_a):
    (parcel,) = ready_parcels(world, 1)
    first = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    second = LabelBatch._base_manager.create(tenant=tenant_a)

    with pytest.raises(IntegrityError), transaction.atomic():
        LabelBatchItem._base_manager.create(
            tenant=tenant_a, batch=second, shipment=parcel, position=0
        )
    # Once the first batch is over, the parcel may join another.
    LabelBatchItem._base_manager.filter(batch=first).update(live=False)
    LabelBatchItem._base_manager.create(tenant=tenant_a, batch=second, shipment=parcel, position=0)


@pytest.mark.django_db
def test_a_bad_layout_or_limit_is_refused(world, tenant_a):
    ready_parcels(world, 1)
    with pytest.raises(ValueError, match="unknown layout 'sideways'"):
        label_batch_start(tenant=tenant_a, shop=world.shop, layout="sideways", queue=False)
    with pytest.raises(ValueError, match="at least 1"):
        label_batch_start(tenant=tenant_a, shop=world.shop, limit=0, queue=False)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["selection", "everything ready"])
def test_batches_started_at_the_same_moment_take_each_parcel_once(how, tenant_a):
    world = print_world(tenant_a)
    parcels = ready_parcels(world, 60)
    ids = [parcel.pk for parcel in parcels]
    starters = 4
    barrier = threading.Barrier(starters)
    outcomes: list = []

    def start():
        try:
            barrier.wait()
            if how == "selection":
                batch = label_batch_start(tenant=tenant_a, shipment_ids=ids, queue=False)
            else:
                batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
            outcomes.append(batch)
        except NothingToPrint as error:
            outcomes.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    items = list(LabelBatchItem._base_manager.filter(live=True).values_list("shipment_id", "batch"))
    taken = [shipment for shipment, _ in items]
    assert sorted(taken) == sorted(ids)  # every parcel once, none twice
    batches = [outcome for outcome in outcomes if isinstance(outcome, LabelBatch)]
    assert len(outcomes) == starters and batches
    assert LabelBatch._base_manager.count() == len(batches)  # a loser writes no empty batch
