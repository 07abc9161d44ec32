"""Running label batches against the real label API sandbox (HTTP, in-process transport): what
is bought, what fails and why, what the PDF holds, and that nothing is ever bought twice."""

import io
import re

import pytest
from pypdf import PdfReader

from logistics.batches import (
    label_batch_reprint,
    label_batch_retry_failed,
    label_batch_run,
    label_batch_start,
)
from logistics.labels.sources import label_source_for
from logistics.models import (
    LabelBatch,
    LabelBatchItem,
    LabelBatchItemStatus,
    LabelBatchStatus,
    Shipment,
    ShipmentStatus,
)
from logistics.tasks import run_label_batch
from orders.models import Order
from tests.logistics.batch_helpers import (  # noqa: F401 - batch_media: autouse
    batch_media,
    connect_label_api,
    print_world,
    purchases,
    ready_parcels,
)
from tkerp.tenancy import tenant_context

# The parallel buy runs on threads with their own connections: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(tenant_a):
    world = print_world(tenant_a)
    world.remote = connect_label_api(world)
    return world


def items(batch, **filters):
    return LabelBatchItem._base_manager.filter(batch=batch, **filters).order_by("position")


def pdf_pages(batch, field="document") -> list[str]:
    with getattr(batch, field).open("rb") as handle:
        reader = PdfReader(io.BytesIO(handle.read()))
    return [page.extract_text() for page in reader.pages]


def digits(text: str) -> str:
    return re.sub(r"\s+", "", text)


def break_addresses(parcels) -> list[int]:
    """The recipients lose their house numbers: the label service refuses to verify them."""
    order_ids = [parcel.order_id for parcel in parcels]
    Order._base_manager.filter(pk__in=order_ids).update(address_line1="Market Street")
    return order_ids


def test_a_batch_labels_every_parcel_and_merges_them_in_pick_path_order(world, tenant_a):
    ready_parcels(world, 12)

    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    run_label_batch(tenant_a.pk, batch.pk)  # the django-q task

    batch.refresh_from_db()
    assert batch.status == LabelBatchStatus.DONE and batch.runs == 1
    assert items(batch, status=LabelBatchItemStatus.LABELLED).count() == 12
    assert not items(batch, live=True).exists()  # the batch is over: its parcels are free
    assert purchases(world.remote) == 12
    assert set(
        Shipment._base_manager.filter(order__shop=world.shop).values_list("status", flat=True)
    ) == {ShipmentStatus.LABELLED}
    pages = pdf_pages(batch)
    pick_pages = len(pages) - 2 * 12
    assert pick_pages >= 1 and "Pick list" in pages[0]
    assert batch.pages == len(pages)
    with tenant_context(tenant_a):
        ordered = [item.shipment for item in items(batch).select_related("shipment")]
    for number, shipment in enumerate(ordered):
        label, slip = pages[pick_pages + 2 * number], pages[pick_pages + 2 * number + 1]
        assert digits(shipment.tracking_number) in digits(label)
        assert "PACKING SLIP" in slip and shipment.reference in slip
    assert set(batch.timings) >= {"labels", "packing_slips", "pick_list", "merge", "store"}


def test_a_500_parcel_batch_with_3_label_failures_then_retry_buys_each_label_once(world, tenant_a):
    parcels = ready_parcels(world, 500)
    broken = break_addresses(parcels[100:103])

    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.DONE
    assert items(batch, status=LabelBatchItemStatus.LABELLED).count() == 497
    failed = list(items(batch, status=LabelBatchItemStatus.FAILED).select_related("shipment"))
    assert sorted(item.shipment.order_id for item in failed) == sorted(broken)
    for item in failed:
        assert "verify" in item.error.lower() and item.attempts == 1
        assert item.shipment.status == ShipmentStatus.PENDING
    assert purchases(world.remote) == 497
    pages = pdf_pages(batch)
    assert len(pages) == batch.pages
    assert len(pages) - 2 * 497 in (1, 2, 3)  # the pick list leads

    # The seller fixes the addresses and retries the failed parcels.
    Order._base_manager.filter(pk__in=broken).update(address_line1="12 Market Street")
    assert label_batch_retry_failed(batch=batch, queue=False) == 3
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.DONE and batch.runs == 2
    assert items(batch, status=LabelBatchItemStatus.LABELLED).count() == 500
    assert purchases(world.remote) == 500  # the 497 were not bought again
    assert {item.attempts for item in items(batch).filter(pk__in=[i.pk for i in failed])} == {2}
    assert len(pdf_pages(batch)) - 2 * 500 in (1, 2, 3)


def test_a_batch_that_died_half_way_resumes_without_buying_twice(world, tenant_a):
    parcels = ready_parcels(world, 8)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    # The worker bought labels at the service for three parcels, stored one of them, and died
    # before recording anything on the batch: it is left running under a lease that ran out.
    with tenant_context(tenant_a):
        for parcel in parcels[:3]:
            source = label_source_for(Shipment.objects.get(pk=parcel.pk))
            source.buy(shipment=Shipment.objects.get(pk=parcel.pk))
            source.close()
    from logistics.labels.store import shipment_label_buy

    with tenant_context(tenant_a):
        shipment_label_buy(shipment=Shipment.objects.get(pk=parcels[0].pk))
    LabelBatch._base_manager.filter(pk=batch.pk).update(
        status=LabelBatchStatus.RUNNING, lease_token="dead", lease_until=None, runs=1
    )
    assert purchases(world.remote) == 3

    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.DONE and batch.runs == 2
    assert items(batch, status=LabelBatchItemStatus.LABELLED).count() == 8
    assert purchases(world.remote) == 8  # the three bought before the crash were not bought again


def test_a_batch_another_worker_holds_is_left_alone(world, tenant_a):
    from datetime import timedelta

    from django.utils import timezone

    ready_parcels(world, 2)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    LabelBatch._base_manager.filter(pk=batch.pk).update(
        status=LabelBatchStatus.RUNNING,
        lease_token="alive",
        lease_until=timezone.now() + timedelta(minutes=1),
    )

    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.RUNNING and batch.lease_token == "alive"
    assert purchases(world.remote) == 0
    with pytest.raises(ValueError, match="still running"):
        label_batch_retry_failed(batch=batch, queue=False)


def test_running_a_finished_batch_again_changes_nothing(world, tenant_a):
    ready_parcels(world, 3)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)
    document = batch.document.name

    again = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert again.runs == 1 and again.document.name == document
    assert purchases(world.remote) == 3
    assert label_batch_retry_failed(batch=again, queue=False) == 0


def test_reprint_renders_again_without_buying(world, tenant_a):
    ready_parcels(world, 4)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False, layout="separate")
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)
    first_labels = pdf_pages(batch)

    label_batch_reprint(batch=batch, queue=False)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.DONE and batch.runs == 2
    assert purchases(world.remote) == 4
    assert pdf_pages(batch) == first_labels
    slips = pdf_pages(batch, "slips_document")
    assert "Pick list" in slips[0] and len(slips) - 4 in (1, 2)
    assert not batch.render_only


def test_the_job_runs_only_for_the_batch_tenant(world, tenant_a, tenant_b):
    ready_parcels(world, 1)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)

    with pytest.raises(LabelBatch.DoesNotExist):
        run_label_batch(tenant_b.pk, batch.pk)

    batch.refresh_from_db()
    assert batch.status == LabelBatchStatus.QUEUED and batch.runs == 0
    assert purchases(world.remote) == 0


def test_zpl_labels_come_as_a_zpl_file_next_to_the_slips(world, tenant_a):
    from logistics.models import LabelAccount

    LabelAccount._base_manager.filter(tenant=tenant_a).update(label_format="zpl")
    ready_parcels(world, 3)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)

    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    with batch.zpl_document.open("rb") as handle:
        zpl = handle.read().decode()
    assert zpl.count("^XA") == 3
    with tenant_context(tenant_a):
        ordered = items(batch).select_related("shipment")
        numbers = [item.shipment.tracking_number for item in ordered]
    assert [zpl.index(number) for number in numbers] == sorted(
        zpl.index(number) for number in numbers
    )
    pages = pdf_pages(batch)
    assert sum("PACKING SLIP" in page for page in pages) == 3
    assert len(pages) - 3 in (1, 2)  # the pick list and the slips; labels are in the ZPL


def test_a_batch_whose_job_breaks_says_why_and_resumes_without_buying_again(
    world, tenant_a, settings
):
    ready_parcels(world, 3)
    real_font = settings.TKERP_PDF_FONT_FILE
    settings.TKERP_PDF_FONT_FILE = "/nowhere/NotoSansCJK-Regular.ttc"
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)

    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.FAILED
    assert "/nowhere/NotoSansCJK-Regular.ttc is missing" in batch.error
    assert "fonts-noto-cjk" in batch.error
    assert not items(batch, live=True).exists()  # its parcels are not held by a dead batch
    assert items(batch, status=LabelBatchItemStatus.LABELLED).count() == 3
    assert purchases(world.remote) == 3

    settings.TKERP_PDF_FONT_FILE = real_font
    label_batch_retry_failed(batch=batch, queue=False)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.DONE and batch.error == ""
    assert purchases(world.remote) == 3
    assert sum("PACKING SLIP" in page for page in pdf_pages(batch)) == 3


def test_outcomes_that_could_not_be_written_are_settled_from_the_parcels(
    world, tenant_a, monkeypatch
):
    from logistics import batches

    ready_parcels(world, 4)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)

    def database_hiccup(**kwargs):
        raise RuntimeError("connection lost while writing progress")

    monkeypatch.setattr(batches, "_items_labelled", database_hiccup)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    # The labels were bought and stored on the parcels; the batch reads them from there.
    assert batch.status == LabelBatchStatus.DONE
    assert items(batch, status=LabelBatchItemStatus.LABELLED).count() == 4
    assert purchases(world.remote) == 4
    assert sum("PACKING SLIP" in page for page in pdf_pages(batch)) == 4


def test_a_reprint_never_prints_the_label_of_a_parcel_cancelled_since(world, tenant_a):
    """The buyer cancels after the batch printed: the parcel is cancelled, its label kept as the
    record and refunded in the background. A reprint (a printer jam) must not print that label
    again (it would be stuck on a box and shipped on a refunded label); the parcel shows as
    failed with why, and the others print as before."""
    from orders.cancellations import order_cancel_close

    ready_parcels(world, 3)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)
    with tenant_context(tenant_a):
        gone = items(batch).select_related("shipment__order").first().shipment
        order_cancel_close(order=gone.order, reason="buyer changed their mind")
    assert Shipment._base_manager.get(pk=gone.pk).status == ShipmentStatus.CANCELLED

    label_batch_reprint(batch=batch, queue=False)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.DONE
    text = digits("".join(pdf_pages(batch)))
    assert digits(gone.tracking_number) not in text
    assert gone.reference not in "".join(pdf_pages(batch))
    assert sum("PACKING SLIP" in page for page in pdf_pages(batch)) == 2
    item = items(batch, shipment=gone).get()
    assert item.status == LabelBatchItemStatus.FAILED and "cancelled" in item.error
    assert purchases(world.remote) == 3


def test_a_damaged_label_file_fails_its_parcel_not_the_whole_batch(world, tenant_a, monkeypatch):
    """The label service hands over a file that starts like a PDF but is damaged (cut short, an
    error page behind a PDF header). Only that parcel fails, saying what to do; the batch still
    prints the others (before, the merge raised and the whole batch failed, on every retry and
    reprint too, without naming the parcel)."""
    from logistics.labels.labelapi import LabelApiSource

    ready_parcels(world, 3)
    real, served = LabelApiSource._download, []

    def download(self, url):
        document = real(self, url)
        if not served:
            served.append(url)
            return document[:200]  # the first label arrives cut short
        return document

    monkeypatch.setattr(LabelApiSource, "_download", download)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)

    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)

    assert batch.status == LabelBatchStatus.DONE, batch.error
    failed = list(items(batch, status=LabelBatchItemStatus.FAILED).select_related("shipment"))
    assert len(failed) == 1
    assert failed[0].shipment.reference in failed[0].error
    assert "void it and buy again" in failed[0].error and "0x" not in failed[0].error
    assert sum("PACKING SLIP" in page for page in pdf_pages(batch)) == 2


def test_a_reprint_that_breaks_keeps_the_documents_printed_before(world, tenant_a, settings):
    """A reprint whose render fails (here the PDF font went missing) leaves the batch failed,
    saying why; the PDF printed before is still there to download (it was deleted before the
    new one was drawn, and the batch kept naming the missing file)."""
    ready_parcels(world, 2)
    batch = label_batch_start(tenant=tenant_a, shop=world.shop, queue=False)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)
    first = pdf_pages(batch)

    real_font = settings.TKERP_PDF_FONT_FILE
    settings.TKERP_PDF_FONT_FILE = "/nowhere/NotoSansCJK-Regular.ttc"
    label_batch_reprint(batch=batch, queue=False)
    batch = label_batch_run(tenant=tenant_a, batch_id=batch.pk)
    settings.TKERP_PDF_FONT_FILE = real_font

    assert batch.status == LabelBatchStatus.FAILED and "is missing" in batch.error
    assert batch.document and pdf_pages(batch) == first
