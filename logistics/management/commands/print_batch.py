"""manage.py print_batch --shop ID [--limit N] [--output FILE.pdf]: print a shop's ready parcels
now, in the foreground, with a progress bar; the last line sums the batch up."""

from __future__ import annotations

import shutil
import threading
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from logistics.batches import (
    NothingToPrint,
    label_batch_progress,
    label_batch_run,
    label_batch_start,
)
from logistics.models import LabelBatchLayout, LabelBatchStatus
from shops.models import Shop
from tkerp.jobs import ProgressBar
from tkerp.tenancy import all_tenants, tenant_context


class TerminalProgress:
    """A one-line bar redrawn in place on the terminal (stderr, so stdout keeps the summary)."""

    WIDTH = 30

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()
        self.drawn = False

    def __call__(self, progress: ProgressBar) -> None:
        filled = self.WIDTH * progress.percent // 100
        line = (
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {progress.percent:3d}% "
            f"{progress.done}/{progress.total} labelled, {progress.failed} failed"
        )
        with self.lock:
            self.stream.write(line, ending="")
            self.stream.flush()
            self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("")


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--due-before {value!r} is not a date and time (e.g. 2026-05-01T18:00)"
        ) from None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = "Print the labels, packing slips and pick list of a shop's ready parcels now."

    def add_arguments(self, parser):
        parser.add_argument("--shop", type=int, required=True, help="Shop id.")
        parser.add_argument("--limit", type=int, help="At most this many parcels.")
        parser.add_argument("--output", help="Also write the PDF to this file.")
        parser.add_argument(
            "--due-before", help="Only parcels whose order ships by this time (ISO 8601)."
        )
        parser.add_argument(
            "--layout",
            choices=LabelBatchLayout.values,
            default=LabelBatchLayout.MERGED,
            help="merged: label then slip per parcel in one PDF; separate: two PDFs.",
        )

    def handle(self, *args, shop, limit, output, due_before, layout, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        target = Path(output).expanduser() if output else None
        if target is not None and not target.parent.is_dir():
            raise CommandError(f"--output {output}: the folder {target.parent} does not exist")
        due = _when(due_before) if due_before else None
        with all_tenants():  # an operator's command: the shop says which tenant
            found = Shop.objects.select_related("tenant").filter(pk=shop).first()
        if found is None:
            raise CommandError(f"no shop with id {shop}")
        bar = TerminalProgress(self.stderr)
        with tenant_context(found.tenant):
            try:
                batch = label_batch_start(
                    tenant=found.tenant,
                    shop=found,
                    due_before=due,
                    limit=limit,
                    layout=layout,
                    queue=False,
                )
            except NothingToPrint as error:
                raise CommandError(str(error)) from None
            try:
                batch = label_batch_run(tenant=found.tenant, batch_id=batch.pk, progress=bar)
            finally:
                bar.close()
            counts = label_batch_progress(batch=batch)
        if batch.status != LabelBatchStatus.DONE:
            raise CommandError(f"batch {batch.pk} {batch.status}: {batch.error}")
        files = self._deliver(batch, target)
        self.stdout.write(
            f"batch {batch.pk}: {counts.done} printed, {counts.failed} failed, "
            f"{batch.pages} pages -> {files}"
        )

    def _deliver(self, batch, target: Path | None) -> str:
        """Copy the documents to --output (slips next to it as NAME-slips.pdf, ZPL labels as
        NAME.zpl); the paths written."""
        documents = [
            (batch.document, target),
            (batch.slips_document, target and target.with_name(f"{target.stem}-slips.pdf")),
            (batch.zpl_document, target and target.with_suffix(".zpl")),
        ]
        documents = [(document, path) for document, path in documents if document]
        if not documents:
            return "nothing (no parcel was labelled)"
        if target is None:
            return ", ".join(_where(document) for document, _ in documents)
        written = []
        for document, path in documents:
            with document.open("rb") as source, open(path, "wb") as sink:
                shutil.copyfileobj(source, sink)
            written.append(str(path))
        return ", ".join(written)


def _where(document) -> str:
    try:
        return document.path
    except NotImplementedError:  # storage without local paths (S3...)
        return document.name
