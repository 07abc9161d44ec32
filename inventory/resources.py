"""CSV import/export of SKUs, stock counts, listings, suppliers and supplier items.

Rows are matched by natural keys (SKU code, warehouse code, shop name, supplier code), never by
database ids, and every foreign key is looked up among the importing tenant's rows only. A stock
level import is a stock count: it goes through `inventory.stock.stock_count`, so it writes
movements and refuses a count below the reserved units.
"""

from django.core.exceptions import ValidationError
from import_export.fields import Field
from import_export.widgets import ForeignKeyWidget

from inventory.models import Listing, Sku, StockLevel, Supplier, SupplierItem, Warehouse
from inventory.stock import stock_count, stock_count_check
from shops.models import Shop
from tkerp.resources import TenantResource
from tkerp.tenancy import TenantNotSet


class TenantForeignKeyWidget(ForeignKeyWidget):
    """A foreign key by natural key, looked up among the resource's tenant's rows only.

    The resource binds `tenant` when it is built (see `NaturalKeyResource`); the lookup also goes
    through the scoped default manager, so a mismatched scope finds nothing rather than another
    tenant's row. An unknown key is a `ValueError`, which the import reports against the column.
    """

    tenant = None

    def get_queryset(self, value, row, *args, **kwargs):
        if self.tenant is None:
            raise TenantNotSet("foreign keys are looked up within one tenant")
        return self.model.objects.filter(tenant=self.tenant)

    def clean(self, value, row=None, **kwargs):
        if isinstance(value, str):
            value = value.strip()
        try:
            return super().clean(value, row=row, **kwargs)
        except self.model.DoesNotExist:
            raise ValueError(self.not_found_message(value, row)) from None

    def not_found_message(self, value, row) -> str:
        return f"No {self.model._meta.verbose_name} with {self.field} “{value}”."


class NaturalKeyResource(TenantResource):
    """A tenant resource whose rows and foreign keys are identified by natural keys."""

    def __init__(self, tenant=None, **kwargs):
        super().__init__(tenant=tenant, **kwargs)
        # `self.fields` is a per-instance deep copy, so binding the tenant here cannot leak
        # between two imports running for different tenants.
        for field in self.fields.values():
            if isinstance(field.widget, TenantForeignKeyWidget):
                field.widget.tenant = self.tenant

    def get_instance(self, instance_loader, row):
        try:
            return super().get_instance(instance_loader, row)
        except ValueError:
            # A natural key naming an unknown SKU/warehouse/...: treat the row as new, and
            # `import_instance` reports the bad value against its column.
            return None


def _fk(model, field: str = "code", column: str | None = None, **kwargs) -> Field:
    """A natural-key foreign-key column (the column is named after the model field)."""
    return Field(
        attribute=column, column_name=column, widget=TenantForeignKeyWidget(model, field), **kwargs
    )


class SkuResource(NaturalKeyResource):
    class Meta(TenantResource.Meta):
        model = Sku
        import_id_fields = ("code",)
        fields = (
            "code",
            "name",
            "barcode",
            "weight_grams",
            "length_mm",
            "width_mm",
            "height_mm",
            "cost",
            "currency",
            "hs_code",
            "is_active",
        )
        export_order = fields


class StockLevelResource(NaturalKeyResource):
    """Stock counts: one row per SKU and warehouse; `on_hand` is the counted figure.

    `reserved` and `free` are exported for reference and ignored on import: reservations come
    from orders, never from a file.
    """

    sku = _fk(Sku, column="sku")
    warehouse = _fk(Warehouse, column="warehouse")
    reserved = Field(attribute="reserved", column_name="reserved", readonly=True)
    free = Field(attribute="free", column_name="free", readonly=True)

    class Meta(TenantResource.Meta):
        model = StockLevel
        import_id_fields = ("sku", "warehouse")
        fields = (
            "sku",
            "warehouse",
            "on_hand",
            "reserved",
            "free",
            "bin_location",
            "reorder_point",
        )
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("sku", "warehouse")

    def import_instance(self, instance, row, **kwargs):
        errors = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        if "on_hand" not in errors and instance.on_hand is not None:
            try:
                stock_count_check(counted=instance.on_hand, reserved=instance.reserved)
            except ValidationError as exc:
                errors = exc.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)

    def save_instance(self, instance, is_create, row, **kwargs):
        """Store bin and reorder point as usual, and the count through `stock_count`."""
        self.before_save_instance(instance, row, **kwargs)
        if self._is_dry_run(kwargs) and not self._is_using_transactions(kwargs):
            return
        counted = instance.on_hand
        if is_create:
            # The level starts empty so that the count's movement carries the whole figure and
            # the ledger sums to on hand.
            instance.on_hand = 0
            instance.reserved = 0
            instance.save(force_insert=True)
        else:
            # Never write on_hand/reserved from the (unlocked) instance: only stock_count does.
            instance.save(update_fields=["bin_location", "reorder_point", "updated_at"])
        stock_count(
            sku=instance.sku,
            warehouse=instance.warehouse,
            counted=counted,
            user=kwargs.get("user"),
            reference=f"import {kwargs.get('file_name') or ''}".strip(),
        )
        instance.refresh_from_db(fields=["on_hand", "reserved"])
        self.after_save_instance(instance, row, **kwargs)


class ListingResource(NaturalKeyResource):
    shop = _fk(Shop, "name", column="shop")
    sku = _fk(Sku, column="sku")
    published_quantity = Field(
        attribute="published_quantity", column_name="published_quantity", readonly=True
    )

    class Meta(TenantResource.Meta):
        model = Listing
        import_id_fields = ("shop", "sku")
        fields = (
            "shop",
            "sku",
            "platform_product_id",
            "platform_sku_id",
            "buffer_units",
            "buffer_percent",
            "max_publish",
            "zero_below",
            "is_active",
            "published_quantity",
        )
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("shop", "sku")


class SupplierResource(NaturalKeyResource):
    class Meta(TenantResource.Meta):
        model = Supplier
        import_id_fields = ("code",)
        fields = (
            "code",
            "name",
            "contact_name",
            "email",
            "phone",
            "country",
            "currency",
            "lead_time_days",
            "notes",
            "is_active",
        )
        export_order = fields


class SupplierItemResource(NaturalKeyResource):
    supplier = _fk(Supplier, column="supplier")
    sku = _fk(Sku, column="sku")

    class Meta(TenantResource.Meta):
        model = SupplierItem
        import_id_fields = ("supplier", "sku")
        fields = (
            "supplier",
            "sku",
            "supplier_item_code",
            "cost",
            "currency",
            "lead_time_days",
            "min_order_quantity",
            "is_preferred",
        )
        export_order = fields

    def get_queryset(self):
        return super().get_queryset().select_related("supplier", "sku")
