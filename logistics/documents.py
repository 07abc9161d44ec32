"""Batch documents: packing slips, the pick list, and the one merged PDF (plus a ZPL file for
thermal-printer labels) a label batch prints.

Everything here works on plain data (`ParcelSheet`, `PickRow`), never on models, so rendering is
the same whichever door asked for it and can be measured alone (bench/labels.py).

Which tool draws what, measured on this 2-core machine (bench/labels.py prints the figures):
- Packing slips: ReportLab on a fixed 4x6 in layout (500 slips with a Code 128 barcode each in
  well under a second). WeasyPrint renders the same 500 slips from HTML in tens of seconds and
  several hundred MB, far over the 3 s a 500-parcel batch may take.
- Labels: as their source supplied them (logistics.labels), PDF or ZPL.
- The pick list: WeasyPrint from `templates/pdf/pick_list.html`, which a seller may edit (page
  size, columns, a logo): it is a few pages whatever the batch size.
- Merging: pikepdf (qpdf), page by page, in pick-path order; the slips share one font
  subset.
Every page is 4 x 6 in (a thermal label printer's size) unless a template says otherwise.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from logistics.pdf_fonts import pdf_font_family, reportlab_font, truetype_font

INCH = 72.0
PAGE_WIDTH, PAGE_HEIGHT = 4 * INCH, 6 * INCH
MARGIN = 14.0


@dataclass(frozen=True, slots=True)
class SlipLine:
    """One SKU of a parcel as the packer sees it."""

    sku: str
    name: str
    bin: str
    quantity: int


@dataclass(frozen=True, slots=True)
class ParcelSheet:
    """What is printed for one parcel: its label and its packing slip."""

    reference: str
    order_number: str
    shop_name: str
    recipient_name: str
    recipient_lines: tuple[str, ...]
    lines: tuple[SlipLine, ...]
    buyer_note: str = ""
    placed_at: datetime | None = None
    tracking_number: str = ""
    carrier_name: str = ""
    service_name: str = ""
    #: The parcel's label as its source supplied it: a PDF page, or ZPL for a thermal printer
    #: (which goes to the batch's ZPL file, not into the PDF).
    label_pdf: bytes | None = None
    label_zpl: bytes | None = None


@dataclass(frozen=True, slots=True)
class PickRow:
    """One stop of the pick path: a SKU in a bin, and how many units the batch needs."""

    warehouse: str
    bin: str
    sku: str
    name: str
    quantity: int
    parcels: int


@dataclass(slots=True)
class BatchDocuments:
    """The rendered files of a batch: `document` always; `slips` when labels and slips are two
    files; `zpl` when some labels are ZPL. `pages` counts the PDF pages of every file together;
    `timings` are seconds per stage."""

    document: bytes
    slips: bytes | None
    zpl: bytes | None
    pages: int
    timings: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------- drawing helpers


class _Pen:
    """Text on a ReportLab canvas in the one CJK-capable font, with wrapping that also breaks
    between Chinese characters (which have no spaces). Character widths are cached: a slip
    measures thousands of strings, and ReportLab does not kern, so a width is a plain sum."""

    def __init__(self, canvas, font: str):
        from reportlab.pdfbase.pdfmetrics import getFont

        self.canvas = canvas
        self.font = font
        self._face = getFont(font)
        self._widths: dict[str, float] = {}  # character -> width at size 1

    def _char_width(self, character: str) -> float:
        width = self._widths.get(character)
        if width is None:
            width = self._widths[character] = self._face.stringWidth(character, 1.0)
        return width

    def width(self, text: str, size: float) -> float:
        return sum(map(self._char_width, text)) * size

    def begin_page(self) -> None:
        """Start the page's one text object (one per page instead of one per string)."""
        self._obj = self.canvas.beginText()
        self._bold = False

    def end_page(self) -> None:
        self.canvas.saveState()
        # The one font has no bold face: bold text is filled and stroked with this pen.
        self.canvas.setLineWidth(0.28)
        self.canvas.drawText(self._obj)
        self.canvas.restoreState()
        self.canvas.showPage()

    def text(self, x: float, y: float, text: str, size: float, *, bold=False, right=False):
        if right:
            x -= self.width(text, size)
        obj = self._obj
        obj.setTextOrigin(x, y)
        obj.setFont(self.font, size)
        if bold != self._bold:
            obj.setTextRenderMode(2 if bold else 0)
            self._bold = bold
        obj.textOut(text)

    def fit(self, text: str, size: float, width: float) -> str:
        """`text` cut (with an ellipsis) to fit `width`."""
        if self.width(text, size) <= width:
            return text
        room = width / size - self._char_width("…")
        used = 0.0
        for index, character in enumerate(text):
            used += self._char_width(character)
            if used > room:
                return text[:index] + "…"
        return text

    def wrap(self, text: str, size: float, width: float) -> list[str]:
        """Lines of `text` no wider than `width`: break at the last space, or anywhere in a run
        without one (CJK, long codes)."""
        room = width / size
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            start, used, space = 0, 0.0, -1
            index = 0
            while index < len(paragraph):
                character = paragraph[index]
                used += self._char_width(character)
                if character == " ":
                    space = index
                if used > room and index > start:
                    end = space if space > start else index
                    lines.append(paragraph[start:end].rstrip())
                    start = end + 1 if end == space else end
                    index, used, space = start, 0.0, -1
                    continue
                index += 1
            lines.append(paragraph[start:])
        return lines


def _barcode(canvas, value: str, *, x: float, y: float, width: float, height: float):
    """A Code 128 barcode of `value` fitted into the box (x, y, width, height), centred.

    ReportLab encodes it; the bars are written as one path in module units under a scaling
    matrix, which is several times faster than ReportLab's rectangle per bar (a batch draws a
    thousand barcodes).
    """
    from reportlab.graphics.barcode.code128 import Code128

    code = Code128(value, barWidth=1.0, quiet=0)
    code.validate()
    code.encode()
    code.decompose()
    bars: list[str] = []
    left = 0
    for symbol in code.decomposed:
        if "A" <= symbol <= "Z":
            bars.append(f"{left} 0 {ord(symbol) - 64} 1 re")
            left += ord(symbol) - 64
        elif "a" <= symbol <= "z":
            left += ord(symbol) - 96
    if not left:
        return
    module = min(1.6, width / left)
    origin = x + (width - left * module) / 2
    canvas.addLiteral(
        f"q 0 g {module:.4f} 0 0 {height:.2f} {origin:.2f} {y:.2f} cm {' '.join(bars)} f Q"
    )


def _sheet_text(parcels: Iterable[ParcelSheet]) -> str:
    """Every character the slips of these parcels print (for the font)."""
    parts: list[str] = []
    for parcel in parcels:
        parts += [parcel.shop_name, parcel.recipient_name, parcel.buyer_note, parcel.service_name]
        parts += list(parcel.recipient_lines)
        parts += [line.name + line.sku + line.bin for line in parcel.lines]
    return "".join(parts)


# ------------------------------------------------------------------------------ packing slips

SLIP_COLUMNS = (("Bin", 44.0), ("SKU", 62.0), ("Item", 0.0), ("Qty", 24.0))  # 0: the rest


def _slip_page(pen: _Pen, parcel: ParcelSheet, *, page: int, pages: int, rows, note_lines):
    canvas = pen.canvas
    top = PAGE_HEIGHT - MARGIN
    pen.text(MARGIN, top - 10, pen.fit(parcel.shop_name, 11, 150), 11, bold=True)
    pen.text(MARGIN, top - 24, "PACKING SLIP", 7)
    pen.text(MARGIN, top - 36, pen.fit(f"Order {parcel.order_number}", 8, 140), 8)
    if parcel.placed_at is not None:
        pen.text(MARGIN, top - 47, f"Placed {parcel.placed_at:%Y-%m-%d}", 8)
    _barcode(
        canvas, parcel.reference, x=PAGE_WIDTH - MARGIN - 118, y=top - 40, width=118, height=36
    )
    pen.text(PAGE_WIDTH - MARGIN, top - 50, parcel.reference, 8, right=True)

    y = top - 66
    pen.text(MARGIN, y, "SHIP TO", 6.5)
    y -= 12
    pen.text(MARGIN, y, pen.fit(parcel.recipient_name, 10, PAGE_WIDTH - 2 * MARGIN), 10, bold=True)
    for line in parcel.recipient_lines[:4]:
        y -= 10.5
        pen.text(MARGIN, y, pen.fit(line, 8.5, PAGE_WIDTH - 2 * MARGIN), 8.5)

    y -= 16
    canvas.setLineWidth(0.6)
    canvas.line(MARGIN, y + 9, PAGE_WIDTH - MARGIN, y + 9)
    x = MARGIN
    for title, width in _slip_columns():
        right = title == "Qty"
        pen.text(x + width if right else x, y, title, 7, bold=True, right=right)
        x += width
    canvas.line(MARGIN, y - 4, PAGE_WIDTH - MARGIN, y - 4)
    y -= 15
    for line, name_lines in rows:
        x = MARGIN
        columns = dict(_slip_columns())
        pen.text(x, y, pen.fit(line.bin or "—", 8, columns["Bin"] - 4), 8, bold=True)
        x += columns["Bin"]
        pen.text(x, y, pen.fit(line.sku, 8, columns["SKU"] - 4), 8)
        x += columns["SKU"]
        for number, text in enumerate(name_lines):
            pen.text(x, y - number * 9.5, text, 8)
        x += columns["Item"]
        pen.text(x + columns["Qty"], y, str(line.quantity), 9, bold=True, right=True)
        y -= 9.5 * len(name_lines) + 4

    if note_lines:
        box_top = MARGIN + 16 + 9.5 * len(note_lines) + 12
        canvas.setLineWidth(0.6)
        canvas.rect(MARGIN, MARGIN + 14, PAGE_WIDTH - 2 * MARGIN, box_top - MARGIN - 14)
        pen.text(MARGIN + 4, box_top - 10, "BUYER NOTE", 6.5, bold=True)
        for number, text in enumerate(note_lines):
            pen.text(MARGIN + 4, box_top - 21 - number * 9.5, text, 8)
    via = " ".join(part for part in (parcel.carrier_name, parcel.service_name) if part)
    footer = "  ·  ".join(
        part
        for part in (
            parcel.reference,
            via,
            parcel.tracking_number,
            f"page {page} of {pages}" if pages > 1 else "",
        )
        if part
    )
    footer = pen.fit(footer, 6.5, PAGE_WIDTH - 2 * MARGIN)
    pen.text(PAGE_WIDTH / 2 - pen.width(footer, 6.5) / 2, MARGIN, footer, 6.5)


def _slip_columns():
    fixed = sum(width for _, width in SLIP_COLUMNS)
    return [(title, width or PAGE_WIDTH - 2 * MARGIN - fixed) for title, width in SLIP_COLUMNS]


def _slip_pages(pen: _Pen, parcel: ParcelSheet) -> list[tuple[list, list[str]]]:
    """The slip's rows split into pages, each page with the note lines it prints (the last)."""
    name_width = dict(_slip_columns())["Item"] - 4
    rows = [(line, pen.wrap(line.name, 8, name_width)[:3]) for line in parcel.lines]
    note_lines = pen.wrap(parcel.buyer_note, 8, PAGE_WIDTH - 2 * MARGIN - 8)[:6]
    if not parcel.buyer_note.strip():
        note_lines = []
    # The table starts under the recipient block and ends above the note box and the footer.
    table_top = PAGE_HEIGHT - MARGIN - 66 - 12 - 10.5 * min(len(parcel.recipient_lines), 4) - 31
    pages: list[tuple[list, list[str]]] = []
    current: list = []
    height = 0.0
    for row in rows:
        row_height = 9.5 * len(row[1]) + 4
        if current and table_top - height - row_height < MARGIN + 24:
            pages.append((current, []))
            current, height = [], 0.0
        current.append(row)
        height += row_height
    note_height = 9.5 * len(note_lines) + 30 if note_lines else 0
    if current and note_lines and table_top - height < MARGIN + 24 + note_height:
        pages.append((current, []))
        current = []
    pages.append((current, note_lines))
    return pages


def packing_slips_render(*, parcels: Sequence[ParcelSheet]) -> tuple[bytes, list[int]]:
    """One PDF with every parcel's packing slip, in the given order; and how many pages each
    parcel's slip took (a parcel with many lines continues on a second page)."""
    from reportlab.pdfgen.canvas import Canvas

    out = io.BytesIO()
    counts: list[int] = []
    with reportlab_font(_sheet_text(parcels)) as font:
        canvas = Canvas(out, pagesize=(PAGE_WIDTH, PAGE_HEIGHT), pageCompression=1)
        canvas.setTitle("Packing slips")
        pen = _Pen(canvas, font)
        for parcel in parcels:
            pages = _slip_pages(pen, parcel)
            for number, (rows, note_lines) in enumerate(pages, start=1):
                pen.begin_page()
                _slip_page(
                    pen, parcel, page=number, pages=len(pages), rows=rows, note_lines=note_lines
                )
                pen.end_page()
            counts.append(len(pages))
        canvas.save()
    return out.getvalue(), counts


def documents_warm() -> None:
    """Load what the first render of a process pays for once (WeasyPrint and its fonts, the CJK
    font's character map, pikepdf): a batch calls it on a thread of its own while it waits on
    the label services, so its documents then render as a warm worker's do."""
    import pikepdf  # noqa: F401 - imported for its load time

    # An empty pick list: the template, its small embedded font (any other text would make
    # WeasyPrint load and subset a whole system font), WeasyPrint's first document.
    pick_list_render(rows=[], title="warm-up", parcels=0)


# -------------------------------------------------------------------------------- pick list


def pick_list_render(*, rows: Sequence[PickRow], title: str, parcels: int) -> bytes:
    """The pick list from the seller-editable template `pdf/pick_list.html` (WeasyPrint): the
    batch's SKU totals in bin order, warehouse by warehouse."""
    import base64

    import weasyprint
    from django.template.loader import render_to_string
    from django.utils.safestring import mark_safe

    warehouses: dict[str, list[PickRow]] = {}
    for row in rows:
        warehouses.setdefault(row.warehouse, []).append(row)
    text = title + "".join(row.warehouse + row.bin + row.sku + row.name for row in rows)
    font = base64.b64encode(truetype_font(text)).decode()
    # Named after the face it is cut from: the PDF's font list says where the glyphs came from.
    family = pdf_font_family().replace(" ", "") + "-tkerp"
    html = render_to_string(
        "pdf/pick_list.html",
        {
            "title": title,
            "parcels": parcels,
            "units": sum(row.quantity for row in rows),
            "warehouses": warehouses,
            # The few glyphs this document needs, as a small embedded font: WeasyPrint would
            # otherwise load and subset the whole CJK collection (seconds and 100+ MB).
            "font_face": mark_safe(
                f'@font-face {{ font-family: "{family}"; src: url(data:font/ttf;base64,{font}); }}'
            ),
            "font_family": mark_safe(f'"{family}", "{pdf_font_family()}"'),
        },
    )
    return weasyprint.HTML(string=html).write_pdf()


# ----------------------------------------------------------------------------------- merging


def label_pdf_readable(data: bytes) -> bool:
    """Whether a label PDF opens and holds a page: a damaged one (cut short, an error page
    behind a PDF header) would otherwise stop the merge of the whole batch, and one without a
    page would leave its parcel's label out."""
    import pikepdf

    try:
        with pikepdf.Pdf.open(io.BytesIO(data)) as document:
            return len(document.pages) > 0
    except (pikepdf.PdfError, ValueError):
        return False


def batch_documents_render(
    *,
    parcels: Sequence[ParcelSheet],
    pick_rows: Sequence[PickRow],
    title: str,
    separate: bool = False,
) -> BatchDocuments:
    """The batch's PDF(s), parcels in the given (pick-path) order.

    Merged: the pick list, then for each parcel its label then its packing slip. Separate: the
    labels alone (for the label printer), and the pick list followed by the slips. ZPL labels
    are sent to a thermal printer as they are: they go to one ZPL file in the same order, and
    the PDF holds those parcels' slips.
    """
    import pikepdf

    timings: dict[str, float] = {}
    started = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal started
        now = time.perf_counter()
        timings[stage] = timings.get(stage, 0.0) + now - started
        started = now

    slips_pdf, slip_counts = packing_slips_render(parcels=parcels)
    lap("packing_slips")
    pick_pdf = pick_list_render(rows=pick_rows, title=title, parcels=len(parcels))
    lap("pick_list")

    # pikepdf (qpdf) copies pages between documents about three times faster than pypdf here;
    # the sources must stay open until the result is saved.
    sources: list = []

    def pages_of(data: bytes):
        document = pikepdf.Pdf.open(io.BytesIO(data))
        sources.append(document)
        return document.pages

    labels_out = pikepdf.Pdf.new()
    slips_out = pikepdf.Pdf.new() if separate else labels_out
    slips_out.pages.extend(pages_of(pick_pdf))
    slips = pages_of(slips_pdf)
    slip_index = 0
    for parcel, slip_count in zip(parcels, slip_counts, strict=True):
        if parcel.label_pdf is not None:
            labels_out.pages.extend(pages_of(parcel.label_pdf))
        slips_out.pages.extend(slips[slip_index : slip_index + slip_count])
        slip_index += slip_count
    labels_out.docinfo["/Title"] = title
    document = io.BytesIO()
    labels_out.save(document)
    pages = len(labels_out.pages)
    slips_file = None
    if separate:
        slips_out.docinfo["/Title"] = f"{title}: pick list and packing slips"
        buffer = io.BytesIO()
        slips_out.save(buffer)
        slips_file = buffer.getvalue()
        pages += len(slips_out.pages)
    for source in sources:
        source.close()
    zpl = [parcel.label_zpl.rstrip() + b"\n" for parcel in parcels if parcel.label_zpl]
    lap("merge")
    return BatchDocuments(
        document=document.getvalue(),
        slips=slips_file,
        zpl=b"".join(zpl) or None,
        pages=pages,
        timings=timings,
    )
