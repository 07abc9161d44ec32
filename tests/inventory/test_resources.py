"""CSV import/export of inventory data: natural keys, one tenant, all or nothing, formula-safe."""

from decimal import Decimal

import pytest

from inventory.models import Listing, Sku, StockLevel, StockMovement, Supplier, SupplierItem
from inventory.resources import (
    ListingResource,
    SkuResource,
    StockLevelResource,
    SupplierItemResource,
    SupplierResource,
)
from inventory.stock import stock_ledger_balance
from tests.factories import (
    ListingFactory,
    ShopFactory,
    SkuFactory,
    StockLevelFactory,
    SupplierFactory,
    SupplierItemFactory,
    WarehouseFactory,
)
from tests.inventory.helpers import csv_dataset, csv_rows
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def run_import(resource_class, tenant, text: str, **kwargs):
    with tenant_context(tenant):
        return resource_class(tenant=tenant).import_data(csv_dataset(text), **kwargs)


def run_export(resource_class, tenant) -> list[dict]:
    with tenant_context(tenant):
        return csv_rows(resource_class(tenant=tenant).export().csv)


def problems(result) -> list[tuple[int, set[str]]]:
    """(row number, columns) for every invalid row of an import result."""
    return [(row.number, set(row.error_dict)) for row in result.invalid_rows]


def assert_clean(result):
    assert not result.has_errors(), [
        (n, [str(e.error) for e in errs]) for n, errs in result.row_errors()
    ] + [str(e.error) for e in result.base_errors]
    assert not result.has_validation_errors(), problems(result)


class TestSkus:
    def test_import_creates_and_updates_by_code(self, tenant_a):
        SkuFactory(tenant=tenant_a, code="MUG", name="Old name")

        result = run_import(
            SkuResource,
            tenant_a,
            """
code,name,barcode,weight_grams,cost
MUG,Mug,0001,300,2.50
CAP,Cap,,80,1.20
""",
        )

        assert_clean(result)
        mug = Sku._base_manager.get(tenant=tenant_a, code="MUG")
        assert (mug.name, mug.weight_grams, mug.cost) == ("Mug", 300, Decimal("2.50"))
        assert Sku._base_manager.filter(tenant=tenant_a, code="CAP").exists()

    def test_import_never_touches_another_tenant_with_the_same_code(self, tenant_a, tenant_b):
        theirs = SkuFactory(tenant=tenant_b, code="MUG", name="Bravo mug")

        result = run_import(SkuResource, tenant_a, "code,name\nMUG,Alpha mug")

        assert_clean(result)
        theirs.refresh_from_db()
        assert theirs.name == "Bravo mug"
        mine = Sku._base_manager.get(tenant=tenant_a, code="MUG")
        assert mine.name == "Alpha mug"

    def test_ids_and_tenant_in_the_file_are_ignored(self, tenant_a, tenant_b):
        theirs = SkuFactory(tenant=tenant_b, code="THEIRS", name="Bravo thing")

        result = run_import(
            SkuResource,
            tenant_a,
            f"id,tenant,code,name\n{theirs.pk},{tenant_b.pk},NEW,Taken over?",
        )

        assert_clean(result)
        theirs.refresh_from_db()
        assert (theirs.code, theirs.name) == ("THEIRS", "Bravo thing")
        new = Sku._base_manager.get(code="NEW")
        assert new.tenant == tenant_a
        assert new.pk != theirs.pk

    def test_one_bad_row_among_many_writes_nothing_and_is_named(self, tenant_a):
        rows = [f"OK-{n},Thing {n},100" for n in range(1, 7)]
        rows[3] = "BAD,Heavy thing,heavy"

        result = run_import(SkuResource, tenant_a, "code,name,weight_grams\n" + "\n".join(rows))

        assert problems(result) == [(4, {"weight_grams"})]
        assert not Sku._base_manager.filter(tenant=tenant_a).exists()

    def test_every_bad_row_is_reported(self, tenant_a):
        result = run_import(
            SkuResource,
            tenant_a,
            """
code,name,weight_grams
A,,1
B,Fine,2
C,Also fine,-5
""",
        )
        assert problems(result) == [(1, {"name"}), (3, {"weight_grams"})]
        assert not Sku._base_manager.exists()

    def test_export_holds_only_the_tenants_rows(self, tenant_a, tenant_b):
        SkuFactory(tenant=tenant_a, code="ALPHA-1")
        SkuFactory(tenant=tenant_b, code="BRAVO-1")

        rows = run_export(SkuResource, tenant_a)

        assert [row["code"] for row in rows] == ["ALPHA-1"]
        assert "id" not in rows[0] and "tenant" not in rows[0]

    @pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
    def test_export_neutralises_formulas_and_reimports_them_verbatim(self, tenant_a, prefix):
        text = f'{prefix}HYPERLINK("http://evil")'
        SkuFactory(tenant=tenant_a, code="F1", name=text, weight_grams=5)

        rows = run_export(SkuResource, tenant_a)

        assert rows[0]["name"] == "'" + text
        assert rows[0]["weight_grams"] == "5"  # numbers are left alone
        exported = "code,name\n" + f'F1,"{rows[0]["name"].replace(chr(34), chr(34) * 2)}"'
        assert_clean(run_import(SkuResource, tenant_a, exported))
        assert Sku._base_manager.get(tenant=tenant_a, code="F1").name == text


class TestStockCounts:
    @pytest.fixture
    def place(self, tenant_a):
        return {
            "mug": SkuFactory(tenant=tenant_a, code="MUG"),
            "cap": SkuFactory(tenant=tenant_a, code="CAP"),
            "main": WarehouseFactory(tenant=tenant_a, code="MAIN"),
        }

    def test_import_counts_through_stock_count_and_writes_movements(self, tenant_a, user_a, place):
        StockLevelFactory(
            tenant=tenant_a, sku=place["mug"], warehouse=place["main"], on_hand=0, reserved=0
        )

        result = run_import(
            StockLevelResource,
            tenant_a,
            """
sku,warehouse,on_hand,bin_location
MUG,MAIN,25,A-01
CAP,MAIN,8,B-02
""",
            user=user_a,
            file_name="count-0412.csv",
        )

        assert_clean(result)
        mug = StockLevel._base_manager.get(sku=place["mug"])
        cap = StockLevel._base_manager.get(sku=place["cap"])
        assert (mug.on_hand, mug.bin_location) == (25, "A-01")
        assert (cap.on_hand, cap.bin_location) == (8, "B-02")
        movements = StockMovement._base_manager.order_by("sku__code")
        assert [(m.sku.code, m.kind, m.on_hand_delta) for m in movements] == [
            ("CAP", "count", 8),
            ("MUG", "count", 25),
        ]
        assert {m.created_by for m in movements} == {user_a}
        assert {m.reference for m in movements} == {"import count-0412.csv"}
        with tenant_context(tenant_a):
            for level in (mug, cap):
                assert stock_ledger_balance(sku=level.sku, warehouse=level.warehouse) == (
                    level.on_hand,
                    0,
                )

    def test_reimporting_the_same_count_writes_no_movement(self, tenant_a, user_a, place):
        text = "sku,warehouse,on_hand\nMUG,MAIN,25"
        assert_clean(run_import(StockLevelResource, tenant_a, text, user=user_a))

        again = run_import(StockLevelResource, tenant_a, text, user=user_a)

        assert_clean(again)
        assert StockMovement._base_manager.count() == 1

    def test_count_below_reserved_is_refused_naming_row_and_column(self, tenant_a, place):
        StockLevelFactory(
            tenant=tenant_a, sku=place["mug"], warehouse=place["main"], on_hand=10, reserved=6
        )

        result = run_import(
            StockLevelResource,
            tenant_a,
            """
sku,warehouse,on_hand
CAP,MAIN,3
MUG,MAIN,5
""",
        )

        assert problems(result) == [(2, {"on_hand"})]
        message = " ".join(result.invalid_rows[0].error_dict["on_hand"])
        assert "6 units are reserved" in message
        assert StockLevel._base_manager.get(sku=place["mug"]).on_hand == 10
        assert not StockLevel._base_manager.filter(sku=place["cap"]).exists()
        assert not StockMovement._base_manager.exists()

    def test_reserved_in_the_file_is_ignored(self, tenant_a, place):
        StockLevelFactory(
            tenant=tenant_a, sku=place["mug"], warehouse=place["main"], on_hand=10, reserved=6
        )

        result = run_import(
            StockLevelResource, tenant_a, "sku,warehouse,on_hand,reserved\nMUG,MAIN,10,0"
        )

        assert_clean(result)
        assert StockLevel._base_manager.get(sku=place["mug"]).reserved == 6

    def test_unknown_or_foreign_keys_are_named_by_column(self, tenant_a, tenant_b, place):
        SkuFactory(tenant=tenant_b, code="BRAVO-ONLY")
        WarehouseFactory(tenant=tenant_b, code="BRAVO-WH")

        result = run_import(
            StockLevelResource,
            tenant_a,
            """
sku,warehouse,on_hand
MUG,MAIN,1
BRAVO-ONLY,MAIN,2
MUG,BRAVO-WH,3
""",
        )

        assert problems(result) == [(2, {"sku"}), (3, {"warehouse"})]
        assert "No SKU with code “BRAVO-ONLY”" in result.invalid_rows[0].error_dict["sku"][0]
        assert not StockLevel._base_manager.exists()

    def test_import_never_lands_in_another_tenant(self, tenant_a, tenant_b, place):
        theirs = StockLevelFactory(
            tenant=tenant_b,
            sku=SkuFactory(tenant=tenant_b, code="MUG"),
            warehouse=WarehouseFactory(tenant=tenant_b, code="MAIN"),
            on_hand=50,
        )

        assert_clean(run_import(StockLevelResource, tenant_a, "sku,warehouse,on_hand\nMUG,MAIN,7"))

        theirs.refresh_from_db()
        assert theirs.on_hand == 50
        mine = StockLevel._base_manager.get(tenant=tenant_a)
        assert (mine.sku, mine.on_hand) == (place["mug"], 7)
        assert StockMovement._base_manager.get().tenant == tenant_a

    def test_export_shows_counts_with_reserved_and_free(self, tenant_a, tenant_b, place):
        StockLevelFactory(
            tenant=tenant_a, sku=place["mug"], warehouse=place["main"], on_hand=10, reserved=4
        )
        StockLevelFactory(tenant=tenant_b, on_hand=99)

        rows = run_export(StockLevelResource, tenant_a)

        assert rows == [
            {
                "sku": "MUG",
                "warehouse": "MAIN",
                "on_hand": "10",
                "reserved": "4",
                "free": "6",
                "bin_location": "",
                "reorder_point": "0",
            }
        ]


class TestListings:
    def test_import_by_shop_name_and_sku_code_within_the_tenant(self, tenant_a, tenant_b):
        shop = ShopFactory(tenant=tenant_a, name="Main shop")
        sku = SkuFactory(tenant=tenant_a, code="MUG")
        ListingFactory(tenant=tenant_a, shop=shop, sku=sku, buffer_units=0)
        theirs = ListingFactory(
            tenant=tenant_b,
            shop=ShopFactory(tenant=tenant_b, name="Main shop"),
            sku=SkuFactory(tenant=tenant_b, code="MUG"),
            buffer_units=9,
        )

        result = run_import(
            ListingResource,
            tenant_a,
            """
shop,sku,platform_product_id,platform_sku_id,buffer_units,buffer_percent,published_quantity
Main shop,MUG,P-1,S-1,3,10,500
""",
        )

        assert_clean(result)
        mine = Listing._base_manager.get(tenant=tenant_a)
        assert (mine.platform_sku_id, mine.buffer_units, mine.buffer_percent) == (
            "S-1",
            3,
            Decimal("10"),
        )
        assert mine.published_quantity is None  # what was published is not the file's to say
        theirs.refresh_from_db()
        assert theirs.buffer_units == 9

    def test_unknown_shop_is_named(self, tenant_a, tenant_b):
        ShopFactory(tenant=tenant_b, name="Bravo shop")
        SkuFactory(tenant=tenant_a, code="MUG")

        result = run_import(ListingResource, tenant_a, "shop,sku\nBravo shop,MUG")

        assert problems(result) == [(1, {"shop"})]
        assert not Listing._base_manager.exists()

    def test_export_holds_only_the_tenants_listings(self, tenant_a, tenant_b):
        ListingFactory(tenant=tenant_a, sku=SkuFactory(tenant=tenant_a, code="ALPHA-1"))
        ListingFactory(tenant=tenant_b, sku=SkuFactory(tenant=tenant_b, code="BRAVO-1"))

        assert [row["sku"] for row in run_export(ListingResource, tenant_a)] == ["ALPHA-1"]


class TestSuppliers:
    def test_import_by_code_never_touches_another_tenant(self, tenant_a, tenant_b):
        theirs = SupplierFactory(tenant=tenant_b, code="ACME", name="Bravo's Acme")

        result = run_import(
            SupplierResource, tenant_a, "code,name,lead_time_days\nACME,Acme Ltd,5\nZED,Zed,9"
        )

        assert_clean(result)
        assert Supplier._base_manager.filter(tenant=tenant_a).count() == 2
        theirs.refresh_from_db()
        assert theirs.name == "Bravo's Acme"

    def test_one_bad_row_writes_nothing(self, tenant_a):
        result = run_import(
            SupplierResource,
            tenant_a,
            """
code,name,email
S1,One,one@example.com
S2,Two,not-an-email
S3,Three,three@example.com
""",
        )
        assert problems(result) == [(2, {"email"})]
        assert not Supplier._base_manager.exists()

    def test_export_holds_only_the_tenants_suppliers(self, tenant_a, tenant_b):
        SupplierFactory(tenant=tenant_a, code="ALPHA-S")
        SupplierFactory(tenant=tenant_b, code="BRAVO-S")
        assert [row["code"] for row in run_export(SupplierResource, tenant_a)] == ["ALPHA-S"]


class TestSupplierItems:
    def test_import_by_supplier_and_sku_codes(self, tenant_a, tenant_b):
        supplier = SupplierFactory(tenant=tenant_a, code="ACME")
        sku = SkuFactory(tenant=tenant_a, code="MUG")
        SupplierItemFactory(tenant=tenant_a, supplier=supplier, sku=sku, cost=Decimal("1"))
        theirs = SupplierItemFactory(
            tenant=tenant_b,
            supplier=SupplierFactory(tenant=tenant_b, code="ACME"),
            sku=SkuFactory(tenant=tenant_b, code="MUG"),
            cost=Decimal("7"),
        )

        result = run_import(
            SupplierItemResource,
            tenant_a,
            "supplier,sku,supplier_item_code,cost\nACME,MUG,AC-MUG,2.25",
        )

        assert_clean(result)
        mine = SupplierItem._base_manager.get(tenant=tenant_a)
        assert (mine.supplier_item_code, mine.cost) == ("AC-MUG", Decimal("2.25"))
        theirs.refresh_from_db()
        assert theirs.cost == Decimal("7")

    def test_foreign_supplier_is_refused_by_column(self, tenant_a, tenant_b):
        SupplierFactory(tenant=tenant_b, code="BRAVO-S")
        SupplierFactory(tenant=tenant_a, code="ACME")
        SkuFactory(tenant=tenant_a, code="MUG")

        result = run_import(
            SupplierItemResource,
            tenant_a,
            "supplier,sku,supplier_item_code\nACME,MUG,X1\nBRAVO-S,MUG,X2",
        )

        assert problems(result) == [(2, {"supplier"})]
        assert not SupplierItem._base_manager.exists()

    def test_export_holds_only_the_tenants_items(self, tenant_a, tenant_b):
        SupplierItemFactory(tenant=tenant_a, supplier_item_code="ALPHA-X")
        SupplierItemFactory(tenant=tenant_b, supplier_item_code="BRAVO-X")
        rows = run_export(SupplierItemResource, tenant_a)
        assert [row["supplier_item_code"] for row in rows] == ["ALPHA-X"]
