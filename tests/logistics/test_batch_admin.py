"""The label batch back office without buying: starting a batch from both doors, the pages a
tenant may not reach, and the progress fragment."""

import pytest
from django.urls import reverse

from logistics.models import LabelBatch, LabelBatchItem, LabelBatchLayout, Shipment
from tests.inventory.helpers import admin_url, messages_of
from tests.logistics.batch_helpers import print_world, ready_parcels

pytestmark = pytest.mark.django_db


@pytest.fixture
def world_a(tenant_a):
    return print_world(tenant_a, marker="ALPHA")


@pytest.fixture
def world_b(tenant_b):
    return print_world(tenant_b, marker="BRAVO")


@pytest.fixture
def batch_b(world_b, tenant_b):
    from logistics.batches import label_batch_start

    ready_parcels(world_b, 2)
    return label_batch_start(tenant=tenant_b, shop=world_b.shop, queue=False)


def test_print_everything_ready_offers_own_shops_with_their_ready_counts(
    client_a, world_a, world_b
):
    ready_parcels(world_a, 3)
    ready_parcels(world_b, 5)

    page = client_a.get(admin_url(LabelBatch, "add"))

    assert page.status_code == 200
    choices = [label for _, label in page.context["form"].fields["shop"].choices]
    assert choices == ["ALPHA TikTok (3 ready)"]
    assert "BRAVO" not in page.content.decode()


def test_print_everything_ready_starts_a_batch_and_shows_it(
    client_a, world_a, django_capture_on_commit_callbacks
):
    ready_parcels(world_a, 4)

    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client_a.post(
            admin_url(LabelBatch, "add"),
            {"shop": world_a.shop.pk, "layout": LabelBatchLayout.SEPARATE, "limit": "3"},
        )

    batch = LabelBatch._base_manager.get()
    assert response.status_code == 302
    assert response["Location"] == admin_url(LabelBatch, "change", batch.pk)
    assert batch.layout == LabelBatchLayout.SEPARATE and batch.shop == world_a.shop
    assert LabelBatchItem._base_manager.filter(batch=batch).count() == 3
    assert len(queued) == 1  # the job, queued once the batch is committed
    page = client_a.get(response["Location"])
    assert page.status_code == 200
    assert page.context["progress"].total == 3
    assert 'data-live="1"' in page.content.decode()


def test_print_everything_ready_with_nothing_ready_says_so(client_a, world_a):
    response = client_a.post(
        admin_url(LabelBatch, "add"), {"shop": world_a.shop.pk, "layout": "merged"}
    )

    assert response.status_code == 200
    assert "Nothing to print: no parcel is ready to print" in response.content.decode()
    assert not LabelBatch._base_manager.exists()


def test_print_labels_action_asks_the_layout_then_starts_one_batch(
    client_a, world_a, django_capture_on_commit_callbacks
):
    parcels = ready_parcels(world_a, 3)
    selected = [str(parcel.pk) for parcel in parcels[:2]]
    data = {"action": "print_labels", "_selected_action": selected}

    ask = client_a.post(admin_url(Shipment, "changelist"), data)
    assert ask.status_code == 200
    assert ask.context["selected_count"] == 2
    with django_capture_on_commit_callbacks(execute=False):
        started = client_a.post(
            admin_url(Shipment, "changelist"), {**data, "apply": "1", "layout": "merged"}
        )

    batch = LabelBatch._base_manager.get()
    assert started.status_code == 302
    assert started["Location"] == admin_url(LabelBatch, "change", batch.pk)
    taken = LabelBatchItem._base_manager.filter(batch=batch).values_list("shipment", flat=True)
    assert sorted(taken) == sorted(parcel.pk for parcel in parcels[:2])


def test_a_viewer_may_not_print(client_b, tenant_b, world_b):
    from shops.models import Membership, Role

    Membership._base_manager.filter(tenant=tenant_b).update(role=Role.VIEWER)
    ready_parcels(world_b, 1)

    assert client_b.get(admin_url(LabelBatch, "add")).status_code == 403
    page = client_b.get(admin_url(Shipment, "changelist"))
    assert "print_labels" not in page.content.decode()


@pytest.mark.parametrize("view", ["progress", "retry", "reprint", "download"])
def test_another_tenants_batch_is_not_found(view, client_a, world_a, batch_b):
    args = [batch_b.pk, "document"] if view == "download" else [batch_b.pk]
    url = reverse(f"admin:logistics_labelbatch_{view}", args=args)

    response = client_a.post(url) if view in ("retry", "reprint") else client_a.get(url)

    assert response.status_code == 404


def test_another_tenants_batch_page_is_the_same_as_a_missing_one(client_a, world_a, batch_b):
    theirs = client_a.get(admin_url(LabelBatch, "change", batch_b.pk))
    missing = client_a.get(admin_url(LabelBatch, "change", batch_b.pk + 1000))

    assert theirs.status_code == missing.status_code == 302
    assert any("doesn\u2019t exist" in message for message in messages_of(theirs))
    listing = client_a.get(admin_url(LabelBatch, "changelist"))
    assert list(listing.context["cl"].result_list) == []


def test_the_progress_fragment_counts_the_items(client_b, batch_b):
    first = LabelBatchItem._base_manager.filter(batch=batch_b).order_by("pk").first()
    LabelBatchItem._base_manager.filter(pk=first.pk).update(
        status="failed", error="address rejected"
    )

    fragment = client_b.get(reverse("admin:logistics_labelbatch_progress", args=[batch_b.pk]))

    assert fragment.status_code == 200
    assert "no-store" in fragment["Cache-Control"]
    progress = fragment.context["progress"]
    assert (progress.total, progress.done, progress.failed, progress.percent) == (2, 0, 1, 50)
    html = fragment.content.decode()
    assert 'class="progress-fragment"' in html and 'data-live="1"' in html
    assert "50 %" in html


def test_two_files_are_not_counted_as_the_labels_pages(
    client_a, tenant_a, world_a, settings, tmp_path
):
    """A batch printed as two files counts the pages of both together: the page says so beside
    the downloads, not on the labels PDF's link (402 pages next to a 200-page labels file)."""
    from django.core.files.base import ContentFile

    from logistics.batches import label_batch_start
    from tkerp.tenancy import tenant_context

    settings.MEDIA_ROOT = tmp_path
    ready_parcels(world_a, 2)
    batch = label_batch_start(
        tenant=tenant_a, shop=world_a.shop, layout=LabelBatchLayout.SEPARATE, queue=False
    )
    with tenant_context(tenant_a):
        batch.document.save("labels.pdf", ContentFile(b"%PDF-1.4"), save=False)
        batch.slips_document.save("slips.pdf", ContentFile(b"%PDF-1.4"), save=False)
        batch.status, batch.pages = "done", 5
        batch.save()

    html = client_a.get(admin_url(LabelBatch, "change", batch.pk)).content.decode()

    assert "Labels PDF</a> · 5 pages" not in html
    assert "5 pages in the PDFs together" in html


def test_a_batch_whose_worker_died_offers_retry_and_retry_requeues_it(
    client_a, tenant_a, world_a, django_capture_on_commit_callbacks
):
    """A worker killed mid-run (a deploy, OOM; a Redis broker does not hand the task out again)
    leaves the batch running under a lease that ran out, with its parcels held by it and no
    document yet. Its page must offer "Retry failed" (which resumes it), or the batch and its
    parcels are stuck for good: it cannot be deleted while live, nor its parcels printed
    elsewhere."""
    from logistics.batches import label_batch_start
    from logistics.models import LabelBatchStatus

    ready_parcels(world_a, 2)
    batch = label_batch_start(tenant=tenant_a, shop=world_a.shop, queue=False)
    LabelBatch._base_manager.filter(pk=batch.pk).update(
        status=LabelBatchStatus.RUNNING, lease_token="dead", lease_until=None, runs=1
    )

    page = client_a.get(admin_url(LabelBatch, "change", batch.pk))

    assert page.status_code == 200
    assert page.context["may_retry"]
    assert 'id="retry-failed"' in page.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client_a.post(reverse("admin:logistics_labelbatch_retry", args=[batch.pk]))
    assert response.status_code == 302
    assert len(queued) == 1
    assert LabelBatch._base_manager.get(pk=batch.pk).status == LabelBatchStatus.QUEUED
    assert not any("No failed parcel" in message for message in messages_of(response))
