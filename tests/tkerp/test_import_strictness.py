"""Imports never change data silently and never show a traceback (issue 9, item 4).

Driven through the real admin import pages with Django's test client, for every resource: a
blank number is an error (not the default), `10.9` and `1e2` are not whole numbers, a key may
appear once per file, a huge amount names its row and column, and files in Excel's encodings are
read (or refused with a sentence).
"""

from __future__ import annotations

import codecs

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inventory.models import Listing, Sku, StockLevel, StockMovement, Supplier, SupplierItem
from logistics.models import CarrierRule
from orders.models import Order
from tests.factories import (
    CarrierServiceFactory,
    ShopFactory,
    SkuFactory,
    StockLevelFactory,
    SupplierFactory,
    WarehouseFactory,
)
from tests.inventory.helpers import _format_index, admin_import_confirm, admin_url, messages_of

pytestmark = pytest.mark.django_db


def upload(client, model, content: bytes, filename: str = "upload.csv"):
    """POST a file to the model's import page (the preview step), as a browser would."""
    url = admin_url(model, "import")
    page = client.get(url)
    assert page.status_code == 200
    return client.post(
        url,
        {
            "format": _format_index(page.context["form"]),
            "resource": "0",
            "import_file": SimpleUploadedFile(filename, content, "text/csv"),
        },
    )


def problems(preview) -> dict[int, dict[str, list[str]]]:
    result = preview.context.get("result")
    assert result is not None, preview.context["form"].errors
    return {row.number: row.error_dict for row in result.invalid_rows}


def assert_no_traceback(response):
    html = response.content.decode()
    assert "Traceback" not in html
    assert ".py" not in html
    assert "File &quot;" not in html


@pytest.fixture
def place(tenant_a):
    shop = ShopFactory(tenant=tenant_a, name="Main shop")
    mug = SkuFactory(tenant=tenant_a, code="MUG", name="Mug", weight_grams=300)
    cap = SkuFactory(tenant=tenant_a, code="CAP", name="Cap")
    main = WarehouseFactory(tenant=tenant_a, code="MAIN")
    supplier = SupplierFactory(tenant=tenant_a, code="ACME")
    service = CarrierServiceFactory(tenant=tenant_a, code="ground")
    StockLevelFactory(tenant=tenant_a, sku=mug, warehouse=main, on_hand=40, reserved=0)
    return {"shop": shop, "mug": mug, "cap": cap, "supplier": supplier, "service": service}


# (model, header, a good row, the column holding a whole number in it)
def resource_files(place):
    carrier = place["service"].carrier.code
    return [
        (Sku, "code,name,weight_grams", "NEW,New thing,{}", "weight_grams"),
        (StockLevel, "sku,warehouse,on_hand", "CAP,MAIN,{}", "on_hand"),
        (Listing, "shop,sku,buffer_units", "Main shop,CAP,{}", "buffer_units"),
        (Supplier, "code,name,lead_time_days", "ZED,Zed,{}", "lead_time_days"),
        (SupplierItem, "supplier,sku,supplier_item_code,min_order_quantity", "ACME,CAP,AC-1,{}",
         "min_order_quantity"),
        (CarrierRule, "name,carrier,service,priority", f"Rule,{carrier},ground,{{}}", "priority"),
    ]  # fmt: skip


def snapshot(model) -> list:
    return sorted(model._base_manager.values_list(flat=False))


@pytest.mark.parametrize("cell", ["", "10.9", "1e2", "-3", "12 units", "99999999999"])
def test_every_resource_refuses_a_number_it_would_have_changed(client_a, place, cell):
    for model, header, good, column in resource_files(place):
        before = snapshot(model), StockMovement._base_manager.count()
        text = f"{header}\n{good.format(cell)}\n"

        preview = upload(client_a, model, text.encode())

        assert problems(preview) == {1: {column: problems(preview)[1][column]}}, model
        message = " ".join(problems(preview)[1][column])
        assert cell.strip() in message or "blank" in message, (model, message)
        assert preview.context.get("confirm_form") is None
        assert (snapshot(model), StockMovement._base_manager.count()) == before, model
        assert_no_traceback(preview)


def test_a_blank_stock_count_is_an_error_not_a_count_of_zero(client_a, place):
    preview = upload(client_a, StockLevel, b"sku,warehouse,on_hand\nMUG,MAIN,\n")

    assert problems(preview) == {1: {"on_hand": ["is blank; write a whole number (0 for none)."]}}
    assert StockLevel._base_manager.get(sku=place["mug"]).on_hand == 40
    assert not StockMovement._base_manager.exists()


def test_whole_numbers_written_as_such_are_imported(client_a, place):
    response = admin_import_confirm(
        client_a,
        Sku,
        upload(client_a, Sku, b"code,name,weight_grams,is_active\nMUG,Mug, 250 ,yes\n"),
    )

    assert response.status_code == 302, messages_of(response)
    place["mug"].refresh_from_db()
    assert (place["mug"].weight_grams, place["mug"].is_active) == (250, True)


def test_a_yes_no_column_refuses_what_is_neither(client_a, place):
    preview = upload(client_a, Sku, b"code,name,is_active\nMUG,Mug,maybe\n")

    message = "“maybe” is not yes or no; write 1 (yes) or 0 (no)."
    assert problems(preview) == {1: {"is_active": [message]}}


@pytest.mark.parametrize(
    ("model", "text", "column"),
    [
        (Sku, "code,name\nMUG,Mug one\nCAP,Cap\nMUG,Mug two\n", "code"),
        (StockLevel, "sku,warehouse,on_hand\nMUG,MAIN,5\nMUG,MAIN,7\n", "sku"),
        (Supplier, "code,name\nZED,Zed\n ZED ,Zed again\n", "code"),
        (Listing, "shop,sku\nMain shop,CAP\nMain shop,CAP\n", "shop"),
    ],
)
def test_a_key_repeated_in_one_file_is_an_error_and_nothing_is_written(
    client_a, place, model, text, column
):
    before = snapshot(model)

    preview = upload(client_a, model, text.encode())

    errors = problems(preview)
    assert list(errors) == [len(text.strip().splitlines()) - 1]
    (message,) = errors[max(errors)][column]
    assert "is already on row 1 of this file" in message
    assert snapshot(model) == before
    assert StockLevel._base_manager.get(sku=place["mug"]).on_hand == 40


def test_an_order_with_a_huge_unit_price_names_its_row_and_column(client_a, place, tenant_a):
    ShopFactory(tenant=tenant_a, name="Alpha CSV", platform="manual", platform_shop_id="")
    text = (
        "shop,order_id,recipient_name,address_line1,city,state,postal_code,sku,quantity,unit_price\n"
        "Alpha CSV,M-1,Jamie,1 Market St,San Francisco,CA,94105,MUG,1,10.00\n"
        "Alpha CSV,M-2,Jamie,1 Market St,San Francisco,CA,94105,MUG,1,1e30\n"
        "Alpha CSV,M-3,Jamie,1 Market St,San Francisco,CA,94105,MUG,1,1e2\n"
    )

    preview = upload(client_a, Order, text.encode())

    errors = problems(preview)
    assert set(errors) == {2, 3}
    assert "“1e30” is not written as a plain number" in errors[2]["unit_price"][0]
    assert "“1e2” is not written as a plain number" in errors[3]["unit_price"][0]
    assert_no_traceback(preview)
    assert not Order._base_manager.exists()


def test_a_huge_cost_on_a_sku_is_a_row_error(client_a, place):
    preview = upload(client_a, Sku, b"code,name,cost\nMUG,Mug,1e30\nCAP,Cap,12345678901.5\n")

    errors = problems(preview)
    assert "“1e30” is not written as a plain number" in errors[1]["cost"][0]
    assert "is too large" in errors[2]["cost"][0]
    assert_no_traceback(preview)


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("cp1252", b""),  # Excel's "CSV (Comma delimited)" on Western Windows
        ("utf-16-le", codecs.BOM_UTF16_LE),  # "Unicode Text"
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-8", codecs.BOM_UTF8),  # "CSV UTF-8"
    ],
)
def test_excel_encodings_are_read(client_a, place, encoding, bom):
    content = bom + "code,name\nCAFE,Café crème — 12€\n".encode(encoding)

    preview = upload(client_a, Sku, content)
    response = admin_import_confirm(client_a, Sku, preview)

    assert response.status_code == 302, messages_of(response)
    assert Sku._base_manager.get(code="CAFE").name == "Café crème — 12€"


@pytest.mark.parametrize(
    "content",
    [
        "code,name\nX,Ünïcödé\n".encode("utf-16-le"),  # UTF-16 without its byte-order mark
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\x81\x8d\x8f",  # a workbook
        b"code,name\nX,\x81\x8d\x90\n",  # bytes no encoding we read maps to text
    ],
)
def test_a_file_that_is_not_text_is_refused_with_a_sentence(client_a, place, content):
    before = snapshot(Sku)

    preview = upload(client_a, Sku, content)

    form_errors = preview.context["form"].errors["import_file"]
    assert "CSV UTF-8" in form_errors[0]
    assert preview.context.get("confirm_form") is None
    assert_no_traceback(preview)
    assert snapshot(Sku) == before


def test_a_file_without_its_key_column_says_which_column(client_a, place):
    # The background job said so already; the preview in the request said "an unexpected
    # error, which was logged for the operator".
    before = snapshot(Sku)

    preview = upload(client_a, Sku, b"name\nfoo\n")

    result = preview.context["result"]
    assert [str(e.error) for e in result.base_errors] == [
        "The file has no column named code (what identifies each row); the first line must "
        "name the columns."
    ]
    assert "no column named code" in preview.content.decode()
    assert preview.context.get("confirm_form") is None
    assert_no_traceback(preview)
    assert snapshot(Sku) == before


@pytest.mark.parametrize("digits", [25, 5000])
def test_a_whole_number_of_thousands_of_digits_is_too_large_not_a_python_error(
    client_a, place, digits
):
    for model, header, good, column in resource_files(place):
        preview = upload(client_a, model, f"{header}\n{good.format('9' * digits)}\n".encode())

        (message,) = problems(preview)[1][column]
        assert "is too large" in message, (model, message)
        assert "limit" not in message and len(message) < 100, (model, message)
        assert_no_traceback(preview)


def test_an_order_quantity_of_thousands_of_digits_is_too_large(client_a, place):
    text = (
        "shop,order_id,recipient_name,address_line1,city,state,postal_code,sku,quantity,"
        f"unit_price\nMain shop,M-1,Jamie,1 Market St,San Francisco,CA,94105,MUG,{'9' * 5000},1\n"
    )

    preview = upload(client_a, Order, text.encode())

    assert problems(preview)[1]["quantity"] == ["is too large"]
    assert_no_traceback(preview)
