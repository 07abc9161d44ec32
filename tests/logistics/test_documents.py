"""Batch documents read back as PDFs: Chinese product names print in an embedded CJK font,
barcodes carry the parcel reference, long slips continue, the merged file is in order."""

import io
import re
from datetime import UTC, datetime

import pytest
from pypdf import PdfReader
from reportlab.graphics.barcode.code128 import Code128

from logistics.documents import (
    ParcelSheet,
    PickRow,
    SlipLine,
    batch_documents_render,
    packing_slips_render,
    pick_list_render,
)
from logistics.labels.drawing import LabelContent, label_pdf, label_zpl

CHINESE_NAME = "蓝牙耳机 无线降噪 运动跑步专用"


def sheet(reference="TK1-W1", **fields) -> ParcelSheet:
    values = {
        "reference": reference,
        "order_number": "577000111",
        "shop_name": "Alpha TikTok 旗舰店",
        "recipient_name": "张伟 Wei Zhang",
        "recipient_lines": ("123 Main Street", "Los Angeles, CA 90012", "US"),
        "lines": (SlipLine(sku="EAR-01", name=CHINESE_NAME, bin="A-3", quantity=2),),
        "buyer_note": "请小心包装 please pack with care",
        "placed_at": datetime(2026, 5, 1, 12, tzinfo=UTC),
        "tracking_number": "9400111899223344556677",
        "carrier_name": "USPS",
        "service_name": "Ground Advantage",
    }
    values.update(fields)
    return ParcelSheet(**values)


def embedded_fonts(reader: PdfReader) -> set[str]:
    """BaseFont names of the fonts embedded (with a font file) in the document."""
    names = set()
    for page in reader.pages:
        fonts = page.get("/Resources", {}).get("/Font", {})
        for font in fonts.values():
            font = font.get_object()
            descriptor = font.get("/FontDescriptor")
            if descriptor is None and "/DescendantFonts" in font:
                descriptor = font["/DescendantFonts"][0].get_object().get("/FontDescriptor")
            descriptor = descriptor.get_object() if descriptor is not None else {}
            if any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")):
                names.add(str(font["/BaseFont"]).replace("-", ""))
    return names


def bar_widths(reader: PdfReader, page_number: int = 0) -> list[list[int]]:
    """Each barcode drawn on the page as its bar/space widths in modules (from the path)."""
    content = reader.pages[page_number].get_contents().get_data().decode("latin-1")
    codes = []
    for block in re.findall(r"cm ((?:[\d.]+ 0 [\d.]+ 1 re )+)f Q", content):
        bars = [tuple(map(int, bar.split()[::2][:2])) for bar in block.strip().split(" re")[:-1]]
        widths, position = [], 0
        for left, width in ((int(bar[0]), int(bar[1])) for bar in bars):
            if left > position:
                widths.append(left - position)  # a space
            widths.append(width)
            position = left + width
        codes.append(widths)
    return codes


def code128_widths(value: str) -> list[int]:
    code = Code128(value, quiet=0)
    code.validate()
    code.encode()
    code.decompose()
    return [ord(symbol) - (64 if symbol.isupper() else 96) for symbol in code.decomposed]


def test_a_chinese_packing_slip_prints_in_an_embedded_cjk_font():
    pdf, pages = packing_slips_render(parcels=[sheet()])

    reader = PdfReader(io.BytesIO(pdf))
    assert pages == [1]
    text = reader.pages[0].extract_text()
    assert CHINESE_NAME.replace(" ", "") in text.replace(" ", "")
    assert "张伟 Wei Zhang" in text
    assert "请小心包装" in text
    assert "EAR-01" in text and "A-3" in text
    fonts = embedded_fonts(reader)
    assert fonts and all("NotoSansCJK" in name for name in fonts), fonts


def test_the_slip_barcode_encodes_the_parcel_reference():
    pdf, _ = packing_slips_render(parcels=[sheet(reference="TK4711-W2")])

    assert bar_widths(PdfReader(io.BytesIO(pdf))) == [code128_widths("TK4711-W2")]


def test_a_slip_with_many_lines_continues_on_a_second_page():
    lines = tuple(
        SlipLine(sku=f"SKU-{n:02d}", name=f"商品 {n} with a long name", bin=f"B-{n}", quantity=1)
        for n in range(40)
    )
    pdf, pages = packing_slips_render(parcels=[sheet(lines=lines), sheet(reference="TK2-W1")])

    reader = PdfReader(io.BytesIO(pdf))
    assert pages[0] >= 2 and pages[1] == 1
    assert len(reader.pages) == sum(pages)
    first, second = (reader.pages[n].extract_text() for n in range(2))
    assert "SKU-00" in first and "SKU-39" in "".join(
        reader.pages[n].extract_text() for n in range(pages[0])
    )
    assert "page 1 of" in first and "page 2 of" in second
    # The buyer note is printed once, on the slip's last page.
    all_text = [reader.pages[n].extract_text() for n in range(pages[0])]
    assert sum("请小心包装" in text for text in all_text) == 1
    assert "请小心包装" in all_text[-1]


def test_the_slip_names_the_carrier_service_and_tracking_number():
    pdf, _ = packing_slips_render(parcels=[sheet()])

    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "USPS Ground Advantage" in text and "9400111899223344556677" in text
    width, height = (float(value) for value in PdfReader(io.BytesIO(pdf)).pages[0].mediabox[2:])
    assert (width, height) == (288.0, 432.0)  # 4 x 6 in, like the labels


def test_the_pick_list_is_the_seller_editable_template_with_chinese_names():
    rows = [
        PickRow(
            warehouse="Main", bin="A-2", sku="EAR-01", name=CHINESE_NAME, quantity=7, parcels=5
        ),
        PickRow(warehouse="Main", bin="A-10", sku="CAP-02", name="Cap", quantity=3, parcels=3),
    ]
    pdf = pick_list_render(rows=rows, title="Label batch 9", parcels=8)

    reader = PdfReader(io.BytesIO(pdf))
    text = reader.pages[0].extract_text()
    assert "Pick list" in text and "Label batch 9" in text and "10 units" in text
    assert text.index("EAR-01") < text.index("CAP-02")  # rows in the order given
    assert "蓝牙耳机" in text.replace(" ", "")
    # The embedded font is the small cut of Noto Sans CJK the list brings along (@font-face).
    fonts = embedded_fonts(reader)
    assert fonts and all("NotoSansCJKSCtkerp" in name for name in fonts), fonts


def source_label(tracking_number: str) -> LabelContent:
    return LabelContent(
        carrier="USPS",
        service="Ground Advantage",
        tracking_number=tracking_number,
        sender=["Alpha warehouse", "Reno, NV 89502"],
        recipient=["WEI ZHANG", "LOS ANGELES CA 90012"],
    )


@pytest.mark.parametrize("separate", [False, True])
def test_the_batch_document_is_pick_list_then_label_and_slip_per_parcel(separate):
    parcels = [
        sheet(
            reference="TK1-W1",
            tracking_number="9400100000000000000011",
            label_pdf=label_pdf(source_label("9400100000000000000011")),
        ),
        sheet(
            reference="TK2-W1",
            tracking_number="9400100000000000000028",
            label_pdf=label_pdf(source_label("9400100000000000000028")),
        ),
    ]
    rows = [PickRow(warehouse="Main", bin="A-3", sku="EAR-01", name="x", quantity=4, parcels=2)]

    documents = batch_documents_render(
        parcels=parcels, pick_rows=rows, title="Label batch 3", separate=separate
    )

    main = [page.extract_text() for page in PdfReader(io.BytesIO(documents.document)).pages]
    if separate:
        slips = [page.extract_text() for page in PdfReader(io.BytesIO(documents.slips)).pages]
        assert len(main) == 2 and len(slips) == 3
        assert "9400 1000 0000 0000 0000 11" in main[0] and "0000 28" in main[1]
        assert "Pick list" in slips[0]
        assert "PACKING SLIP" in slips[1] and "TK1-W1" in slips[1]
        assert "TK2-W1" in slips[2]
    else:
        assert documents.slips is None
        assert len(main) == 5
        assert "Pick list" in main[0]
        assert "0000 11" in main[1] and "PACKING SLIP" in main[2] and "TK1-W1" in main[2]
        assert "0000 28" in main[3] and "PACKING SLIP" in main[4] and "TK2-W1" in main[4]
    assert documents.pages == 5 and documents.zpl is None
    assert set(documents.timings) >= {"packing_slips", "pick_list", "merge"}


def test_zpl_labels_go_to_one_zpl_file_in_the_same_order():
    first = label_zpl(source_label("9400100000000000000011")).encode()
    second = label_zpl(source_label("9400100000000000000028")).encode()
    parcels = [
        sheet(reference="TK1-W1", label_zpl=first),
        sheet(reference="TK2-W1", label_pdf=label_pdf(source_label("9400100000000000000035"))),
        sheet(reference="TK3-W1", label_zpl=second),
    ]

    documents = batch_documents_render(parcels=parcels, pick_rows=[], title="Label batch 4")

    pages = [page.extract_text() for page in PdfReader(io.BytesIO(documents.document)).pages]
    # Pick list, slip 1 (its label is ZPL), label 2, slip 2, slip 3.
    assert len(pages) == 5
    assert "TK1-W1" in pages[1] and "0000 35" in pages[2] and "TK3-W1" in pages[4]
    zpl = documents.zpl.decode()
    assert zpl.count("^XA") == 2
    assert zpl.index("9400100000000000000011") < zpl.index("9400100000000000000028")
