"""Large imports run as a background job (issue 9, item 5): tkerp.jobs and tkerp.imports.

Driven through the real admin import page; the job runs through django-q2 in sync mode, the way
a worker would run it, once the request's transaction commits. The thresholds are lowered with
settings so that a few rows count as "large".
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from inventory.models import Sku, StockLevel, StockMovement
from orders.models import Order, OrderLine
from tests.e2e.helpers import django_q_sync
from tests.factories import ShopFactory, SkuFactory, WarehouseFactory
from tests.inventory.helpers import _format_index, admin_url, csv_rows, messages_of
from tkerp.jobs import job_execute
from tkerp.models import Job, JobError, JobStatus
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_limits(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TKERP_IMPORT_BACKGROUND_ROWS = 3
    settings.TKERP_IMPORT_MAX_ROWS = 50
    settings.TKERP_IMPORT_MAX_BYTES = 20_000


def post_upload(client, model, content: bytes, filename="big.csv"):
    url = admin_url(model, "import")
    page = client.get(url)
    return client.post(
        url,
        {
            "format": _format_index(page.context["form"]),
            "resource": "0",
            "import_file": SimpleUploadedFile(filename, content, "text/csv"),
        },
    )


def start_and_run(client, model, content: bytes, django_capture_on_commit_callbacks):
    """Upload, land on the job page, and let the queued task run (as a worker would)."""
    with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
        response = post_upload(client, model, content)
    assert response.status_code == 302, messages_of(response) or response.content[:2000]
    job = Job._base_manager.get()
    assert response["Location"] == reverse("admin:tkerp_job_change", args=[job.pk])
    job.refresh_from_db()
    return response, job


def sku_file(rows: list[str]) -> bytes:
    return ("code,name,weight_grams,cost\n" + "\n".join(rows) + "\n").encode()


class TestBackgroundImport:
    def test_a_large_file_becomes_a_job_that_checks_then_writes_in_bulk(
        self, client_a, tenant_a, settings, django_capture_on_commit_callbacks
    ):
        SkuFactory(tenant=tenant_a, code="S-1", name="Old", weight_grams=1)
        SkuFactory(tenant=tenant_a, code="S-2", name="Thing 2", weight_grams=2, cost="2.50")
        content = sku_file([f"S-{n},Thing {n},{n},2.50" for n in range(1, 8)])

        _, job = start_and_run(client_a, Sku, content, django_capture_on_commit_callbacks)

        assert job.status == JobStatus.SUCCEEDED, (job.message, list(job.errors.values()))
        assert job.result == {"rows": 7, "new": 5, "updated": 1, "unchanged": 1}
        assert job.message == "Imported 7 rows: 5 new, 1 changed, 1 unchanged."
        assert (job.progress_done, job.progress_total, job.attempts) == (7, 7, 1)
        with tenant_context(tenant_a):
            assert Sku.objects.count() == 7
            assert Sku.objects.get(code="S-1").name == "Thing 1"
            assert Sku.objects.get(code="S-7").weight_grams == 7
        assert not (settings.MEDIA_ROOT / job.params["file"]).exists()  # done with the upload

    def test_the_job_page_refreshes_while_running_and_stops_when_finished(
        self, client_a, tenant_a, django_capture_on_commit_callbacks
    ):
        content = sku_file([f"S-{n},Thing {n},{n},1" for n in range(1, 6)])
        with django_capture_on_commit_callbacks(execute=False):
            response = post_upload(client_a, Sku, content)
        job = Job._base_manager.get()

        queued = client_a.get(response["Location"])

        # The progress bar label batches show, refreshing itself from its own URL while live.
        progress_url = reverse("admin:tkerp_job_progress", args=[job.pk])
        assert queued.status_code == 200
        assert queued.context["progress"].live
        page = queued.content.decode()
        assert 'class="progress-fragment"' in page and 'data-live="1"' in page
        assert f'data-progress-url="{progress_url}"' in page
        assert "big.csv has 5 rows" in " ".join(messages_of(queued))
        fragment = client_a.get(progress_url)
        assert fragment.status_code == 200
        assert "Queued: Waiting for a worker" in fragment.content.decode()

        with django_q_sync():
            from tkerp.tasks import job_execute as task

            task(job.pk, tenant_a.pk)
        finished = client_a.get(response["Location"])

        page = finished.content.decode()
        assert 'data-live="0"' in page and 'data-live="1"' not in page
        assert '<strong class="progress-percent">100 %</strong>' in page
        assert "Imported 5 rows: 5 new, 0 changed, 0 unchanged." in page
        fragment = client_a.get(progress_url).content.decode()
        assert '<span class="progress-done">5</span>' in fragment
        assert '<span class="progress-total">5</span>' in fragment

    def test_bad_rows_fail_the_job_name_every_row_and_write_nothing(
        self, client_a, tenant_a, django_capture_on_commit_callbacks
    ):
        rows = [f"S-{n},Thing {n},{n},1" for n in range(1, 9)]
        rows[2] = "S-3,Thing 3,10.9,1"
        rows[5] = "S-6,,6,1e30"
        rows[7] = "S-1,Again,1,1"

        _, job = start_and_run(client_a, Sku, sku_file(rows), django_capture_on_commit_callbacks)

        assert job.status == JobStatus.FAILED
        assert job.message.startswith("3 of 8 rows have errors; nothing was imported.")
        errors = list(JobError._base_manager.filter(job=job).values_list("row", "column"))
        assert sorted(errors) == [(3, "weight_grams"), (6, "cost"), (6, "name"), (8, "code")]
        assert not Sku._base_manager.exists()
        page = client_a.get(reverse("admin:tkerp_job_change", args=[job.pk])).content.decode()
        assert "“10.9” is not a whole number" in page
        assert "is already on row 1 of this file" in page
        report = client_a.get(reverse("admin:tkerp_job_errors", args=[job.pk]))
        assert report.status_code == 200
        assert sorted((r["row"], r["column"]) for r in csv_rows(report.content)) == [
            ("3", "weight_grams"),
            ("6", "cost"),
            ("6", "name"),
            ("8", "code"),
        ]

    def test_a_barcode_taken_by_another_sku_is_named(
        self, client_a, tenant_a, django_capture_on_commit_callbacks
    ):
        SkuFactory(tenant=tenant_a, code="OLD", barcode="0001")
        content = b"code,name,barcode\nA,A,0001\nB,B,0002\nC,C,0002\nD,D,\nE,E,\n"

        _, job = start_and_run(client_a, Sku, content, django_capture_on_commit_callbacks)

        assert job.status == JobStatus.FAILED
        errors = JobError._base_manager.filter(job=job).order_by("row")
        assert [(e.row, e.column) for e in errors] == [(1, "barcode"), (3, "barcode")]
        assert "already used by another SKU" in errors[0].message
        assert "already on row 2 of this file" in errors[1].message

    def test_stock_counts_run_row_by_row_through_stock_count(
        self, client_a, tenant_a, user_a, django_capture_on_commit_callbacks
    ):
        WarehouseFactory(tenant=tenant_a, code="MAIN")
        for n in range(1, 6):
            SkuFactory(tenant=tenant_a, code=f"S-{n}")
        content = "sku,warehouse,on_hand\n" + "".join(f"S-{n},MAIN,{n}\n" for n in range(1, 6))

        _, job = start_and_run(
            client_a, StockLevel, content.encode(), django_capture_on_commit_callbacks
        )

        assert job.status == JobStatus.SUCCEEDED, list(job.errors.values())
        with tenant_context(tenant_a):
            assert sorted(StockLevel.objects.values_list("on_hand", flat=True)) == [1, 2, 3, 4, 5]
            movements = StockMovement.objects.all()
            assert {m.created_by for m in movements} == {user_a}
            assert {m.reference for m in movements} == {"import big.csv"}

    def test_orders_run_row_by_row_in_the_job(
        self, client_a, tenant_a, django_capture_on_commit_callbacks
    ):
        ShopFactory(tenant=tenant_a, name="Alpha CSV", platform="manual", platform_shop_id="")
        SkuFactory(tenant=tenant_a, code="MUG")
        head = "shop,order_id,recipient_name,address_line1,city,sku,quantity,unit_price\n"
        body = "".join(
            f"Alpha CSV,M-{n},Jamie,1 Market St,Springfield,MUG,1,9.50\n" for n in range(5)
        )

        _, job = start_and_run(
            client_a, Order, (head + body).encode(), django_capture_on_commit_callbacks
        )

        assert job.status == JobStatus.SUCCEEDED, list(job.errors.values())
        assert job.result == {"new": 5, "updated": 0, "unchanged": 0}
        with tenant_context(tenant_a):
            assert Order.objects.count() == 5
            assert OrderLine.objects.count() == 5


class TestRetrySafety:
    def test_running_the_job_again_writes_nothing_again(
        self, client_a, tenant_a, django_capture_on_commit_callbacks
    ):
        content = sku_file([f"S-{n},Thing {n},{n},1" for n in range(1, 6)])
        _, job = start_and_run(client_a, Sku, content, django_capture_on_commit_callbacks)
        before = list(Sku._base_manager.order_by("pk").values_list("pk", "updated_at"))

        again = job_execute(job_id=job.pk, tenant=tenant_a)

        assert again is None
        job.refresh_from_db()
        assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)
        assert list(Sku._base_manager.order_by("pk").values_list("pk", "updated_at")) == before

    def test_a_job_interrupted_before_its_commit_runs_again_from_the_start(
        self, client_a, tenant_a, django_capture_on_commit_callbacks
    ):
        content = sku_file([f"S-{n},Thing {n},{n},1" for n in range(1, 6)])
        with django_capture_on_commit_callbacks(execute=False):
            post_upload(client_a, Sku, content)
        job = Job._base_manager.get()
        # As a worker killed mid-run leaves it: running, one attempt, nothing committed.
        Job._base_manager.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempts=1)

        job_execute(job_id=job.pk, tenant=tenant_a)
        job_execute(job_id=job.pk, tenant=tenant_a)

        job.refresh_from_db()
        assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
        assert Sku._base_manager.count() == 5

    def test_the_same_file_imported_twice_leaves_every_row_unchanged(
        self, client_a, tenant_a, django_capture_on_commit_callbacks
    ):
        content = sku_file([f"S-{n},Thing {n},{n},1" for n in range(1, 6)])
        start_and_run(client_a, Sku, content, django_capture_on_commit_callbacks)
        before = list(Sku._base_manager.order_by("pk").values_list("pk", "updated_at"))
        Job._base_manager.all().delete()

        _, second = start_and_run(client_a, Sku, content, django_capture_on_commit_callbacks)

        assert second.result == {"rows": 5, "new": 0, "updated": 0, "unchanged": 5}
        assert list(Sku._base_manager.order_by("pk").values_list("pk", "updated_at")) == before


class TestTenancy:
    def test_another_tenant_gets_404_on_the_job_page_and_its_report(
        self, client_a, client_b, tenant_a, django_capture_on_commit_callbacks
    ):
        rows = [f"S-{n},Thing {n},x,1" for n in range(1, 6)]
        _, job = start_and_run(client_a, Sku, sku_file(rows), django_capture_on_commit_callbacks)

        assert client_a.get(reverse("admin:tkerp_job_change", args=[job.pk])).status_code == 200
        assert client_b.get(reverse("admin:tkerp_job_change", args=[job.pk])).status_code == 404
        assert client_b.get(reverse("admin:tkerp_job_errors", args=[job.pk])).status_code == 404
        progress = reverse("admin:tkerp_job_progress", args=[job.pk])
        assert client_b.get(progress).status_code == 404
        listing = client_b.get(reverse("admin:tkerp_job_changelist"))
        assert job.title not in listing.content.decode()

    @pytest.mark.parametrize("job_id", ["abc", "1.5", "-1", "\u0661", "9" * 30])
    def test_a_job_id_that_is_not_a_number_is_a_404(self, user_a, job_id):
        client = Client(raise_request_exception=False)
        client.force_login(user_a)
        assert client.get(f"/admin/tkerp/job/{job_id}/change/").status_code == 404

    def test_the_job_writes_only_into_the_tenant_that_started_it(
        self, client_a, tenant_a, tenant_b, django_capture_on_commit_callbacks
    ):
        theirs = SkuFactory(tenant=tenant_b, code="S-1", name="Bravo's")
        content = sku_file([f"S-{n},Thing {n},{n},1" for n in range(1, 6)])

        _, job = start_and_run(client_a, Sku, content, django_capture_on_commit_callbacks)

        assert job.status == JobStatus.SUCCEEDED
        theirs.refresh_from_db()
        assert theirs.name == "Bravo's"
        assert Sku._base_manager.filter(tenant=tenant_a).count() == 5


class TestLimits:
    def test_a_file_with_too_many_rows_is_refused_with_the_limit(self, client_a, settings):
        settings.TKERP_IMPORT_MAX_ROWS = 4
        content = sku_file([f"S-{n},Thing {n},{n},1" for n in range(1, 6)])

        response = post_upload(client_a, Sku, content)

        assert response.status_code == 200
        (error,) = response.context["form"].errors["import_file"]
        assert error == (
            "The file has more than 4 rows; an import takes at most 4. Split it into smaller files."
        )
        assert not Job._base_manager.exists() and not Sku._base_manager.exists()

    def test_a_file_too_large_is_refused_with_the_limit(self, client_a, settings):
        settings.TKERP_IMPORT_MAX_BYTES = 1_000
        content = sku_file([f"S-{n},{'x' * 100},{n},1" for n in range(1, 20)])

        response = post_upload(client_a, Sku, content)

        (error,) = response.context["form"].errors["import_file"]
        assert (
            error == "The file is 2 KB; an import takes at most 1 KB. Split it into smaller files."
        )
        assert not Job._base_manager.exists() and not Sku._base_manager.exists()

    def test_a_small_file_is_still_previewed_in_the_request(self, client_a, tenant_a):
        response = post_upload(client_a, Sku, sku_file(["S-1,Thing,1,1", "S-2,Thing,2,1"]))

        assert response.status_code == 200
        assert response.context["confirm_form"] is not None
        assert not Job._base_manager.exists()
