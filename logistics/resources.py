"""CSV import/export of carrier rules, matched by rule name.

The rule's service is named by two columns, `carrier` (carrier code) and `service` (service code),
and its shop, when set, by name; all are looked up among the importing tenant's rows only.

The admin's upload step (a dry run, rolled back) also previews the rules as they would stand
after the import on recent parcels (`logistics.rules.rules_dry_run`), for the confirm page.
"""

import re
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from import_export.fields import Field

from inventory.resources import NaturalKeyResource, TenantForeignKeyWidget
from logistics.models import Carrier, CarrierRule, CarrierService, Shipment, ShipmentStatus
from shops.models import Shop
from tkerp.resources import TenantResource


class CarrierServiceWidget(TenantForeignKeyWidget):
    """A carrier service by service code, within the carrier named in the row's `carrier`."""

    def __init__(self, carrier_column: str = "carrier", **kwargs):
        self.carrier_column = carrier_column
        super().__init__(CarrierService, "code", **kwargs)

    def get_lookup_kwargs(self, value, row, **kwargs):
        return {"carrier__code": self._carrier_code(row), "code": value}

    def not_found_message(self, value, row) -> str:
        carrier_code = self._carrier_code(row)
        if not carrier_code:
            return f"Fill in the {self.carrier_column} column (carrier code) for service “{value}”."
        if not Carrier.objects.filter(tenant=self.tenant, code=carrier_code).exists():
            return f"No carrier with code “{carrier_code}” (column {self.carrier_column})."
        return f"Carrier “{carrier_code}” has no service with code “{value}”."

    def _carrier_code(self, row) -> str:
        value = (row or {}).get(self.carrier_column) or ""
        return str(value).strip()


class CarrierRuleResource(NaturalKeyResource):
    # Exported for the reader and used by the `service` lookup on import; never written itself.
    carrier = Field(attribute="service__carrier__code", column_name="carrier", readonly=True)
    service = Field(attribute="service", column_name="service", widget=CarrierServiceWidget())
    shop = Field(attribute="shop", column_name="shop", widget=TenantForeignKeyWidget(Shop, "name"))

    class Meta(TenantResource.Meta):
        model = CarrierRule
        import_id_fields = ("name",)
        fields = (
            "name",
            "priority",
            "is_active",
            "carrier",
            "service",
            "shop",
            "min_total",
            "max_total",
            "min_weight_grams",
            "max_weight_grams",
            "countries",
            "states",
            "sku_codes",
            "tag",
            "platform",
            "postal_prefixes",
            "min_items",
            "max_items",
            "package_type",
        )
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("service__carrier", "shop")

    def after_import(self, dataset, result, **kwargs):
        super().after_import(dataset, result, **kwargs)
        days = kwargs.get("rules_preview_days")
        if not days or not kwargs.get("dry_run"):
            return
        if result.has_errors() or result.has_validation_errors():
            return
        from logistics.rules import carrier_rules_load, rules_dry_run

        # Still inside the import's transaction, which the dry run rolls back: the rules read
        # here are the tenant's rules with the file's rows applied.
        tenant = self.require_tenant()
        result.rules_preview = rules_dry_run(
            tenant=tenant,
            rules=carrier_rules_load(tenant=tenant),
            since=timezone.now() - timedelta(days=days),
        )
        result.rules_preview_days = days


class ShipmentTrackingResource(TenantResource):
    """Tracking by file: one row per parcel, named by `parcel` (our reference) or `order` (the
    platform order id, when the order has one live parcel, or the one holding `lines`), with
    `carrier` (carrier code) and `tracking_number`; `lines` (optional: platform line ids or
    seller SKUs, separated by ; or |) splits those lines off into a parcel of their own.

    Every row goes through the tracking door (`logistics.tracking.shipment_tracking_accept`):
    format and check digit, no number twice, the stock committed, the write-back queued. A bad
    row is named with its column and reason and the whole file is rolled back. The export adds
    each parcel's status and write-back state (read-only columns, ignored on import).
    """

    parcel = Field(attribute="reference", column_name="parcel")
    order = Field(attribute="order__platform_order_id", column_name="order", readonly=True)
    carrier = Field(column_name="carrier", readonly=True)
    tracking_number = Field(attribute="tracking_number", column_name="tracking_number")
    lines = Field(column_name="lines", readonly=True)
    shop = Field(attribute="order__shop__name", column_name="shop", readonly=True)
    status = Field(column_name="status", readonly=True)
    writeback = Field(column_name="writeback", readonly=True)
    writeback_sent_at = Field(column_name="writeback_sent_at", readonly=True)
    writeback_error = Field(column_name="writeback_error", readonly=True)

    class Meta(TenantResource.Meta):
        model = Shipment
        skip_unchanged = False
        report_skipped = False
        clean_model_instances = False
        import_id_fields = ()
        fields = (
            "parcel",
            "order",
            "carrier",
            "tracking_number",
            "lines",
            "shop",
            "status",
            "writeback",
            "writeback_sent_at",
            "writeback_error",
        )
        export_order = fields

    def __init__(self, tenant=None, user=None, **kwargs):
        super().__init__(tenant=tenant, **kwargs)
        self.user = user

    def get_queryset(self):
        return (
            super()
            .get_queryset()
            .select_related("order__shop", "carrier", "service__carrier", "tracking_push")
            .order_by("pk")
        )

    # --- export ---

    def dehydrate_carrier(self, shipment: Shipment) -> str:
        if shipment.carrier_id:
            return shipment.carrier.code
        return shipment.service.carrier.code if shipment.service_id else ""

    def dehydrate_lines(self, shipment: Shipment) -> str:
        return ""

    def dehydrate_status(self, shipment: Shipment) -> str:
        return shipment.status

    def _push(self, shipment: Shipment):
        try:
            return shipment.tracking_push
        except Shipment.tracking_push.RelatedObjectDoesNotExist:
            return None

    def dehydrate_writeback(self, shipment: Shipment) -> str:
        push = self._push(shipment)
        if push is None:
            return "" if not shipment.tracking_number else "none"
        return push.state

    def dehydrate_writeback_sent_at(self, shipment: Shipment) -> str:
        push = self._push(shipment)
        return push.sent_at.isoformat() if push is not None and push.sent_at else ""

    def dehydrate_writeback_error(self, shipment: Shipment) -> str:
        push = self._push(shipment)
        return push.last_error if push is not None else ""

    # --- import ---

    def before_import(self, dataset, **kwargs):
        super().before_import(dataset, **kwargs)
        headers = {str(h).strip().lower() for h in dataset.headers or []}
        missing = [c for c in ("carrier", "tracking_number") if c not in headers]
        if not ({"parcel", "order"} & headers):
            missing.insert(0, "parcel or order")
        if missing:
            raise ValueError(
                "The file needs the columns parcel (or order), carrier and tracking_number; "
                f"missing: {', '.join(missing)}."
            )
        self._numbers_seen: dict[tuple[str, str], int] = {}

    def get_instance(self, instance_loader, row):
        return None  # found (and reported) in import_instance, with the row's own words

    def _cell(self, row, name: str) -> str:
        value = row.get(name)
        return "" if value is None else str(value).strip()

    def _find_parcel(self, row, lines: list[str]) -> Shipment:
        from django.core.exceptions import ValidationError

        reference = self._cell(row, "parcel")
        order_id = self._cell(row, "order")
        parcels = Shipment.objects.select_related("order").exclude(status=ShipmentStatus.CANCELLED)
        if reference:
            found = parcels.filter(reference=reference).first()
            if found is None:
                raise ValidationError({"parcel": f"No parcel with reference “{reference}”."})
            owner = found.order.platform_order_id
            if order_id and owner != order_id:
                raise ValidationError({"order": f"Parcel {reference} belongs to order {owner}."})
            return found
        if not order_id:
            raise ValidationError({"parcel": "Fill in parcel (our reference) or order."})
        candidates = list(parcels.filter(order__platform_order_id=order_id).order_by("pk"))
        if not candidates:
            raise ValidationError({"order": f"No order “{order_id}” with a parcel to ship."})
        if lines:
            holding = [
                parcel
                for parcel in candidates
                if parcel.lines.filter(
                    Q(order_line__platform_line_id__in=lines) | Q(order_line__seller_sku__in=lines)
                ).exists()
            ]
            if len(holding) == 1:
                return holding[0]
        if len(candidates) > 1:
            refs = ", ".join(p.reference for p in candidates)
            raise ValidationError(
                {"parcel": f"Order {order_id} has {len(candidates)} parcels ({refs}): name one."}
            )
        return candidates[0]

    def import_instance(self, instance, row, **kwargs):
        """Find the parcel and give it its number through the tracking door (inside the
        import's transaction: a dry run or a bad row anywhere rolls it back)."""
        from django.core.exceptions import ValidationError
        from django.db import transaction

        from logistics.tracking import TrackingRefused, TrackingSource, shipment_tracking_accept

        lines = [part.strip() for part in re.split(r"[;|]", self._cell(row, "lines")) if part]
        carrier = self._cell(row, "carrier")
        number = self._cell(row, "tracking_number")
        errors = {}
        if not carrier:
            errors["carrier"] = "is blank; write the carrier code, e.g. usps."
        if not number:
            errors["tracking_number"] = "is blank; write the tracking number."
        if errors:
            raise ValidationError(errors)
        parcel = self._find_parcel(row, lines)
        key = (carrier.lower(), re.sub(r"[\s\-]", "", number).upper())
        first = self._numbers_seen.setdefault(key, kwargs.get("row_number"))
        if first != kwargs.get("row_number"):
            raise ValidationError(
                {"tracking_number": f"{number} is already on row {first} of this file."}
            )
        try:
            with transaction.atomic():
                stored = shipment_tracking_accept(
                    parcel,
                    tracking_number=number,
                    carrier_code=carrier,
                    source=TrackingSource.CSV,
                    lines=lines or None,
                    user=kwargs.get("user") or self.user,
                )
        except TrackingRefused as refused:
            column = {
                "carrier": "carrier",
                "lines": "lines",
                "format": "tracking_number",
                "duplicate": "tracking_number",
            }.get(refused.code, "parcel")
            raise ValidationError({column: refused.message}) from None
        instance.pk = stored.pk
        instance.reference = stored.reference
        instance.tracking_number = stored.tracking_number

    def save_instance(self, instance, is_create, row, **kwargs):
        """Written by `import_instance` through the tracking door: nothing more to save."""

    def import_row(self, row, instance_loader, **kwargs):
        result = super().import_row(row, instance_loader, **kwargs)
        if result.import_type == result.IMPORT_TYPE_NEW:
            result.import_type = result.IMPORT_TYPE_UPDATE  # a parcel is never created here
        return result
