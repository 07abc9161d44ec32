"""Order files for suppliers without an API: their parcels as CSV and XLSX, e-mailed.

A provider with "send order files" on gets, at each of its `order_file_times` (tenant's
timezone; 09:00 and 15:00 by default), a file of the parcels dispatched to it before that time
and not in a file yet: one row per parcel line with the supplier's own item code
(`SupplierItem`), the quantity and the recipient. The seller can also make one on demand (the
provider admin's action). Files are stored (downloads go through the tenant-scoped admin) and
e-mailed to the provider's contact address as attachments.

Idempotent: a scheduled file is unique per (provider, slot), and a parcel is in one file at most
(both are database constraints), so a rerun of a slot, or two workers at once, make one file.
The supplier's tracking numbers come back through the tracking CSV import.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tablib
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from inventory.models import SupplierItem
from logistics.models import (
    InterceptState,
    OrderFileTrigger,
    Provider,
    ProviderOrderFile,
    ProviderOrderFileParcel,
    Shipment,
    ShipmentStatus,
    order_file_times_parse,
)
from tkerp.outbound import scrub_reason
from tkerp.resources import neutralise_formula
from tkerp.tenancy import all_tenants, tenant_context

logger = logging.getLogger("tkerp.provider_files")

HEADERS = (
    "parcel",
    "order",
    "dispatched_at",
    "supplier_item_code",
    "our_sku",
    "product",
    "quantity",
    "recipient_name",
    "recipient_phone",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "service",
)
CSV_TYPE = "text/csv"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: An e-mail that failed is tried again by the sweep for this long after the file was made.
EMAIL_RETRY_WINDOW = timedelta(days=1)


class OrderFileError(Exception):
    """An on-demand file could not be made; the message says why, for the person who asked."""


def parcels_for_file(*, provider: Provider, until: datetime) -> QuerySet[Shipment]:
    """The provider's parcels dispatched by `until`, still with it, not intercepted, and in no
    file yet (a slot's file lists what was dispatched before its time)."""
    return Shipment.objects.filter(
        provider=provider,
        dispatched_at__isnull=False,
        dispatched_at__lte=until,
        status__in=(ShipmentStatus.SENT_TO_PROVIDER, ShipmentStatus.CONFIRMED),
        intercept_state=InterceptState.NONE,
    ).exclude(pk__in=ProviderOrderFileParcel.objects.values("shipment_id"))


def order_file_dataset(*, provider: Provider, shipments: list[Shipment]) -> tablib.Dataset:
    """One row per parcel line, in dispatch order; text cells formula-safe."""
    sku_ids = set()
    for shipment in shipments:
        sku_ids.update(line.order_line.sku_id for line in shipment.lines.all())
    codes = {}
    if provider.supplier_id:
        codes = dict(
            SupplierItem.objects.filter(
                supplier_id=provider.supplier_id, sku_id__in=sku_ids
            ).values_list("sku_id", "supplier_item_code")
        )
    dataset = tablib.Dataset(headers=list(HEADERS), title="Parcels")
    for shipment in shipments:
        order = shipment.order
        for line in shipment.lines.all():
            order_line = line.order_line
            cells = [
                shipment.reference,
                order.platform_order_id,
                shipment.dispatched_at.isoformat(timespec="seconds"),
                codes.get(order_line.sku_id, ""),
                order_line.sku.code if order_line.sku_id else order_line.seller_sku,
                order_line.sku.name if order_line.sku_id else "",
                line.quantity,
                order.recipient_name,
                order.recipient_phone,
                order.address_line1,
                order.address_line2,
                order.city,
                order.state,
                order.postal_code,
                order.country,
                str(shipment.service) if shipment.service_id else "",
            ]
            dataset.append([neutralise_formula(c) if isinstance(c, str) else c for c in cells])
    return dataset


def provider_order_file_make(
    *, provider: Provider, slot_at: datetime, trigger: str, user=None
) -> ProviderOrderFile | None:
    """Make the provider's file for `slot_at` from its parcels not in a file yet, store it and
    queue its e-mail after commit. A scheduled slot already made returns None (nothing new); a
    slot with no parcels is recorded empty (no file, no e-mail) so it is not looked at again."""
    with tenant_context(provider.tenant), transaction.atomic():
        # One maker per provider at a time: the provider row is the lock.
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        if (
            trigger == OrderFileTrigger.SCHEDULE
            and ProviderOrderFile.objects.filter(
                provider=provider, slot_at=slot_at, trigger=OrderFileTrigger.SCHEDULE
            ).exists()
        ):
            return None
        shipments = list(
            parcels_for_file(provider=provider, until=slot_at)
            .select_related("order", "service__carrier")
            .prefetch_related("lines__order_line__sku")
            .order_by("dispatched_at", "pk")
        )
        order_file = ProviderOrderFile.objects.create(
            provider=provider,
            slot_at=slot_at,
            trigger=trigger,
            parcels=len(shipments),
            created_by=user if getattr(user, "pk", None) else None,
        )
        if not shipments:
            return order_file
        ProviderOrderFileParcel.objects.bulk_create(
            [
                ProviderOrderFileParcel(
                    tenant_id=provider.tenant_id, order_file=order_file, shipment=s
                )
                for s in shipments
            ]
        )
        dataset = order_file_dataset(provider=provider, shipments=shipments)
        local = timezone.localtime(slot_at, _zone(provider.tenant))
        stem = f"{provider.code}-{local:%Y%m%d-%H%M}-{order_file.pk}"
        # utf-8-sig: Excel opens a CSV with a BOM as UTF-8 (names in any script).
        order_file.csv_file.save(
            f"{stem}.csv", ContentFile(dataset.export("csv").encode("utf-8-sig")), save=False
        )
        order_file.xlsx_file.save(f"{stem}.xlsx", ContentFile(dataset.export("xlsx")), save=False)
        order_file.emailed_to = provider.contact_email
        order_file.save(update_fields=["csv_file", "xlsx_file", "emailed_to"])
        tenant_id, pk = provider.tenant_id, order_file.pk
        transaction.on_commit(lambda: order_file_email_enqueue(tenant_id=tenant_id, file_pk=pk))
        return order_file


def provider_order_file_now(*, provider: Provider, user=None) -> ProviderOrderFile:
    """The admin's "make the order file now": refuses (OrderFileError) when there is nothing
    new to send."""
    now = timezone.now()
    with tenant_context(provider.tenant):
        if not parcels_for_file(provider=provider, until=now).exists():
            raise OrderFileError(f"{provider.name} has no new parcels to put in a file.")
        return provider_order_file_make(
            provider=provider, slot_at=now, trigger=OrderFileTrigger.MANUAL, user=user
        )


def order_file_email_enqueue(*, tenant_id: int, file_pk: int) -> None:
    from django_q.tasks import async_task

    try:
        async_task(
            "logistics.tasks.email_order_file",
            tenant_id,
            file_pk,
            task_name=f"order-file-{file_pk}",
        )
    except Exception:
        logger.exception("could not queue the e-mail of order file %s", file_pk)


def provider_order_file_email(*, tenant, file_pk: int) -> str:
    """E-mail the file to the provider's contact address, once; returns what happened."""
    with tenant_context(tenant), transaction.atomic():
        order_file = (
            ProviderOrderFile.objects.select_for_update(of=("self",))
            .select_related("provider")
            .filter(pk=file_pk)
            .first()
        )
        if order_file is None or order_file.emailed_at is not None or not order_file.parcels:
            return "skipped"
        provider = order_file.provider
        if not provider.contact_email:
            order_file.email_error = "the provider has no contact e-mail"
            order_file.save(update_fields=["email_error"])
            return "no address"
        local = timezone.localtime(order_file.slot_at, _zone(tenant))
        message = EmailMessage(
            subject=f"[tkerp] {order_file.parcels} parcel(s) for {provider.name} "
            f"({local:%Y-%m-%d %H:%M})",
            body=(
                f"Hello {provider.name},\n\nAttached are {order_file.parcels} parcel(s) to ship, "
                "as CSV and as an Excel file (the same rows). Please send the tracking numbers "
                "back when they leave.\n"
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[provider.contact_email],
        )
        attachments = ((order_file.csv_file, CSV_TYPE), (order_file.xlsx_file, XLSX_TYPE))
        for stored, content_type in attachments:
            with stored.open("rb") as handle:
                message.attach(stored.name.rsplit("/", 1)[-1], handle.read(), content_type)
        try:
            message.send()
        except Exception as exc:
            logger.warning("order file %s: e-mail failed: %s", file_pk, exc)
            order_file.email_error = scrub_reason(f"sending failed ({type(exc).__name__})")
            order_file.save(update_fields=["email_error"])
            return "failed"
        order_file.emailed_at = timezone.now()
        order_file.emailed_to = provider.contact_email
        order_file.email_error = ""
        order_file.save(update_fields=["emailed_at", "emailed_to", "email_error"])
        return "sent"


def _zone(tenant) -> ZoneInfo:
    try:
        return ZoneInfo(tenant.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def order_file_slot(*, provider: Provider, tenant, now: datetime) -> datetime | None:
    """The provider's latest file time at or before `now` (today's or yesterday's, in the
    tenant's timezone), as an aware datetime; None when it has no times."""
    try:
        times = order_file_times_parse(provider.order_file_times)
    except ValueError:
        return None
    zone = _zone(tenant)
    local_now = now.astimezone(zone)
    slots = [
        datetime.combine(day, time(hour, minute), tzinfo=zone)
        for day in (local_now.date() - timedelta(days=1), local_now.date())
        for hour, minute in times
    ]
    past = [slot for slot in slots if slot <= local_now]
    return max(past) if past else None


def provider_order_files_due(*, now: datetime | None = None) -> dict:
    """Every minute: make each file whose slot has come (for every tenant), and retry e-mails
    that failed today."""
    now = now or timezone.now()
    with all_tenants():  # ESCAPE HATCH: the schedule serves every tenant's providers
        providers = list(
            Provider.objects.filter(order_file_enabled=True, is_active=True).select_related(
                "tenant"
            )
        )
        unsent = list(
            ProviderOrderFile.objects.filter(
                emailed_at__isnull=True, parcels__gt=0, created_at__gte=now - EMAIL_RETRY_WINDOW
            )
            .exclude(provider__contact_email="")
            .select_related("tenant")
        )
    made = 0
    for provider in providers:
        slot = order_file_slot(provider=provider, tenant=provider.tenant, now=now)
        if slot is None:
            continue
        order_file = provider_order_file_make(
            provider=provider, slot_at=slot, trigger=OrderFileTrigger.SCHEDULE
        )
        made += order_file is not None and order_file.parcels > 0
    emailed = 0
    for order_file in unsent:
        emailed += provider_order_file_email(tenant=order_file.tenant, file_pk=order_file.pk) == (
            "sent"
        )
    return {"made": made, "emailed": emailed}
