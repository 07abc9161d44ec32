"""Label batches through the doors people use, with the real job and the label API sandbox:
the admin's "Print everything ready", the batch page's buttons and download, the print_batch
command, and two batches started and run at the same moment."""

import io
import re
import threading

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from pypdf import PdfReader

from logistics.batches import NothingToPrint, label_batch_run, label_batch_start
from logistics.models import LabelBatch, LabelBatchItem, LabelBatchStatus, Shipment
from orders.models import Order
from tests.e2e.helpers import django_q_sync
from tests.inventory.helpers import admin_url
from tests.logistics.batch_helpers import (  # noqa: F401 - batch_media: autouse
    batch_media,
    connect_label_api,
    print_world,
    purchases,
    ready_parcels,
)

# The parallel buy runs on threads with their own connections: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(tenant_a):
    world = print_world(tenant_a)
    world.remote = connect_label_api(world)
    return world


def download(client, batch, kind="document"):
    return client.get(reverse("admin:logistics_labelbatch_download", args=[batch.pk, kind]))


def pdf_of(response) -> list[str]:
    data = b"".join(response.streaming_content)
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def test_print_everything_ready_runs_the_job_and_the_pdf_is_the_tenants_own(
    world, client_a, client_b, tenant_b
):
    ready_parcels(world, 5)

    with django_q_sync():
        started = client_a.post(
            admin_url(LabelBatch, "add"), {"shop": world.shop.pk, "layout": "merged"}
        )

    batch = LabelBatch._base_manager.get()
    assert started.status_code == 302 and batch.status == LabelBatchStatus.DONE
    page = client_a.get(started["Location"])
    html = page.content.decode()
    assert page.context["progress"].percent == 100 and not page.context["progress"].live
    assert 'data-live="0"' in html and "5</span> done" in html
    assert reverse("admin:logistics_labelbatch_download", args=[batch.pk, "document"]) in html
    response = download(client_a, batch)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="label-batch-{batch.pk}.pdf"' in response["Content-Disposition"]
    pages = pdf_of(response)
    assert len(pages) == batch.pages and sum("PACKING SLIP" in page for page in pages) == 5
    # Another tenant's staff get the same answer as for a batch that does not exist.
    assert download(client_b, batch).status_code == 404
    assert (
        client_b.get(reverse("admin:logistics_labelbatch_progress", args=[batch.pk])).status_code
        == 404
    )


def test_the_batch_page_lists_failures_and_retry_failed_buys_nothing_twice(
    world, client_a, tenant_a
):
    parcels = ready_parcels(world, 4)
    Order._base_manager.filter(pk=parcels[1].order_id).update(address_line1="Market Street")
    with django_q_sync():
        started = client_a.post(
            admin_url(LabelBatch, "add"), {"shop": world.shop.pk, "layout": "separate"}
        )
    batch = LabelBatch._base_manager.get()

    page = client_a.get(started["Location"])
    html = page.content.decode()
    assert page.context["progress"].failed == 1 and page.context["progress"].done == 3
    assert 'id="batch-errors"' in html and parcels[1].reference in html
    assert "Unable to verify" in html or "verify" in html.lower()
    assert 'id="retry-failed"' in html
    assert purchases(world.remote) == 3

    Order._base_manager.filter(pk=parcels[1].order_id).update(address_line1="7 Market Street")
    with django_q_sync():
        retried = client_a.post(reverse("admin:logistics_labelbatch_retry", args=[batch.pk]))

    assert retried.status_code == 302
    batch.refresh_from_db()
    assert batch.status == LabelBatchStatus.DONE and batch.runs == 2
    assert purchases(world.remote) == 4
    page = client_a.get(retried["Location"])
    assert page.context["progress"].done == 4 and 'id="batch-errors"' not in page.content.decode()
    labels, slips = pdf_of(download(client_a, batch)), pdf_of(download(client_a, batch, "slips"))
    assert len(labels) == 4 and "Pick list" in slips[0]

    with django_q_sync():
        client_a.post(reverse("admin:logistics_labelbatch_reprint", args=[batch.pk]))
    batch.refresh_from_db()
    assert batch.runs == 3 and purchases(world.remote) == 4
    assert pdf_of(download(client_a, batch)) == labels


def test_print_batch_command_prints_a_progress_bar_and_one_summary_line(world, tmp_path):
    parcels = ready_parcels(world, 6)  # the first ships soonest
    Order._base_manager.filter(pk=parcels[0].order_id).update(address_line1="Market Street")
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "batch.pdf"

    call_command(
        "print_batch", shop=world.shop.pk, limit=5, output=str(target), stdout=out, stderr=err
    )

    batch = LabelBatch._base_manager.get()
    lines = out.getvalue().strip().splitlines()
    assert lines == [f"batch {batch.pk}: 4 printed, 1 failed, {batch.pages} pages -> {target}"]
    assert re.search(r"\[#+\.*\] 100% \d/5 labelled", err.getvalue())
    assert len(PdfReader(str(target)).pages) == batch.pages
    assert LabelBatchItem._base_manager.filter(batch=batch).count() == 5


def test_print_batch_command_explains_what_is_wrong(world, tmp_path):
    with pytest.raises(CommandError, match="no shop with id 999999"):
        call_command("print_batch", shop=999999)
    with pytest.raises(CommandError, match="no parcel is ready to print"):
        call_command("print_batch", shop=world.shop.pk)
    with pytest.raises(CommandError, match="does not exist"):
        call_command("print_batch", shop=world.shop.pk, output=str(tmp_path / "no" / "x.pdf"))
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        call_command("print_batch", shop=world.shop.pk, limit=0)
    assert not LabelBatch._base_manager.exists()


def test_two_batches_started_and_run_at_once_print_each_parcel_once(world, tenant_a):
    parcels = ready_parcels(world, 30)
    ids = [parcel.pk for parcel in parcels]
    barrier = threading.Barrier(2)
    batches: list[LabelBatch] = []

    def print_everything():
        try:
            barrier.wait()
            batch = label_batch_start(tenant=tenant_a, shipment_ids=ids, queue=False)
            batches.append(label_batch_run(tenant=tenant_a, batch_id=batch.pk))
        except NothingToPrint:
            pass
        finally:
            connection.close()

    threads = [threading.Thread(target=print_everything) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert batches and all(batch.status == LabelBatchStatus.DONE for batch in batches)
    printed = []
    for batch in batches:
        with batch.document.open("rb") as handle:
            printed += [page.extract_text() for page in PdfReader(io.BytesIO(handle.read())).pages]
    numbers = Shipment._base_manager.filter(pk__in=ids).values_list("tracking_number", flat=True)
    for number in numbers:
        spaced = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        assert sum(spaced in page for page in printed) == 1, number
    assert purchases(world.remote) == 30
