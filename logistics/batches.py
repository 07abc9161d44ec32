"""Label batches: one click turns a shop's ready parcels into labels, packing slips and a pick
list, merged into one PDF in pick-path order.

The life of a batch:
- `label_batch_start` takes the parcels (a selection, or everything ready of a shop, optionally
  only what is due before a time), orders them along the pick path, and inserts one item per
  parcel. A parcel belongs to at most one live batch: a partial unique index on the items says
  so, and the insert skips what another batch took first, so two people starting batches over
  the same parcels at the same moment print each parcel once. The job is queued on commit.
- `label_batch_run` (the django-q task, or the print_batch command in the foreground) holds a
  lease on the batch, buys the label of every pending item through the label sources (in
  parallel under each source's rate limit, never inside a transaction), records each outcome as
  it arrives, then renders the documents and finishes. It is safe to run again at any point:
  labelled items are never bought again, and a buy repeated for a pending item carries the same
  idempotency key, so the source returns the label it sold the first time.
- `label_batch_retry_failed` puts the failed items back to pending and runs the batch again;
  `label_batch_reprint` re-renders the documents without buying anything.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from inventory.models import StockLevel, WarehouseKind
from logistics.documents import (
    ParcelSheet,
    PickRow,
    SlipLine,
    batch_documents_render,
    documents_warm,
    label_pdf_readable,
)
from logistics.labels.base import LabelFormat
from logistics.models import (
    LabelBatch,
    LabelBatchItem,
    LabelBatchItemStatus,
    LabelBatchLayout,
    LabelBatchStatus,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
)
from orders.models import CancellationStatus, OrderStatus
from tkerp.jobs import ProgressBar
from tkerp.tenancy import tenant_context

logger = logging.getLogger("tkerp.labels")

#: Order states whose pending parcels may be printed ("ready" until allocation marks them).
PRINTABLE_ORDER_STATUSES = (OrderStatus.READY, OrderStatus.ALLOCATED)


class NothingToPrint(ValueError):
    """No parcel could be taken into the batch (none ready, or all in another live batch)."""


class BatchLeaseLost(RuntimeError):
    """Another worker took the batch over (our lease expired); stop writing."""


def batch_progress_bar(*, total: int, done: int, failed: int, status: str) -> ProgressBar:
    """The batch's progress bar (the admin's one, `tkerp.jobs.ProgressBar`): `done` labelled,
    `failed`, of `total` parcels."""
    if status == LabelBatchStatus.DONE or not total:
        percent = 100
    else:
        percent = min(100, (done + failed) * 100 // total)
    return ProgressBar(
        total=total,
        done=done,
        failed=failed,
        percent=percent,
        live=status in (LabelBatchStatus.QUEUED, LabelBatchStatus.RUNNING),
        status_label=LabelBatchStatus(status).label,
    )


# ------------------------------------------------------------------------ pick-path ordering


def bin_sort_key(bin_location: str) -> tuple:
    """Natural order of bin codes (A-2 before A-10); bins left blank go last."""
    if not bin_location:
        return (1,)
    parts = re.split(r"(\d+)", bin_location.upper())
    return (0, *((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts if part))


def _bins(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """{(sku_id, warehouse_id): bin location} for the given pairs (one query)."""
    pairs = set(pairs)
    if not pairs:
        return {}
    skus = {sku for sku, _ in pairs}
    warehouses = {warehouse for _, warehouse in pairs}
    rows = StockLevel.objects.filter(sku_id__in=skus, warehouse_id__in=warehouses).values_list(
        "sku_id", "warehouse_id", "bin_location"
    )
    return {(sku, warehouse): bin_location for sku, warehouse, bin_location in rows}


def _pick_path(shipment_ids: list[int]) -> list[int]:
    """The shipments in pick-path order: warehouse by warehouse, then by the first bin the
    parcel's SKUs sit in (so parcels of one SKU come out together), then by reference."""
    shipments = {
        row["pk"]: row
        for row in Shipment.objects.filter(pk__in=shipment_ids).values(
            "pk", "reference", "warehouse_id", "warehouse__code"
        )
    }
    lines = list(
        ShipmentLine.objects.filter(shipment_id__in=shipment_ids).values_list(
            "shipment_id", "order_line__sku_id", "order_line__sku__code"
        )
    )
    bins = _bins(
        (sku_id, shipments[shipment_id]["warehouse_id"])
        for shipment_id, sku_id, _ in lines
        if sku_id is not None
    )
    keys: dict[int, list] = defaultdict(list)
    for shipment_id, sku_id, sku_code in lines:
        bin_location = bins.get((sku_id, shipments[shipment_id]["warehouse_id"]), "")
        keys[shipment_id].append((bin_sort_key(bin_location), sku_code or ""))

    def order(pk: int):
        row = shipments[pk]
        return (row["warehouse__code"], sorted(keys[pk]) or [((1,), "")], row["reference"])

    return sorted(shipments, key=order)


# ------------------------------------------------------------------------------------ start


CANCEL_BLOCKING_STATUSES = (
    CancellationStatus.PENDING,
    CancellationStatus.APPROVED,
    CancellationStatus.AUTO_CANCELLED,
)


def label_batch_ready_parcels(*, shop=None, due_before: datetime | None = None):
    """The parcels ready to print (of `shop`, or of every shop in scope): pending, leaving one
    of the seller's own warehouses (3PL and drop-ship parcels go to their provider), of an
    order still to ship, and in no live batch. Oldest deadline first."""
    parcels = (
        Shipment.objects.filter(
            status=ShipmentStatus.PENDING,
            provider__isnull=True,
            warehouse__kind=WarehouseKind.OWN,
            order__status__in=PRINTABLE_ORDER_STATUSES,
        )
        .exclude(batch_items__live=True)
        # Not while the buyer's cancellation is open or approved (orders.cancellations'
        # order_ship_blocker): the label would be wasted and the platform refuses its tracking.
        .exclude(order__cancel_requests__status__in=CANCEL_BLOCKING_STATUSES)
    )
    if shop is not None:
        parcels = parcels.filter(order__shop=shop)
    if due_before is not None:
        parcels = parcels.filter(order__ship_by__lte=due_before)
    return parcels.order_by("order__ship_by", "pk")


def label_batch_start(
    *,
    tenant,
    shipment_ids: Iterable[int] | None = None,
    shop=None,
    due_before: datetime | None = None,
    limit: int | None = None,
    layout: str = LabelBatchLayout.MERGED,
    user=None,
    queue: bool = True,
) -> LabelBatch:
    """Create a batch of the given parcels (or of everything ready of `shop`) and queue its job.

    Parcels already in another live batch, cancelled, or handed to a provider are left out; if
    none is left, `NothingToPrint` says why and nothing is written.
    """
    if layout not in LabelBatchLayout.values:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LabelBatchLayout.values}")
    if limit is not None and limit < 1:
        raise ValueError("the limit must be at least 1")
    with tenant_context(tenant), transaction.atomic():
        if shipment_ids is None:
            if shop is None:
                raise ValueError("give the parcels or the shop to print")
            candidates = label_batch_ready_parcels(shop=shop, due_before=due_before)
        else:
            candidates = Shipment.objects.filter(pk__in=list(shipment_ids)).exclude(
                status=ShipmentStatus.CANCELLED
            )
            candidates = candidates.filter(provider__isnull=True).order_by("pk")
        ids = list(candidates.values_list("pk", flat=True)[:limit])
        if not ids:
            raise NothingToPrint(
                "no parcel is ready to print"
                + (f" for {shop}" if shop is not None else "")
                + (f" due before {due_before:%Y-%m-%d %H:%M}" if due_before else "")
            )
        batch = LabelBatch.objects.create(
            tenant=tenant, shop=shop, due_before=due_before, layout=layout, created_by=user
        )
        LabelBatchItem.objects.bulk_create(
            [
                LabelBatchItem(tenant=tenant, batch=batch, shipment_id=pk, position=position)
                for position, pk in enumerate(_pick_path(ids))
            ],
            # A parcel another live batch holds (its insert may still be in flight: PostgreSQL
            # waits for it) is skipped, not an error: each parcel is printed once.
            ignore_conflicts=True,
        )
        taken = batch.items.count()
        if not taken:
            raise NothingToPrint(f"all {len(ids)} parcel(s) are already in a batch being printed")
        if queue:
            batch_id = batch.pk
            transaction.on_commit(lambda: _queue_run(tenant_id=tenant.pk, batch_id=batch_id))
    return batch


def _queue_run(*, tenant_id: int, batch_id: int) -> None:
    from django_q.tasks import async_task

    async_task(
        "logistics.tasks.run_label_batch",
        tenant_id,
        batch_id,
        task_name=f"label-batch-{batch_id}",
    )


# -------------------------------------------------------------------------------------- run

Progress = Callable[[ProgressBar], None]


def label_batch_progress(*, batch: LabelBatch) -> ProgressBar:
    """Counts of the batch's items by outcome (one query)."""
    counts = LabelBatchItem.objects.filter(batch_id=batch.pk).aggregate(
        total=Count("pk"),
        done=Count("pk", filter=Q(status=LabelBatchItemStatus.LABELLED)),
        failed=Count("pk", filter=Q(status=LabelBatchItemStatus.FAILED)),
    )
    return batch_progress_bar(
        total=counts["total"], done=counts["done"], failed=counts["failed"], status=batch.status
    )


#: A running batch extends its lease this often (the lease itself lasts
#: TKERP_LABEL_BATCH_LEASE_SECONDS).
LEASE_RENEW_SECONDS = 10


def _lease_seconds() -> timedelta:
    return timedelta(seconds=settings.TKERP_LABEL_BATCH_LEASE_SECONDS)


def _claim(batch_id: int) -> tuple[LabelBatch | None, str]:
    """Take the batch's lease if it is queued, or running under a lease that expired (its
    worker died); returns (batch, token), or (None, "") when someone else runs it or it is
    finished."""
    now = timezone.now()
    token = secrets.token_hex(8)
    claimed = (
        LabelBatch.objects.filter(pk=batch_id)
        .filter(
            Q(status=LabelBatchStatus.QUEUED)
            | Q(status=LabelBatchStatus.RUNNING, lease_until__lt=now)
            | Q(status=LabelBatchStatus.RUNNING, lease_until__isnull=True)
        )
        .update(
            status=LabelBatchStatus.RUNNING,
            lease_token=token,
            lease_until=now + _lease_seconds(),
            started_at=now,
            finished_at=None,
            error="",
        )
    )
    if not claimed:
        return None, ""
    LabelBatch.objects.filter(pk=batch_id).update(runs=F("runs") + 1)
    return LabelBatch.objects.get(pk=batch_id), token


def _renew(batch: LabelBatch, token: str) -> None:
    held = LabelBatch.objects.filter(pk=batch.pk, lease_token=token).update(
        lease_until=timezone.now() + _lease_seconds()
    )
    if not held:
        raise BatchLeaseLost(f"the lease of label batch {batch.pk} was taken over")


def label_batch_run(*, tenant, batch_id: int, progress: Progress | None = None) -> LabelBatch:
    """Run the batch: buy what is pending, render, finish. Safe to call again at any time; a
    batch someone else is running, or one already finished, is returned untouched."""
    with tenant_context(tenant):
        batch, token = _claim(batch_id)
        if batch is None:
            return LabelBatch.objects.get(pk=batch_id)
        try:
            timings: dict[str, float] = {}
            started = time.perf_counter()
            if not batch.render_only:
                # The document renderers load while the label services are waited on.
                warming = threading.Thread(target=_documents_warm, name="documents-warm")
                warming.start()
                try:
                    _buy_pending(batch=batch, token=token, progress=progress)
                finally:
                    warming.join()
            timings["labels"] = time.perf_counter() - started
            _renew(batch, token)
            documents = _render(batch=batch)
            if documents is not None:
                timings.update(documents.timings)
            _finish(batch=batch, token=token, timings=timings)
        except BatchLeaseLost:
            logger.warning("label batch %s: lease lost, another worker runs it", batch_id)
            return LabelBatch.objects.get(pk=batch_id)
        except Exception as error:
            logger.exception("label batch %s failed", batch_id)
            _fail(batch=batch, token=token, error=error)
        batch.refresh_from_db()
        if progress is not None:
            progress(label_batch_progress(batch=batch))
        return batch


def _documents_warm() -> None:
    try:
        documents_warm()
    except Exception:
        # Only a head start: the render loads whatever is missing itself (and says what fails).
        logger.exception("warming the document renderers failed")


def _finish(*, batch: LabelBatch, token: str, timings: dict[str, float]) -> None:
    with transaction.atomic():
        held = LabelBatch.objects.filter(pk=batch.pk, lease_token=token).update(
            status=LabelBatchStatus.DONE,
            finished_at=timezone.now(),
            lease_token="",
            lease_until=None,
            render_only=False,
            timings={stage: round(seconds, 3) for stage, seconds in timings.items()},
        )
        if not held:
            raise BatchLeaseLost(f"the lease of label batch {batch.pk} was taken over")
        # The batch is over: its parcels may join another batch (a failed one may be retried).
        batch.items.filter(live=True).update(live=False)


def _fail(*, batch: LabelBatch, token: str, error: Exception) -> None:
    """The job itself broke (not one parcel): say so on the batch and free its parcels."""
    reason = str(error) or type(error).__name__
    with transaction.atomic():
        LabelBatch.objects.filter(pk=batch.pk, lease_token=token).update(
            status=LabelBatchStatus.FAILED,
            error=f"{type(error).__name__}: {reason}"[:500],
            finished_at=timezone.now(),
            lease_token="",
            lease_until=None,
        )
        batch.items.filter(live=True).update(live=False)


# ----------------------------------------------------------------------------------- buying


#: Outcomes are written to the items in groups (one UPDATE for the labelled ones): every this
#: many, or this often, whichever comes first. The progress bar is that much behind at most.
FLUSH_EVERY = 25
FLUSH_SECONDS = 0.5


def _buy_pending(*, batch: LabelBatch, token: str, progress: Progress | None) -> None:
    """Buy (or fetch) the label of every pending item through the label sources' parallel buy,
    recording the outcomes as they arrive (from the buying threads) and keeping the lease.

    An outcome not yet written when the worker dies leaves its item pending: the next run asks
    again, and gets the stored (or the source's first) label back, not a second purchase.
    """
    from logistics.labels.store import shipments_label_buy

    pending = list(
        batch.items.filter(status=LabelBatchItemStatus.PENDING)
        .order_by("position")
        .values_list("shipment_id", "pk")
    )
    if not pending:
        return
    items = dict(pending)
    start = label_batch_progress(batch=batch)
    state = {"done": start.done, "failed": start.failed, "flushed": time.monotonic()}
    renewed = [time.monotonic()]
    outcomes: list = []
    lock = threading.Lock()
    lost = threading.Event()

    def flush(taken: list) -> None:
        labelled = [items[result.shipment_id] for result in taken if result.ok]
        try:
            if labelled:
                _items_labelled(item_ids=labelled)
            for result in taken:
                if not result.ok:
                    _item_failed(
                        item_id=items[result.shipment_id], reason=result.reason, code=result.code
                    )
        except Exception:
            # The items stay pending; `_settle_pending` reads them from their parcels after.
            logger.exception("label batch %s: outcomes not written", batch.pk)
        if time.monotonic() - renewed[0] > LEASE_RENEW_SECONDS:
            renewed[0] = time.monotonic()
            try:
                _renew(batch, token)
            except BatchLeaseLost:
                lost.set()

    def on_result(result) -> None:
        if lost.is_set():
            return  # another worker runs the batch now; it records the outcomes itself
        taken = None
        with lock:
            outcomes.append(result)
            state["done" if result.ok else "failed"] += 1
            now = time.monotonic()
            if len(outcomes) >= FLUSH_EVERY or now - state["flushed"] >= FLUSH_SECONDS:
                taken, outcomes[:] = list(outcomes), []
                state["flushed"] = now
            counts = batch_progress_bar(
                total=start.total,
                done=state["done"],
                failed=state["failed"],
                status=LabelBatchStatus.RUNNING,
            )
        if taken:
            flush(taken)
        if progress is not None:
            progress(counts)

    shipments_label_buy(tenant=batch.tenant, shipment_ids=list(items), on_result=on_result)
    if lost.is_set():
        raise BatchLeaseLost(f"the lease of label batch {batch.pk} was taken over")
    flush(outcomes)
    _settle_pending(batch=batch)


def _settle_pending(*, batch: LabelBatch) -> None:
    """Items the buying left pending (an outcome that could not be written) take their
    parcel's state: labelled if its label is stored, else failed with a reason to retry."""
    still = batch.items.filter(status=LabelBatchItemStatus.PENDING)
    still.filter(shipment__status=ShipmentStatus.LABELLED).exclude(shipment__label_file="").update(
        status=LabelBatchItemStatus.LABELLED, error="", error_code=""
    )
    still.update(
        status=LabelBatchItemStatus.FAILED,
        error="the outcome of this parcel's label was not recorded; retry it",
        error_code="unrecorded",
    )


def _items_labelled(*, item_ids: list[int]) -> None:
    LabelBatchItem.objects.filter(pk__in=item_ids).update(
        status=LabelBatchItemStatus.LABELLED,
        error="",
        error_code="",
        attempts=F("attempts") + 1,
    )


def _item_failed(*, item_id: int, reason: str, code: str) -> None:
    LabelBatchItem.objects.filter(pk=item_id).update(
        status=LabelBatchItemStatus.FAILED,
        error=reason[:500],
        error_code=code[:40],
        attempts=F("attempts") + 1,
    )


# -------------------------------------------------------------------------------- rendering


def _address_lines(row: dict) -> tuple[str, ...]:
    """The recipient's address lines from an order's values (`o_` prefixed)."""
    city, state, postal = row["o_city"], row["o_state"], row["o_postal_code"]
    city_line = " ".join(part for part in (f"{city}," if city else "", state, postal) if part)
    lines = (row["o_address_line1"], row["o_address_line2"], city_line.strip(","), row["o_country"])
    return tuple(line for line in lines if line)


def _stored_label(name: str) -> bytes:
    """The label document stored on the parcel (PDF or ZPL, as its source supplied it)."""
    with default_storage.open(name, "rb") as handle:
        return handle.read()


@dataclass(slots=True)
class BatchSheets:
    """What a batch prints: its labelled parcels in pick-path order, the pick list's rows (SKU
    totals per warehouse in bin order), items whose stored label could not be read, and items
    whose parcel was cancelled since it was labelled (not printed)."""

    sheets: list[ParcelSheet]
    pick_rows: list[PickRow]
    unreadable: dict[int, str]  # item id -> reason
    cancelled: dict[int, str] = field(default_factory=dict)  # item id -> reason


#: What the documents print of each parcel, read as plain values (500 parcels' worth of model
#: instances cost more than the slips take to draw).
_SHEET_FIELDS = {
    "item_id": F("pk"),
    "parcel_id": F("shipment_id"),
    "reference": F("shipment__reference"),
    "parcel_status": F("shipment__status"),
    "tracking_number": F("shipment__tracking_number"),
    "label_file": F("shipment__label_file"),
    "label_format": F("shipment__label_format"),
    "warehouse_id": F("shipment__warehouse_id"),
    "warehouse_name": F("shipment__warehouse__name"),
    "warehouse_code": F("shipment__warehouse__code"),
    "service_name": F("shipment__service__name"),
    "carrier_name": F("shipment__service__carrier__name"),
    "shop_name": F("shipment__order__shop__name"),
    "order_number": F("shipment__order__platform_order_id"),
    "buyer_name": F("shipment__order__buyer_name"),
    "buyer_note": F("shipment__order__buyer_note"),
    "placed_at": F("shipment__order__placed_at"),
    **{
        f"o_{name}": F(f"shipment__order__{name}")
        for name in (
            "recipient_name",
            "address_line1",
            "address_line2",
            "city",
            "state",
            "postal_code",
            "country",
        )
    },
}


def batch_sheets(*, batch: LabelBatch) -> BatchSheets:
    """Read the batch's labelled parcels, their lines, bins and stored labels (three queries and
    one file read per parcel)."""
    rows = list(
        LabelBatchItem.objects.filter(batch_id=batch.pk, status=LabelBatchItemStatus.LABELLED)
        .order_by("position")
        .values(**_SHEET_FIELDS)
    )
    # A parcel cancelled since its label was bought keeps that label as the record while it
    # is refunded (logistics.labels.cancelled): printed again, it would go on a box and ship.
    cancelled = {
        row["item_id"]: f"parcel {row['reference']} is cancelled: its label is not printed"
        for row in rows
        if row["parcel_status"] == ShipmentStatus.CANCELLED
    }
    rows = [row for row in rows if row["item_id"] not in cancelled]
    labels: dict[int, bytes] = {}
    unreadable: dict[int, str] = {}
    for row in rows:
        try:
            if not row["label_file"]:
                raise FileNotFoundError(row["reference"])
            label = _stored_label(row["label_file"])
        except OSError:
            logger.warning("label batch %s: label of %s unreadable", batch.pk, row["reference"])
            unreadable[row["item_id"]] = (
                f"the stored label of {row['reference']} cannot be read; void it and buy again"
            )
            continue
        if row["label_format"] != LabelFormat.ZPL and not label_pdf_readable(label):
            logger.warning("label batch %s: label of %s is damaged", batch.pk, row["reference"])
            unreadable[row["item_id"]] = (
                f"the stored label of {row['reference']} is not a readable PDF; void it and "
                "buy again"
            )
            continue
        labels[row["parcel_id"]] = label
    rows = [row for row in rows if row["item_id"] not in unreadable]
    warehouse_of = {row["parcel_id"]: row["warehouse_id"] for row in rows}
    lines_by_shipment: dict[int, list[dict]] = defaultdict(list)
    for line in (
        ShipmentLine.objects.filter(shipment_id__in=list(warehouse_of))
        .order_by("pk")
        .values(
            "shipment_id",
            "quantity",
            sku_id=F("order_line__sku_id"),
            sku_code=F("order_line__sku__code"),
            sku_name=F("order_line__sku__name"),
            seller_sku=F("order_line__seller_sku"),
            product_name=F("order_line__product_name"),
        )
    ):
        lines_by_shipment[line["shipment_id"]].append(line)
    bins = _bins(
        (line["sku_id"], warehouse_of[shipment_id])
        for shipment_id, lines in lines_by_shipment.items()
        for line in lines
        if line["sku_id"] is not None
    )
    sheets: list[ParcelSheet] = []
    picks: dict[tuple[str, str, str], dict] = {}
    warehouse_order: dict[str, str] = {}
    for row in rows:
        shipment_id = row["parcel_id"]
        warehouse_order.setdefault(row["warehouse_name"], row["warehouse_code"])
        slip_lines = []
        for line in lines_by_shipment[shipment_id]:
            code = line["sku_code"] or line["seller_sku"]
            name = line["product_name"] or line["sku_name"] or ""
            bin_location = bins.get((line["sku_id"], row["warehouse_id"]), "")
            slip_lines.append(
                SlipLine(sku=code, name=name, bin=bin_location, quantity=line["quantity"])
            )
            pick = picks.setdefault(
                (row["warehouse_name"], bin_location, code),
                {"name": name, "quantity": 0, "parcels": set()},
            )
            pick["quantity"] += line["quantity"]
            pick["parcels"].add(shipment_id)
        slip_lines.sort(key=lambda line: (bin_sort_key(line.bin), line.sku))
        label = labels[shipment_id]
        zpl = row["label_format"] == LabelFormat.ZPL
        sheets.append(
            ParcelSheet(
                reference=row["reference"],
                order_number=row["order_number"],
                shop_name=row["shop_name"],
                recipient_name=row["o_recipient_name"] or row["buyer_name"],
                recipient_lines=_address_lines(row),
                lines=tuple(slip_lines),
                buyer_note=row["buyer_note"],
                placed_at=row["placed_at"],
                tracking_number=row["tracking_number"],
                carrier_name=row["carrier_name"] or "",
                service_name=row["service_name"] or "",
                label_pdf=None if zpl else label,
                label_zpl=label if zpl else None,
            )
        )
    pick_rows = [
        PickRow(
            warehouse=warehouse,
            bin=bin_location,
            sku=code,
            name=pick["name"],
            quantity=pick["quantity"],
            parcels=len(pick["parcels"]),
        )
        for (warehouse, bin_location, code), pick in picks.items()
    ]
    pick_rows.sort(key=lambda row: (warehouse_order[row.warehouse], bin_sort_key(row.bin), row.sku))
    return BatchSheets(
        sheets=sheets, pick_rows=pick_rows, unreadable=unreadable, cancelled=cancelled
    )


def batch_title(batch: LabelBatch) -> str:
    shop = f" — {batch.shop.name}" if batch.shop_id else ""
    return f"Label batch {batch.pk}{shop}"


DOCUMENT_FIELDS = ("document", "slips_document", "zpl_document")


def _render(*, batch: LabelBatch):
    """Render the batch's documents from its labelled parcels and store them (replacing the
    previous ones). A parcel whose stored label cannot be read is marked failed, with why.
    Returns the rendered documents, or None when nothing was labelled."""
    read = batch_sheets(batch=batch)
    for item_id, reason in read.unreadable.items():
        _item_failed(item_id=item_id, reason=reason, code="label_unreadable")
    for item_id, reason in read.cancelled.items():
        _item_failed(item_id=item_id, reason=reason, code="cancelled")
    documents = None
    if read.sheets:
        # Drawn before the previous files go: a render that fails leaves them to download.
        documents = batch_documents_render(
            parcels=read.sheets,
            pick_rows=read.pick_rows,
            title=batch_title(batch),
            separate=batch.layout == LabelBatchLayout.SEPARATE,
        )
    for field_name in DOCUMENT_FIELDS:
        stored = getattr(batch, field_name)
        if stored:
            stored.delete(save=False)
    if documents is None:
        LabelBatch.objects.filter(pk=batch.pk).update(**dict.fromkeys(DOCUMENT_FIELDS, ""), pages=0)
        return None
    started = time.perf_counter()
    base = f"batch-{batch.pk}"
    for field_name, content, name in (
        ("document", documents.document, f"{base}.pdf"),
        ("slips_document", documents.slips, f"{base}-slips.pdf"),
        ("zpl_document", documents.zpl, f"{base}-labels.zpl"),
    ):
        if content is not None:
            getattr(batch, field_name).save(name, ContentFile(content), save=False)
    LabelBatch.objects.filter(pk=batch.pk).update(
        **{field_name: getattr(batch, field_name).name or "" for field_name in DOCUMENT_FIELDS},
        pages=documents.pages,
    )
    documents.timings["store"] = time.perf_counter() - started
    return documents


# ------------------------------------------------------------------------- retry and reprint


def label_batch_retry_failed(*, batch: LabelBatch, queue: bool = True) -> int:
    """Put the batch's failed parcels back in line and run it again; returns how many.

    Labelled parcels are not bought again, and a failed one is bought with its same idempotency
    key, so a label the source did sell before the failure is returned, not bought twice. A
    failed parcel that was labelled meanwhile, or that another live batch holds now, stays as
    it is. A batch whose job broke resumes where it stopped.
    """
    with tenant_context(batch.tenant), transaction.atomic():
        locked = LabelBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.is_live and not locked.is_stalled:
            raise ValueError(f"label batch {batch.pk} is still running")
        retried = 0
        failed = locked.items.filter(
            status=LabelBatchItemStatus.FAILED, shipment__status=ShipmentStatus.PENDING
        ).order_by("pk")
        for item in failed:
            try:
                with transaction.atomic():
                    LabelBatchItem.objects.filter(pk=item.pk).update(
                        status=LabelBatchItemStatus.PENDING, live=True
                    )
            except IntegrityError:
                continue  # another live batch holds the parcel now
            retried += 1
        # Parcels a broken run left pending (and released) are taken back too.
        resumed = locked.items.filter(status=LabelBatchItemStatus.PENDING, live=False)
        for item in resumed.order_by("pk"):
            try:
                with transaction.atomic():
                    LabelBatchItem.objects.filter(pk=item.pk).update(live=True)
            except IntegrityError:
                continue
            retried += 1
        if not retried and locked.status == LabelBatchStatus.DONE:
            return 0
        LabelBatch.objects.filter(pk=batch.pk).update(
            status=LabelBatchStatus.QUEUED, render_only=False, error=""
        )
        if queue:
            tenant_id = batch.tenant_id
            transaction.on_commit(lambda: _queue_run(tenant_id=tenant_id, batch_id=batch.pk))
    return retried


def label_batch_reprint(*, batch: LabelBatch, queue: bool = True) -> None:
    """Render the batch's documents again from the labels it holds, buying nothing."""
    with tenant_context(batch.tenant), transaction.atomic():
        updated = (
            LabelBatch.objects.filter(pk=batch.pk)
            .exclude(status__in=(LabelBatchStatus.QUEUED, LabelBatchStatus.RUNNING))
            .update(status=LabelBatchStatus.QUEUED, render_only=True, error="")
        )
        if not updated:
            raise ValueError(f"label batch {batch.pk} is still running")
        if queue:
            tenant_id = batch.tenant_id
            transaction.on_commit(lambda: _queue_run(tenant_id=tenant_id, batch_id=batch.pk))
