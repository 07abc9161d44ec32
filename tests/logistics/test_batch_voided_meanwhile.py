"""A label voided while a batch runs is never stored or printed by that batch: the batch read
the parcel before the void, so it bought under the old idempotency key and the label service
handed the voided label back. The parcel fails with a clear reason, and a retry buys anew."""

from unittest import mock

import pytest

from logistics.batches import label_batch_retry_failed, label_batch_run, label_batch_start
from logistics.labels.labelapi import LabelApiSource
from logistics.labels.store import shipment_label_buy, shipment_label_void
from logistics.models import LabelBatchItem, Shipment
from sandbox.models import SandboxLabelShipment
from tests.logistics.batch_helpers import connect_label_api, print_world, ready_parcels
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)


def refunded() -> set[str]:
    return set(
        SandboxLabelShipment.objects.exclude(refund_status=None)
        .exclude(refund_status="")
        .values_list("shipment_id", flat=True)
    )


def test_a_batch_never_stores_a_label_voided_while_it_ran(tenant_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TKERP_LABEL_BUY_MAX_WORKERS = 1
    world = print_world(tenant_a)
    connect_label_api(world)
    ready_parcels(world, 2)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    with tenant_context(tenant_a):
        order = list(batch.items.order_by("position").values_list("shipment_id", flat=True))
    real_buy, meddled = LabelApiSource.buy, []

    def buy(self, *, shipment):
        label = real_buy(self, shipment=shipment)
        if shipment.pk == order[0] and not meddled:
            meddled.append(True)  # meanwhile, at the parcel list: labelled, then voided
            shipment_label_buy(shipment=Shipment._base_manager.get(pk=order[1]))
            shipment_label_void(shipment=Shipment._base_manager.get(pk=order[1]))
        return label

    with mock.patch.object(LabelApiSource, "buy", buy):
        label_batch_run(tenant=tenant_a, batch_id=batch.pk)
    later = Shipment._base_manager.get(pk=order[1])
    item = LabelBatchItem._base_manager.get(batch=batch, shipment_id=order[1])
    items = list(
        LabelBatchItem._base_manager.filter(batch=batch).values_list(
            "shipment_id", "status", "error_code", "error"
        )
    )
    assert meddled and not later.source_label_id and not later.tracking_number, (order, items)
    assert item.error_code == "voided" and "voided while" in item.error

    label_batch_retry_failed(batch=batch, queue=False)
    label_batch_run(tenant=tenant_a, batch_id=batch.pk)
    later.refresh_from_db()
    assert later.source_label_id and later.source_label_id not in refunded()
