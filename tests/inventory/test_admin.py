"""The inventory back office: tenant A never reaches tenant B, and stock changes stay counted."""

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory.admin import SkuAdmin
from inventory.models import (
    Listing,
    Sku,
    StockLevel,
    StockMovement,
    Supplier,
    SupplierItem,
    Warehouse,
)
from inventory.stock import stock_count, stock_ledger_balance
from tests.factories import (
    ListingFactory,
    OrderFactory,
    ProviderFactory,
    SkuFactory,
    StockLevelFactory,
    StockMovementFactory,
    SupplierItemFactory,
    WarehouseFactory,
)
from tests.inventory.helpers import (
    admin_export,
    admin_import,
    admin_import_confirm,
    admin_import_preview,
    admin_url,
    assert_no_foreign_choices,
    messages_of,
)
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

ADMINS = [Sku, Warehouse, StockLevel, StockMovement, Listing, Supplier, SupplierItem]
IMPORT_EXPORT = [Sku, StockLevel, Listing, Supplier, SupplierItem]


def world_object(world: dict, model: type[Model]):
    return world[model._meta.model_name]


@pytest.mark.parametrize("model", ADMINS, ids=lambda m: m.__name__)
class TestTenantIsolation:
    def test_changelist_never_shows_the_other_tenant(self, model, client_a, world_a, world_b):
        response = client_a.get(admin_url(model, "changelist"))

        assert response.status_code == 200
        shown = {obj.pk for obj in response.context["cl"].result_list}
        assert world_object(world_a, model).pk in shown
        assert world_object(world_b, model).pk not in shown
        # Filters, related columns and counts included: not a trace of B on the page.
        assert "BRAVO" not in response.content.decode()

    def test_search_does_not_reach_the_other_tenant(self, model, client_a, world_a, world_b):
        response = client_a.get(admin_url(model, "changelist"), {"q": "BRAVO"})

        assert response.status_code == 200
        assert list(response.context["cl"].result_list) == []

    @pytest.mark.parametrize("action", ["change", "delete", "history"])
    def test_other_tenants_object_pages_do_not_exist(
        self, model, action, client_a, world_a, world_b
    ):
        own = client_a.get(admin_url(model, action, world_object(world_a, model).pk))
        theirs = client_a.get(admin_url(model, action, world_object(world_b, model).pk))

        if own.status_code == 403:
            # A page nobody may use (the ledger's delete) is refused alike: no existence oracle.
            assert theirs.status_code == 403
            return
        assert own.status_code == 200
        assert theirs.status_code == 302
        assert any("doesn\u2019t exist" in message for message in messages_of(theirs))

    def test_change_page_offers_only_own_choices(self, model, client_a, tenant_a, world_a, world_b):
        response = client_a.get(admin_url(model, "change", world_object(world_a, model).pk))

        assert response.status_code == 200
        assert_no_foreign_choices(response.context["adminform"].form, world_b["sku"].tenant)
        # An inline's blank form is rebuilt on each access; its foreign-key querysets are the
        # ones the admin built during the request (a scope is needed only for the pk field).
        with tenant_context(tenant_a):
            for inline in response.context["inline_admin_formsets"]:
                assert_no_foreign_choices(inline.formset.empty_form, world_b["sku"].tenant)
        assert "BRAVO" not in response.content.decode()


@pytest.mark.parametrize("model", IMPORT_EXPORT, ids=lambda m: m.__name__)
def test_export_holds_only_own_rows(model, client_a, world_a, world_b):
    rows = admin_export(client_a, model)

    assert rows, "nothing exported"
    exported = "\n".join(",".join(row.values()) for row in rows)
    assert "ALPHA" in exported
    assert "BRAVO" not in exported
    assert not {"id", "tenant"} & set(rows[0])


@pytest.mark.parametrize(
    ("model", "field_name"),
    [
        (StockLevel, "sku"),
        (Listing, "sku"),
        (SupplierItem, "supplier"),
        (SupplierItem, "sku"),
    ],
)
@pytest.mark.parametrize("term", ["", "ALPHA", "BRAVO"])
def test_autocomplete_offers_only_own_rows(model, field_name, term, client_a, world_a, world_b):
    response = client_a.get(
        reverse("admin:autocomplete"),
        {
            "app_label": model._meta.app_label,
            "model_name": model._meta.model_name,
            "field_name": field_name,
            "term": term,
        },
    )

    assert response.status_code == 200
    offered = {row["id"] for row in response.json()["results"]}
    assert str(getattr(world_b[model._meta.model_name], field_name).pk) not in offered
    if term != "BRAVO":
        assert str(getattr(world_a[model._meta.model_name], field_name).pk) in offered


def test_another_tenants_sku_cannot_be_posted(client_a, world_a, world_b):
    response = client_a.post(
        admin_url(StockLevel, "add"),
        {
            "sku": world_b["sku"].pk,
            "warehouse": world_a["warehouse"].pk,
            "on_hand": 5,
            "reorder_point": 0,
        },
    )

    assert response.status_code == 200
    assert "sku" in response.context["adminform"].form.errors
    assert not StockLevel._base_manager.filter(sku=world_b["sku"], tenant=world_a["sku"].tenant)


class TestSkuAdmin:
    def test_changelist_shows_stock_totals_over_warehouses(self, client_a, tenant_a):
        sku = SkuFactory(tenant=tenant_a, code="MUG")
        StockLevelFactory(tenant=tenant_a, sku=sku, on_hand=10, reserved=3)
        StockLevelFactory(tenant=tenant_a, sku=sku, on_hand=5, reserved=0)
        SkuFactory(tenant=tenant_a, code="NEW")

        response = client_a.get(admin_url(Sku, "changelist"))

        totals = {
            obj.code: (obj.on_hand_total, obj.reserved_total, obj.free_total)
            for obj in response.context["cl"].result_list
        }
        assert totals == {"MUG": (15, 3, 12), "NEW": (0, 0, 0)}

    def test_changelist_sorts_by_free_stock(self, client_a, tenant_a):
        for code, on_hand in [("LOW", 1), ("HIGH", 50), ("MID", 9)]:
            StockLevelFactory(
                tenant=tenant_a, sku=SkuFactory(tenant=tenant_a, code=code), on_hand=on_hand
            )
        free_column = SkuAdmin.list_display.index("free_total") + 1

        response = client_a.get(admin_url(Sku, "changelist"), {"o": f"-{free_column}"})

        assert [obj.code for obj in response.context["cl"].result_list] == ["HIGH", "MID", "LOW"]

    def test_sku_page_shows_stock_read_only(self, client_a, world_a):
        response = client_a.get(admin_url(Sku, "change", world_a["sku"].pk))

        stock_inline = next(
            inline
            for inline in response.context["inline_admin_formsets"]
            if inline.opts.model is StockLevel
        )
        assert stock_inline.formset.forms[0].instance == world_a["stocklevel"]
        assert "on_hand" in stock_inline.readonly_fields
        assert not stock_inline.has_add_permission


class TestStockLevelAdmin:
    def post_change(self, client, level, **data):
        form = {"on_hand": level.on_hand, "bin_location": "", "reorder_point": 0, **data}
        return client.post(admin_url(StockLevel, "change", level.pk), form)

    def test_setting_on_hand_below_reserved_is_refused_with_a_clear_message(
        self, client_a, world_a
    ):
        level = world_a["stocklevel"]  # 10 on hand, 2 reserved

        response = self.post_change(client_a, level, on_hand=1)

        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert "2 units are reserved for open orders" in " ".join(errors["on_hand"])
        assert "2 units are reserved" in response.content.decode()
        level.refresh_from_db()
        assert level.on_hand == 10
        assert StockMovement._base_manager.filter(kind="count").count() == 0

    def test_a_changed_on_hand_is_recorded_as_a_count(self, client_a, user_a, world_a):
        level = world_a["stocklevel"]

        response = self.post_change(
            client_a, level, on_hand=15, bin_location="Z-9", reserved=0, reference="cycle 12"
        )

        assert response.status_code == 302
        level.refresh_from_db()
        assert (level.on_hand, level.reserved, level.bin_location) == (15, 2, "Z-9")
        movement = StockMovement._base_manager.get(kind="count")
        assert (movement.on_hand_delta, movement.created_by, movement.reference) == (
            5,
            user_a,
            "cycle 12",
        )

    def test_saving_without_changing_on_hand_writes_no_movement(self, client_a, world_a):
        level = world_a["stocklevel"]

        response = self.post_change(client_a, level, reorder_point=4)

        assert response.status_code == 302
        level.refresh_from_db()
        assert level.reorder_point == 4
        assert not StockMovement._base_manager.filter(kind="count").exists()

    def test_sku_and_warehouse_are_fixed_once_created(self, client_a, world_a, tenant_a):
        level = world_a["stocklevel"]
        other_sku = SkuFactory(tenant=tenant_a)

        self.post_change(client_a, level, sku=other_sku.pk)

        level.refresh_from_db()
        assert level.sku == world_a["sku"]

    def test_adding_a_level_counts_its_stock_into_the_ledger(self, client_a, tenant_a):
        sku = SkuFactory(tenant=tenant_a)
        warehouse = WarehouseFactory(tenant=tenant_a)

        response = client_a.post(
            admin_url(StockLevel, "add"),
            {"sku": sku.pk, "warehouse": warehouse.pk, "on_hand": 7, "reorder_point": 2},
        )

        assert response.status_code == 302, response.context["adminform"].form.errors
        level = StockLevel._base_manager.get(sku=sku, warehouse=warehouse)
        assert (level.on_hand, level.reserved, level.reorder_point) == (7, 0, 2)
        with tenant_context(tenant_a):
            assert stock_ledger_balance(sku=sku, warehouse=warehouse) == (7, 0)

    def test_a_second_level_for_the_same_place_is_a_form_error(self, client_a, world_a):
        response = client_a.post(
            admin_url(StockLevel, "add"),
            {
                "sku": world_a["sku"].pk,
                "warehouse": world_a["warehouse"].pk,
                "on_hand": 1,
                "reorder_point": 0,
            },
        )

        assert response.status_code == 200
        assert response.context["adminform"].form.non_field_errors()

    def test_below_reorder_filter(self, client_a, tenant_a):
        low = StockLevelFactory(tenant=tenant_a, on_hand=6, reserved=2, reorder_point=4)
        high = StockLevelFactory(tenant=tenant_a, on_hand=9, reserved=2, reorder_point=4)

        below = client_a.get(admin_url(StockLevel, "changelist"), {"reorder": "below"})
        above = client_a.get(admin_url(StockLevel, "changelist"), {"reorder": "above"})

        assert list(below.context["cl"].result_list) == [low]
        assert list(above.context["cl"].result_list) == [high]


class TestStockMovementAdmin:
    def test_the_ledger_cannot_be_added_to_changed_or_deleted(self, client_a, world_a):
        movement = world_a["stockmovement"]

        assert client_a.get(admin_url(StockMovement, "add")).status_code == 403
        change = client_a.post(
            admin_url(StockMovement, "change", movement.pk), {"on_hand_delta": 999}
        )
        delete = client_a.post(admin_url(StockMovement, "delete", movement.pk), {"post": "yes"})

        assert change.status_code == 403
        assert delete.status_code == 403
        movement.refresh_from_db()
        assert movement.on_hand_delta == 10

    def test_the_ledger_can_be_read(self, client_a, world_a):
        response = client_a.get(admin_url(StockMovement, "change", world_a["stockmovement"].pk))
        assert response.status_code == 200
        assert 'name="_save"' not in response.content.decode()


class TestImportThroughTheAdmin:
    def test_preview_then_confirm_imports_skus_into_the_own_tenant(
        self, client_a, tenant_a, tenant_b
    ):
        SkuFactory(tenant=tenant_b, code="MUG", name="Bravo mug")

        response = admin_import(client_a, Sku, "code,name\nMUG,Alpha mug\nCAP,Alpha cap")

        assert response.status_code == 302
        assert "Import finished: 2 new" in " ".join(messages_of(response))
        assert set(Sku._base_manager.filter(tenant=tenant_a).values_list("name", flat=True)) == {
            "Alpha mug",
            "Alpha cap",
        }
        assert Sku._base_manager.get(tenant=tenant_b).name == "Bravo mug"

    def test_preview_names_every_bad_row_and_column_and_offers_no_confirm(self, client_a, tenant_a):
        text = "code,name,weight_grams\n" + "\n".join(
            f"S{n},Thing {n},{'lots' if n in (3, 7) else 10}" for n in range(1, 10)
        )

        preview = admin_import_preview(client_a, Sku, text)

        result = preview.context["result"]
        assert [(row.number, set(row.error_dict)) for row in result.invalid_rows] == [
            (3, {"weight_grams"}),
            (7, {"weight_grams"}),
        ]
        assert preview.context.get("confirm_form") is None
        assert "“lots” is not a number." in preview.content.decode()
        assert not Sku._base_manager.exists()

    def test_stock_count_import_writes_movements(self, client_a, user_a, world_a):
        response = admin_import(
            client_a, StockLevel, "sku,warehouse,on_hand\nALPHA-SKU,ALPHA-WH,14", "count.csv"
        )

        assert response.status_code == 302
        world_a["stocklevel"].refresh_from_db()
        assert world_a["stocklevel"].on_hand == 14
        movement = StockMovement._base_manager.get(kind="count")
        assert (movement.on_hand_delta, movement.created_by) == (4, user_a)
        assert movement.reference == "import count.csv"

    def test_stock_count_import_below_reserved_is_refused_in_the_preview(self, client_a, world_a):
        preview = admin_import_preview(
            client_a, StockLevel, "sku,warehouse,on_hand\nALPHA-SKU,ALPHA-WH,1"
        )

        result = preview.context["result"]
        assert [(row.number, set(row.error_dict)) for row in result.invalid_rows] == [
            (1, {"on_hand"})
        ]
        assert "2 units are reserved" in preview.content.decode()
        assert preview.context.get("confirm_form") is None

    def test_confirm_refuses_when_stock_was_reserved_after_the_preview(self, client_a, world_a):
        level = world_a["stocklevel"]  # 10 on hand, 2 reserved
        text = "sku,warehouse,on_hand\nALPHA-SKU,ALPHA-WH,4\nALPHA-SKU,NEW-WH,3"
        WarehouseFactory(tenant=level.tenant, code="NEW-WH")
        preview = admin_import_preview(client_a, StockLevel, text)
        StockLevel._base_manager.filter(pk=level.pk).update(reserved=6)  # an order came in

        response = admin_import_confirm(client_a, StockLevel, preview)

        assert response.status_code == 302
        assert "Nothing was imported" in " ".join(messages_of(response))
        level.refresh_from_db()
        assert level.on_hand == 10
        assert StockLevel._base_manager.count() == 1
        assert not StockMovement._base_manager.filter(kind="count").exists()


def _changelist_queries(client, model) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(admin_url(model, "changelist"))
    assert response.status_code == 200
    return len(queries)


def _stock(tenant, skus: int, warehouses):
    for _ in range(skus):
        sku = SkuFactory(tenant=tenant)
        for warehouse in warehouses:
            StockLevelFactory(tenant=tenant, sku=sku, warehouse=warehouse, on_hand=5, reserved=1)


ROW_BUILDERS = {
    Sku: lambda tenant, warehouses: _stock(tenant, 3, warehouses),
    StockLevel: lambda tenant, warehouses: _stock(tenant, 3, warehouses),
    StockMovement: lambda tenant, warehouses: [
        StockMovementFactory(tenant=tenant, order=OrderFactory(tenant=tenant)) for _ in range(3)
    ],
    Listing: lambda tenant, warehouses: [ListingFactory(tenant=tenant) for _ in range(3)],
    SupplierItem: lambda tenant, warehouses: [SupplierItemFactory(tenant=tenant) for _ in range(3)],
    Warehouse: lambda tenant, warehouses: [
        WarehouseFactory(tenant=tenant, provider=ProviderFactory(tenant=tenant)) for _ in range(3)
    ],
}


@pytest.mark.parametrize("model", ROW_BUILDERS, ids=lambda m: m.__name__)
def test_changelist_queries_do_not_grow_with_rows(
    model, client_a, tenant_a, django_assert_max_num_queries
):
    warehouses = [WarehouseFactory(tenant=tenant_a) for _ in range(2)]
    ROW_BUILDERS[model](tenant_a, warehouses)
    few = _changelist_queries(client_a, model)
    for _ in range(4):
        ROW_BUILDERS[model](tenant_a, warehouses)

    with django_assert_max_num_queries(few):
        client_a.get(admin_url(model, "changelist"))


def test_stock_level_changelist_query_budget(client_a, tenant_a, django_assert_max_num_queries):
    _stock(tenant_a, 20, [WarehouseFactory(tenant=tenant_a) for _ in range(3)])
    with django_assert_max_num_queries(10):
        response = client_a.get(admin_url(StockLevel, "changelist"))
    assert len(response.context["cl"].result_list) == 60


def test_sku_changelist_query_budget(client_a, tenant_a, django_assert_max_num_queries):
    _stock(tenant_a, 40, [WarehouseFactory(tenant=tenant_a) for _ in range(2)])
    with django_assert_max_num_queries(10):
        response = client_a.get(admin_url(Sku, "changelist"))
    assert len(response.context["cl"].result_list) == 40


def test_counts_and_the_admin_agree_with_the_ledger(client_a, tenant_a, user_a):
    sku, warehouse = SkuFactory(tenant=tenant_a), WarehouseFactory(tenant=tenant_a)
    with tenant_context(tenant_a):
        stock_count(sku=sku, warehouse=warehouse, counted=20, user=user_a)
    level = StockLevel._base_manager.get(sku=sku)

    client_a.post(admin_url(StockLevel, "change", level.pk), {"on_hand": 12, "reorder_point": 0})
    admin_import(client_a, StockLevel, f"sku,warehouse,on_hand\n{sku.code},{warehouse.code},17")

    level.refresh_from_db()
    assert level.on_hand == 17
    with tenant_context(tenant_a):
        assert stock_ledger_balance(sku=sku, warehouse=warehouse) == (17, 0)


class TestOperatorAcrossTenants:
    """The superuser with no tenant chosen sees every tenant and counts stock in any of them."""

    def test_changelists_show_every_tenant_with_its_column(
        self, client, superuser, world_a, world_b
    ):
        client.force_login(superuser)

        for model in (Sku, StockLevel):
            response = client.get(admin_url(model, "changelist"))
            content = response.content.decode()
            assert "ALPHA" in content and "BRAVO" in content
            assert "tenant" in response.context["cl"].list_display

    def test_counting_stock_of_any_tenant_goes_through_the_ledger(self, client, superuser, world_b):
        client.force_login(superuser)
        level = world_b["stocklevel"]  # 10 on hand, 2 reserved

        refused = client.post(
            admin_url(StockLevel, "change", level.pk), {"on_hand": 1, "reorder_point": 0}
        )
        accepted = client.post(
            admin_url(StockLevel, "change", level.pk), {"on_hand": 12, "reorder_point": 0}
        )

        assert "2 units are reserved" in refused.content.decode()
        assert accepted.status_code == 302
        level.refresh_from_db()
        assert level.on_hand == 12
        movement = StockMovement._base_manager.get(kind="count")
        assert (movement.tenant, movement.on_hand_delta) == (level.tenant, 2)


@pytest.mark.django_db
def test_the_back_office_names_inventory_pushes_in_plain_english(client_a):
    """The list of stock pushes was "Inventory pushs" in the menu and on the cockpit's lists."""
    page = client_a.get(reverse("admin:index")).content.decode()

    assert "Inventory pushes" in page and "pushs" not in page
