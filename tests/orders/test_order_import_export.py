"""CSV import and export of orders: all or nothing, idempotent, tenant-safe, formula-safe."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from inventory.models import MovementKind, Reservation, ReservationState, StockLevel, WarehouseKind
from inventory.stock import stock_adjust
from logistics.models import Shipment
from logistics.routing import orders_split_ready
from orders.models import Order, OrderEvent, OrderLine, OrderStatus
from orders.resources import CSV_COLUMNS, OrderLineResource
from tests.e2e.helpers import django_q_sync
from tests.factories import (
    OrderFactory,
    OrderLineFactory,
    ShopFactory,
    SkuFactory,
    WarehouseFactory,
)
from tests.orders.admin_helpers import admin_url, run_action
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

IMPORT_COLUMNS = [c for c in CSV_COLUMNS if c not in ("status", "total")]


def order_row(**values) -> dict:
    row = {
        "shop": "Alpha CSV",
        "order_id": "M-1",
        "placed_at": "2025-04-12T14:30:00+00:00",
        "buyer_name": "Jamie Buyer",
        "buyer_email": "jamie@example.com",
        "recipient_name": "Jamie Buyer",
        "phone": "+14155550123",
        "address_line1": "1 Market St",
        "address_line2": "",
        "city": "San Francisco",
        "state": "CA",
        "postal_code": "94105",
        "country": "US",
        "buyer_note": "",
        "currency": "USD",
        "shipping_fee": "4.99",
        "tax": "1.00",
        "discount": "0.50",
        "sku": "RED-S",
        "quantity": "2",
        "unit_price": "10.00",
    }
    row.update(values)
    return row


def dataset(rows: list[dict]) -> tablib.Dataset:
    data = tablib.Dataset(headers=IMPORT_COLUMNS)
    for row in rows:
        data.append([row.get(column, "") for column in IMPORT_COLUMNS])
    return data


def run_import(tenant, rows, *, dry_run=False, user=None):
    with tenant_context(tenant):
        resource = OrderLineResource(tenant=tenant)
        return resource.import_data(dataset(rows), dry_run=dry_run, user=user, file_name="o.csv")


def errors_by_row(result) -> dict[int, dict[str, list[str]]]:
    return {row.number: row.error_dict for row in result.invalid_rows}


@pytest.fixture
def skus_a(tenant_a):
    return {
        code: SkuFactory(tenant=tenant_a, code=code, name=f"Tee {code}")
        for code in ("RED-S", "RED-M", "BLUE-S")
    }


@pytest.fixture
def good_rows(manual_shop_a, skus_a):
    return [
        order_row(order_id="M-1", sku="RED-S", quantity="2", unit_price="10.00"),
        # Order columns may be left blank on the order's later rows.
        {"shop": "Alpha CSV", "order_id": "M-1", "sku": "RED-M", "quantity": "1",
         "unit_price": "12.50"},
        order_row(order_id="M-2", recipient_name="Sam Second", sku="BLUE-S", quantity="3",
                  unit_price="5", shipping_fee="", tax="", discount=""),
    ]  # fmt: skip


def orders_of(tenant):
    return Order._base_manager.filter(tenant=tenant).order_by("platform_order_id")


class TestGoodImport:
    def test_creates_orders_with_lines_totals_and_deadlines(self, tenant_a, good_rows, skus_a):
        result = run_import(tenant_a, good_rows)

        assert not result.has_errors() and not result.has_validation_errors()
        assert result.order_counts == {"new": 2, "updated": 0}
        first, second = orders_of(tenant_a)
        assert first.platform_order_id == "M-1"
        assert first.status == OrderStatus.NEW
        assert first.subtotal == Decimal("32.50")
        assert first.total == Decimal("32.50") + Decimal("4.99") + Decimal("1.00") - Decimal("0.50")
        assert first.placed_at == datetime(2025, 4, 12, 14, 30, tzinfo=UTC)
        assert first.ship_by == first.placed_at + timedelta(hours=first.shop.ship_by_hours)
        assert first.recipient_phone == "+14155550123"
        lines = OrderLine._base_manager.filter(order=first).order_by("pk")
        assert [(line.sku, line.platform_line_id, line.quantity, line.total) for line in lines] == [
            (skus_a["RED-S"], "RED-S", 2, Decimal("20.00")),
            (skus_a["RED-M"], "RED-M", 1, Decimal("12.50")),
        ]
        assert (second.subtotal, second.total, second.recipient_name) == (
            Decimal("15.00"),
            Decimal("15.00"),
            "Sam Second",
        )

    def test_writes_an_import_event_per_order_with_the_user(self, tenant_a, user_a, good_rows):
        run_import(tenant_a, good_rows, user=user_a)

        events = OrderEvent._base_manager.filter(tenant=tenant_a)
        assert sorted(events.values_list("order__platform_order_id", "kind", "user")) == [
            ("M-1", "order.imported", user_a.pk),
            ("M-2", "order.imported", user_a.pk),
        ]

    def test_dry_run_writes_nothing(self, tenant_a, good_rows):
        result = run_import(tenant_a, good_rows, dry_run=True)

        assert result.totals["new"] == 3
        assert not orders_of(tenant_a).exists()
        assert not OrderEvent._base_manager.exists()

    def test_importing_the_same_file_again_changes_nothing(self, tenant_a, good_rows):
        run_import(tenant_a, good_rows)
        before = list(orders_of(tenant_a).values_list("pk", "updated_at", "total"))
        lines_before = list(OrderLine._base_manager.order_by("pk").values_list("pk", "quantity"))

        again = run_import(tenant_a, good_rows)

        assert not again.has_validation_errors()
        assert (again.totals["new"], again.totals["update"], again.totals["skip"]) == (0, 0, 3)
        assert again.order_counts == {"new": 0, "updated": 0}
        assert list(orders_of(tenant_a).values_list("pk", "updated_at", "total")) == before
        assert list(OrderLine._base_manager.order_by("pk").values_list("pk", "quantity")) == (
            lines_before
        )
        assert OrderEvent._base_manager.count() == 2

    def test_a_changed_quantity_updates_the_line_and_the_totals(self, tenant_a, good_rows):
        run_import(tenant_a, good_rows)
        good_rows[1]["quantity"] = "2"

        result = run_import(tenant_a, good_rows)

        assert result.order_counts == {"new": 0, "updated": 1}
        order = orders_of(tenant_a).get(platform_order_id="M-1")
        assert order.subtotal == Decimal("45.00")
        assert OrderLine._base_manager.get(order=order, seller_sku="RED-M").quantity == 2
        event = OrderEvent._base_manager.get(order=order, kind="order.import_updated")
        assert event.data["fields"] == ["subtotal", "total", "lines"]

    def test_headers_are_matched_loosely_and_formula_quotes_are_undone(
        self, tenant_a, manual_shop_a, skus_a
    ):
        data = tablib.Dataset(
            headers=["Shop", "Order ID", "Recipient Name", "Address-Line1", "City", "SKU",
                     "Quantity", "Unit Price", "Phone"]
        )  # fmt: skip
        data.append(
            ["Alpha CSV", "M-9", "Ann", "2 Main St", "Austin", "RED-S", "1", "3", "'+15125550100"]
        )

        with tenant_context(tenant_a):
            result = OrderLineResource(tenant=tenant_a).import_data(data)

        assert not result.has_validation_errors(), errors_by_row(result)
        assert orders_of(tenant_a).get().recipient_phone == "+15125550100"


class TestBadImport:
    def test_one_bad_row_among_many_writes_nothing_and_names_row_and_column(
        self, tenant_a, manual_shop_a, skus_a
    ):
        rows = [order_row(order_id=f"M-{n}") for n in range(1, 11)]
        rows[6]["sku"] = "NOPE"  # row 7

        result = run_import(tenant_a, rows)

        assert result.has_validation_errors()
        assert errors_by_row(result) == {7: {"sku": ["unknown SKU 'NOPE'"]}}
        assert not orders_of(tenant_a).exists()
        assert not OrderLine._base_manager.exists()
        assert not OrderEvent._base_manager.exists()

    def test_every_bad_row_is_reported(self, tenant_a, manual_shop_a, skus_a):
        rows = [order_row(order_id=f"M-{n}") for n in range(1, 6)]
        rows[0]["quantity"] = "two"
        rows[2]["unit_price"] = "-1"
        rows[3]["buyer_email"] = "not-an-email"
        rows[4]["placed_at"] = "yesterday"

        errors = errors_by_row(run_import(tenant_a, rows))

        assert set(errors) == {1, 3, 4, 5}
        assert list(errors[1]) == ["quantity"]
        assert errors[3] == {"unit_price": ["must not be negative"]}
        assert list(errors[4]) == ["buyer_email"]
        assert list(errors[5]) == ["placed_at"]
        assert not orders_of(tenant_a).exists()

    def test_only_manual_shops_take_imports(self, tenant_a, skus_a):
        ShopFactory(tenant=tenant_a, name="Alpha TikTok", platform="tiktok")

        result = run_import(tenant_a, [order_row(shop="Alpha TikTok")])

        [message] = errors_by_row(result)[1]["shop"]
        assert "TikTok Shop shop" in message
        assert not orders_of(tenant_a).exists()

    def test_another_tenants_shop_and_sku_do_not_exist(self, tenant_a, tenant_b, skus_a):
        shop_b = ShopFactory(tenant=tenant_b, name="Bravo CSV", platform="manual")
        SkuFactory(tenant=tenant_b, code="BRAVO-1")

        result = run_import(
            tenant_a, [order_row(shop="Bravo CSV"), order_row(shop="Alpha CSV", sku="BRAVO-1")]
        )

        errors = errors_by_row(result)
        assert errors[1] == {"shop": ["there is no shop named 'Bravo CSV'"]}
        assert errors[2]["sku"] == ["unknown SKU 'BRAVO-1'"]
        assert not Order._base_manager.filter(shop=shop_b).exists()
        assert not Order._base_manager.exists()

    def test_same_shop_name_in_two_tenants_imports_into_the_users_tenant(
        self, tenant_a, tenant_b, manual_shop_a, skus_a
    ):
        shop_b = ShopFactory(tenant=tenant_b, name="Alpha CSV", platform="manual")
        SkuFactory(tenant=tenant_b, code="RED-S")

        run_import(tenant_a, [order_row()])

        assert Order._base_manager.get().shop == manual_shop_a
        assert not Order._base_manager.filter(shop=shop_b).exists()

    def test_conflicting_order_values_name_the_earlier_row(self, tenant_a, manual_shop_a, skus_a):
        rows = [order_row(sku="RED-S"), order_row(sku="RED-M", city="Oakland")]

        errors = errors_by_row(run_import(tenant_a, rows))

        assert errors == {2: {"city": ["differs from row 1 of the same order ('San Francisco')"]}}

    def test_the_same_sku_twice_in_an_order_is_refused(self, tenant_a, manual_shop_a, skus_a):
        errors = errors_by_row(run_import(tenant_a, [order_row(), order_row()]))

        assert list(errors) == [2]
        assert "already on row 1" in errors[2]["sku"][0]

    def test_an_order_without_an_address_is_refused(self, tenant_a, manual_shop_a, skus_a):
        errors = errors_by_row(run_import(tenant_a, [order_row(address_line1="", city="")]))

        assert set(errors[1]) == {"address_line1", "city"}

    def test_a_missing_column_is_a_file_error(self, tenant_a, manual_shop_a, skus_a):
        data = dataset([order_row()])
        del data["unit_price"]

        with tenant_context(tenant_a):
            result = OrderLineResource(tenant=tenant_a).import_data(data)

        assert result.has_errors()
        assert "unit_price" in str(result.base_errors[0].error)
        assert not orders_of(tenant_a).exists()

    def test_a_shipped_order_cannot_be_changed_by_import(self, tenant_a, good_rows):
        run_import(tenant_a, good_rows)
        Order._base_manager.filter(platform_order_id="M-1").update(status=OrderStatus.SHIPPED)

        unchanged = run_import(tenant_a, good_rows)
        good_rows[0]["quantity"] = "5"
        changed = run_import(tenant_a, good_rows)

        assert not unchanged.has_validation_errors()
        assert "shipped" in errors_by_row(changed)[1]["order_id"][0]
        order = orders_of(tenant_a).get(platform_order_id="M-1")
        assert OrderLine._base_manager.get(order=order, seller_sku="RED-S").quantity == 2

    def test_an_import_never_removes_lines(self, tenant_a, good_rows):
        run_import(tenant_a, good_rows)

        errors = errors_by_row(run_import(tenant_a, [good_rows[0], good_rows[2]]))

        assert "RED-M" in errors[1]["sku"][0]
        assert OrderLine._base_manager.count() == 3


class TestExport:
    @pytest.fixture
    def exported_orders(self, manual_shop_a, shop_b, skus_a):
        order = OrderFactory(
            tenant=manual_shop_a.tenant,
            shop=manual_shop_a,
            platform_order_id="M-7",
            buyer_name='=HYPERLINK("http://evil")',
            recipient_name="@SUM(1+1)",
            recipient_phone="+14155550123",
            seller_discount=Decimal("-1.00"),  # a negative amount stays a number
            placed_at=datetime(2025, 4, 12, 14, 30, tzinfo=UTC),
        )
        OrderLineFactory(order=order, sku=skus_a["RED-S"], seller_sku="RED-S", quantity=2)
        order_b = OrderFactory(tenant=shop_b.tenant, shop=shop_b, platform_order_id="B-1")
        OrderLineFactory(order=order_b, seller_sku="BRAVO-1")
        return order, order_b

    def export_rows(self, client, **data) -> list[dict]:
        response = client.post(
            admin_url(Order, "export"),
            {"format": "0", "resource": "0",
             **{f"orderlineresource_{c}": "on" for c in CSV_COLUMNS}, **data},
        )  # fmt: skip
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv"), response.content[:500]
        return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))

    def test_export_lists_only_the_tenants_lines_and_neutralises_formulas(
        self, client_a, exported_orders
    ):
        [row] = self.export_rows(client_a)

        assert row["order_id"] == "M-7"
        assert row["shop"] == "Alpha CSV"
        assert row["buyer_name"] == '\'=HYPERLINK("http://evil")'
        assert row["recipient_name"] == "'@SUM(1+1)"
        assert row["phone"] == "'+14155550123"
        assert row["discount"] == "-1.00"
        assert row["placed_at"] == "2025-04-12T14:30:00+00:00"
        assert (row["sku"], row["quantity"], row["status"]) == ("RED-S", "2", "new")

    def test_export_selected_cannot_reach_another_tenants_order(self, client_a, exported_orders):
        order, order_b = exported_orders

        page = run_action(client_a, Order, "export_admin_action", [order.pk, order_b.pk])
        assert page.status_code == 200
        rows = self.export_rows(client_a, export_items=[order.pk])
        assert [row["order_id"] for row in rows] == ["M-7"]

        response = client_a.post(
            admin_url(Order, "export"),
            {"format": "0", "export_items": [order_b.pk],
             **{f"orderlineresource_{c}": "on" for c in CSV_COLUMNS}},
        )  # fmt: skip
        assert not response.get("Content-Disposition")
        assert b"B-1" not in response.content

    def test_an_export_re_imports_without_changes(self, client_a, tenant_a, good_rows):
        run_import(tenant_a, good_rows)
        rows = self.export_rows(client_a)

        result = run_import(tenant_a, rows)

        assert not result.has_validation_errors(), errors_by_row(result)
        assert (result.totals["new"], result.totals["update"], result.totals["skip"]) == (0, 0, 3)


class TestAdminImport:
    def upload(self, client, rows, name="orders.csv"):
        content = dataset(rows).export("csv").encode()
        return client.post(
            admin_url(Order, "import"),
            {"format": "0", "resource": "0",
             "import_file": SimpleUploadedFile(name, content, content_type="text/csv")},
        )  # fmt: skip

    def test_preview_then_confirm_imports_into_the_users_tenant(
        self, client_a, tenant_a, tenant_b, good_rows
    ):
        shop_b = ShopFactory(tenant=tenant_b, name="Alpha CSV", platform="manual")

        preview = self.upload(client_a, good_rows)

        assert preview.status_code == 200
        assert not Order._base_manager.exists()  # a preview is a dry run
        confirm = preview.context["confirm_form"]
        response = client_a.post(admin_url(Order, "process_import"), confirm.initial)

        assert response.status_code == 302
        assert sorted(orders_of(tenant_a).values_list("platform_order_id", flat=True)) == [
            "M-1",
            "M-2",
        ]
        assert not Order._base_manager.filter(shop=shop_b).exists()
        messages = [str(m) for m in response.wsgi_request._messages]
        assert any("2 new and 0 changed orders" in message for message in messages)

    def test_a_bad_file_shows_the_row_and_column_and_offers_no_confirm(
        self, client_a, tenant_a, good_rows
    ):
        good_rows[2]["sku"] = "NOPE"

        preview = self.upload(client_a, good_rows)

        assert preview.status_code == 200
        assert "confirm_form" not in preview.context
        result = preview.context["result"]
        assert errors_by_row(result) == {3: {"sku": ["unknown SKU 'NOPE'"]}}
        assert "unknown SKU" in preview.content.decode()
        assert not Order._base_manager.exists()

    def test_a_date_outside_2000_to_2100_is_a_row_error_and_the_list_still_shows(
        self, tenant_a, user_a, good_rows
    ):
        # East of Greenwich, year 1 at midnight is before year 1 in UTC: stored, it made every
        # order list of the tenant an error page ("timestamp too small").
        tenant_a.timezone = "Asia/Tokyo"
        tenant_a.save(update_fields=["timezone"])
        client = Client(raise_request_exception=False)
        client.force_login(user_a)
        good_rows[0]["placed_at"] = "0001-01-01 00:00"
        good_rows[2]["paid_at"] = "9999-12-31 23:00"

        preview = self.upload(client, good_rows)

        assert preview.status_code == 200
        assert "confirm_form" not in preview.context
        assert errors_by_row(preview.context["result"]) == {
            1: {"placed_at": ["'0001-01-01 00:00' is outside 2000-2100"]},
            3: {"paid_at": ["'9999-12-31 23:00' is outside 2000-2100"]},
        }
        assert not Order._base_manager.exists()
        assert client.get(admin_url(Order, "changelist")).status_code == 200

    def test_viewer_cannot_import(self, viewer_client, good_rows):
        assert viewer_client.get(admin_url(Order, "import")).status_code == 403

    def test_the_operator_must_choose_a_tenant_before_importing(self, superuser_client):
        assert superuser_client.get(admin_url(Order, "import")).status_code == 403


class TestPaymentAndStock:
    """A CSV order is paid when placed unless the file says `unpaid`: it reserves its stock and
    gets its parcel like a platform order (orders.pipeline, then the split task)."""

    @pytest.fixture
    def stock(self, tenant_a, skus_a):
        warehouse = WarehouseFactory(tenant=tenant_a, code="A-OWN", kind=WarehouseKind.OWN)
        with tenant_context(tenant_a):
            for sku in skus_a.values():
                stock_adjust(
                    sku=sku,
                    warehouse=warehouse,
                    delta=10,
                    kind=MovementKind.RECEIVE,
                    user=None,
                    note="delivery",
                )
        return warehouse

    def rows(self, **values) -> list[dict]:
        return [
            order_row(sku="RED-S", quantity="2", **values),
            {"shop": "Alpha CSV", "order_id": "M-1", "sku": "RED-M", "quantity": "1",
             "unit_price": "12.50"},
        ]  # fmt: skip

    def held(self, order) -> dict[str, int]:
        return dict(
            Reservation._base_manager.filter(
                order=order, state=ReservationState.RESERVED
            ).values_list("sku__code", "quantity")
        )

    def test_an_imported_order_reserves_and_gets_its_parcel(
        self, client_a, tenant_a, manual_shop_a, stock, django_capture_on_commit_callbacks
    ):
        preview = TestAdminImport().upload(client_a, self.rows())
        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            response = client_a.post(
                admin_url(Order, "process_import"), preview.context["confirm_form"].initial
            )
        assert response.status_code == 302

        order = orders_of(tenant_a).get()
        assert order.paid_at == order.placed_at == datetime(2025, 4, 12, 14, 30, tzinfo=UTC)
        assert order.status == OrderStatus.READY
        assert self.held(order) == {"RED-S": 2, "RED-M": 1}
        levels = StockLevel._base_manager.filter(warehouse=stock)
        assert dict(levels.values_list("sku__code", "reserved")) == {
            "RED-S": 2,
            "RED-M": 1,
            "BLUE-S": 0,
        }
        with tenant_context(tenant_a):
            parcel = Shipment.objects.get(order=order)
            assert (parcel.warehouse, parcel.status) == (stock, "pending")
            assert sorted(parcel.lines.values_list("order_line__seller_sku", "quantity")) == [
                ("RED-M", 1),
                ("RED-S", 2),
            ]
            assert orders_split_ready(tenant=tenant_a) == 0  # split once, not again

    def test_unpaid_in_the_file_reserves_nothing_until_an_import_pays_it(
        self, tenant_a, manual_shop_a, stock, django_capture_on_commit_callbacks
    ):
        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            result = run_import(tenant_a, self.rows(paid_at="Unpaid"))
        assert not result.has_validation_errors(), errors_by_row(result)
        order = orders_of(tenant_a).get()
        assert (order.paid_at, order.status, order.reviewed_at) == (None, OrderStatus.NEW, None)
        assert self.held(order) == {}

        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            paid = run_import(tenant_a, self.rows(paid_at="2025-04-12 16:00"))

        assert paid.order_counts == {"new": 0, "updated": 1}
        order.refresh_from_db()
        assert order.paid_at == datetime(2025, 4, 12, 16, 0, tzinfo=UTC)  # tenant zone: UTC
        assert order.ship_by == order.paid_at + timedelta(hours=manual_shop_a.ship_by_hours)
        assert order.status == OrderStatus.READY
        assert self.held(order) == {"RED-S": 2, "RED-M": 1}

    def test_a_blank_paid_at_keeps_a_stored_order_unpaid(self, tenant_a, manual_shop_a, skus_a):
        run_import(tenant_a, self.rows(paid_at="unpaid"))

        again = run_import(tenant_a, self.rows())

        assert again.order_counts == {"new": 0, "updated": 0}
        assert orders_of(tenant_a).get().paid_at is None

    def test_a_paid_at_that_is_no_time_names_row_and_column(self, tenant_a, manual_shop_a, skus_a):
        errors = errors_by_row(run_import(tenant_a, self.rows(paid_at="soon")))

        assert errors == {
            1: {
                "paid_at": [
                    "'soon' is not a date and time; write it like 2025-04-12 14:30, "
                    "or 'unpaid' for an order not paid yet"
                ]
            }
        }
        assert not orders_of(tenant_a).exists()

    def test_an_unpaid_order_exports_as_unpaid_and_re_imports_unchanged(
        self, client_a, tenant_a, manual_shop_a, skus_a
    ):
        run_import(tenant_a, self.rows(paid_at="unpaid"))

        rows = TestExport().export_rows(client_a)

        assert {row["paid_at"] for row in rows} == {"unpaid"}
        result = run_import(tenant_a, rows)
        assert (result.totals["new"], result.totals["update"], result.totals["skip"]) == (0, 0, 2)

    def test_orders_imported_before_are_paid_when_placed_by_the_migration(
        self, tenant_a, manual_shop_a, shop_a
    ):
        from importlib import import_module

        from django.apps import apps

        migration = import_module("orders.migrations.0002_csv_orders_paid_when_placed")
        placed = datetime(2025, 4, 12, 14, 30, tzinfo=UTC)
        csv_order = OrderFactory(tenant=tenant_a, shop=manual_shop_a, placed_at=placed)
        platform_order = OrderFactory(tenant=tenant_a, shop=shop_a, placed_at=placed)

        migration.csv_orders_paid_when_placed(apps, None)

        assert Order._base_manager.get(pk=csv_order.pk).paid_at == placed
        assert Order._base_manager.get(pk=platform_order.pk).paid_at is None
