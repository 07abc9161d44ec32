"""Benchmark: a 50,000-row SKU import through the background job, next to the old path.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tkerp .venv/bin/python bench/imports.py

Builds a throwaway database (dropped at the end unless --keep-db) with one tenant and 1,000
existing SKUs, writes a CSV of --rows SKU rows (the first 1,000 change those SKUs, the rest are
new), and measures:

1. the background import (`tkerp.imports`, as the job runs it: store and transcode the upload,
   check every row, then write in bulk in one transaction), end to end;
2. the same file again: every row unchanged, nothing written (what a retry costs);
3. the baseline, measured in the same run: django-import-export's row-by-row `import_data` (what
   the admin's preview and confirm each did) on a --baseline-rows slice, rows/s extrapolated.

Each step runs in a fresh child process and reports its wall time, its own CPU time (the
database server's is not in it: on a busy machine wall time is the one to compare with the
baseline of the same run) and its peak resident set size. Never part of the test run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import django_on, throwaway_database  # noqa: E402

COLUMNS = (
    "code,name,barcode,weight_grams,length_mm,width_mm,height_mm,cost,currency,hs_code,is_active"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--existing", type=int, default=1_000)
    parser.add_argument("--baseline-rows", type=int, default=2_000)
    parser.add_argument("--keep-db", action="store_true", help="Leave the bench database.")
    return parser.parse_args()


def write_file(path: Path, rows: int, *, offset: int = 0) -> None:
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(COLUMNS + "\n")
        for n in range(offset + 1, offset + rows + 1):
            out.write(
                f"SKU-{n:06d},Bench product {n} in blue,{400000000000 + n},{100 + n % 900},"
                f"{n % 300},{n % 200},{n % 100},{n % 97}.{n % 100:02d},USD,6109.10,1\n"
            )


def peak_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(url: str, name: str, args: argparse.Namespace, file: str, queue) -> None:
    """One measured step, in its own process (its own peak memory)."""
    django_on(url)
    from django.core.files.uploadedfile import TemporaryUploadedFile

    from inventory.resources import SkuResource
    from shops.models import Tenant
    from tkerp.imports import import_job_start, upload_store
    from tkerp.jobs import job_execute
    from tkerp.tenancy import tenant_context

    tenant = Tenant.objects.get(slug="bench-seller")
    began, cpu_began = time.perf_counter(), time.process_time()
    with tenant_context(tenant):
        if name == "baseline":
            import tablib

            with open(file, encoding="utf-8") as source:
                dataset = tablib.Dataset().load(source.read(), format="csv")
            result = SkuResource(tenant=tenant).import_data(dataset, dry_run=False)
            assert not result.has_errors() and not result.has_validation_errors()
            rows, outcome = len(dataset), dict(result.totals)
        else:
            size = os.path.getsize(file)
            upload = TemporaryUploadedFile("skus.csv", "text/csv", size, "utf-8")
            with open(file, "rb") as source:
                while chunk := source.read(1 << 20):
                    upload.write(chunk)
            upload.seek(0)
            stored = upload_store(upload=upload, tenant=tenant, delimiter=",")
            job = import_job_start(
                tenant=tenant, user=None, resource_class=SkuResource, stored=stored,
                file_name="skus.csv",
            )  # fmt: skip
            job_execute(job_id=job.pk, tenant=tenant)
            job.refresh_from_db()
            assert job.status == "succeeded", (job.message, job.error_count)
            rows, outcome = stored.rows, job.result
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    queue.put((name, rows, seconds, cpu, peak_mb(), outcome))


def measure(url: str, name: str, args, file: Path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=step, args=(url, name, args, str(file), queue))
    process.start()
    outcome = queue.get(timeout=1800)
    process.join()
    return outcome


def main() -> None:
    args = parse_args()
    with throwaway_database("imports", script="bench/imports.py", keep=args.keep_db) as url:
        django_on(url)
        from django.conf import settings

        from inventory.models import Sku
        from shops.models import Tenant
        from tkerp.tenancy import tenant_context

        tenant = Tenant.objects.create(name="Bench Seller", slug="bench-seller")
        with tenant_context(tenant):
            Sku.objects.bulk_create(
                Sku(tenant=tenant, code=f"SKU-{n:06d}", name=f"Old {n}")
                for n in range(1, args.existing + 1)
            )
        work = Path(settings.MEDIA_ROOT) / "bench-imports"
        work.mkdir(parents=True, exist_ok=True)
        big, small = work / "skus.csv", work / "baseline.csv"
        write_file(big, args.rows)
        # The baseline slice is all new SKUs, so it does not touch what the big file imports.
        write_file(small, args.baseline_rows, offset=args.rows + 10)
        size_mb = big.stat().st_size / 1e6
        os.environ.setdefault("TKERP_IMPORT_MAX_ROWS", str(max(args.rows, 200_000)))

        results = [
            measure(url, "background", args, big),
            measure(url, "again", args, big),
            measure(url, "baseline", args, small),
        ]
        big.unlink()
        small.unlink()

    print(f"file: {args.rows:,} SKU rows, {size_mb:.1f} MB ({args.existing:,} already existed)")
    labels = {
        "background": "background job: store, check every row, write in bulk",
        "again": "same file again (all unchanged, nothing written)",
        "baseline": "baseline: django-import-export import_data, row by row",
    }
    for name, rows, seconds, cpu, peak, outcome in results:
        print(
            f"{labels[name]:58s} {rows:7,} rows in {seconds:7.2f} s = {rows / seconds:8.0f} rows/s,"
            f" {cpu:6.2f} s CPU here, peak {peak:6.0f} MB  {outcome}"
        )
    baseline = results[2]
    rate = baseline[1] / baseline[2]
    print(
        f"baseline extrapolated to {args.rows:,} rows: {args.rows / rate:.0f} s for one pass "
        "(the admin ran it twice: preview, then confirm)"
    )


if __name__ == "__main__":
    main()
