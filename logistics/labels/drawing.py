"""A 4x6-inch shipping label, drawn with ReportLab (PDF) or written as ZPL for thermal printers.

The layout is fixed, so ReportLab draws it directly (no HTML): about a millisecond a label. The
same drawing serves the manual source (a label for a tracking number typed in) and the
sandboxes, which stand for carriers' and platforms' label services and must hand back real
documents.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from reportlab.graphics.barcode import code128
from reportlab.lib.units import inch
from reportlab.pdfgen import canvas

from logistics.pdf_fonts import reportlab_font

WIDTH, HEIGHT = 4 * inch, 6 * inch
MARGIN = 0.15 * inch
# ZPL at 203 dpi, the common thermal-printer resolution: 4 x 6 inches in dots.
ZPL_DOTS_WIDE, ZPL_DOTS_HIGH = 812, 1218


@dataclass(frozen=True, slots=True)
class LabelContent:
    """What a label shows. `barcode_data` is what the barcode encodes (a USPS label carries the
    IMpb routing prefix before the tracking number); the tracking number is printed below it."""

    carrier: str  # shown large: "USPS", "UPS"...
    service: str  # "Ground Advantage"
    tracking_number: str
    sender: list[str]
    recipient: list[str]
    barcode_data: str = ""
    reference: str = ""
    banner: str = ""  # a big service letter or word in the top corner ("G", "P", "1")
    footnote: str = ""  # e.g. "SANDBOX - NOT FOR MAILING"
    extra_lines: list[str] = field(default_factory=list)


def grouped(number: str) -> str:
    """A tracking number in groups of four, as carriers print it."""
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def needs_cjk_font(text: str) -> bool:
    """True when Helvetica (PDF's standard font, WinAnsi encoding) cannot print `text`."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return True
    return False


def _texts(content: LabelContent) -> list[str]:
    """The label's strings that come from people (names, addresses, services, references)."""
    return [
        content.carrier,
        content.service,
        content.reference,
        content.footnote,
        *content.sender,
        *content.recipient,
        *content.extra_lines,
    ]


@contextmanager
def label_font(*contents: LabelContent) -> Iterator[str | None]:
    """The font for the labels' text Helvetica cannot print (Chinese names, addresses): the
    CJK font of `logistics.pdf_fonts`, registered with ReportLab for the block (draw and save
    the document inside it); None when Helvetica prints everything, so a Latin label embeds
    no font at all."""
    wanted = "".join(
        text for content in contents for text in _texts(content) if needs_cjk_font(text)
    )
    if not wanted:
        yield None
        return
    with reportlab_font(wanted) as font:
        yield font


class _Writer:
    """Strings on the label: Helvetica where it prints them, else the CJK font (one face: its
    bold is filled and stroked)."""

    def __init__(self, c: canvas.Canvas, cjk_font: str | None):
        self.c = c
        self.cjk_font = cjk_font

    def _font(self, text: str, bold: bool) -> tuple[str, int]:
        if not needs_cjk_font(text):
            return ("Helvetica-Bold" if bold else "Helvetica"), 0
        if self.cjk_font is None:
            raise ValueError(f"{text!r} needs the CJK font: draw the label inside label_font()")
        return self.cjk_font, 2 if bold else 0

    def fit(self, text: str, size: float, width: float, *, bold: bool = False) -> str:
        """`text` cut to fit `width` points (long addresses must not run off the label)."""
        font, _ = self._font(text, bold)
        if self.c.stringWidth(text, font, size) <= width:
            return text
        while text and self.c.stringWidth(text + "…", font, size) > width:
            text = text[:-1]
        return text + "…"

    def text(self, x: float, y: float, text: str, size: float, *, bold=False, centred=False):
        font, mode = self._font(text, bold)
        self.c.setFont(font, size)
        if mode:
            self.c.saveState()
            self.c.setLineWidth(size / 40)
        if centred:
            self.c.drawCentredString(x, y, text, mode=mode or None)
        else:
            self.c.drawString(x, y, text, mode=mode or None)
        if mode:
            self.c.restoreState()


def label_pdf(content: LabelContent) -> bytes:
    """One 4x6 page: carrier and service banner, sender, recipient, Code 128 of the barcode
    data with the tracking number under it, and the parcel reference."""
    buffer = io.BytesIO()
    with label_font(content) as cjk_font:
        c = canvas.Canvas(buffer, pagesize=(WIDTH, HEIGHT))
        c.setTitle(f"{content.carrier} {content.tracking_number}")
        draw_label(c, content, cjk_font=cjk_font)
        c.showPage()
        c.save()
    return buffer.getvalue()


def draw_label(c: canvas.Canvas, content: LabelContent, *, cjk_font: str | None = None) -> None:
    """Draw the label in the 4x6-inch box at the canvas origin (the caller ends the page).
    Text Helvetica cannot print needs `cjk_font`, from `label_font(content)`."""
    pen = _Writer(c, cjk_font)
    inner = WIDTH - 2 * MARGIN
    top = HEIGHT - MARGIN

    # Service banner.
    if content.banner:
        c.setLineWidth(2)
        c.rect(MARGIN, top - 0.8 * inch, 0.8 * inch, 0.8 * inch)
        pen.text(
            MARGIN + 0.4 * inch, top - 0.62 * inch, content.banner[:2], 40, bold=True, centred=True
        )
    left = MARGIN + (0.95 * inch if content.banner else 0)
    pen.text(left, top - 0.35 * inch, content.carrier.upper(), 20, bold=True)
    service = content.service.upper()
    pen.text(
        left,
        top - 0.62 * inch,
        pen.fit(service, 13, WIDTH - MARGIN - left, bold=True),
        13,
        bold=True,
    )
    y = top - 0.95 * inch
    c.setLineWidth(1.5)
    c.line(MARGIN, y, WIDTH - MARGIN, y)

    # Sender, small.
    y -= 0.18 * inch
    for line in content.sender[:4]:
        pen.text(MARGIN, y, pen.fit(line, 8, inner), 8)
        y -= 0.13 * inch

    # Recipient, large.
    y -= 0.12 * inch
    pen.text(MARGIN, y, "SHIP TO:", 9, bold=True)
    y -= 0.22 * inch
    for line in content.recipient[:5]:
        pen.text(MARGIN + 0.25 * inch, y, pen.fit(line, 13, inner, bold=True), 13, bold=True)
        y -= 0.21 * inch
    for line in content.extra_lines[:2]:
        pen.text(MARGIN, y, pen.fit(line, 8, inner), 8)
        y -= 0.13 * inch

    # Barcode band.
    band_top = 2.55 * inch
    c.setLineWidth(3)
    c.line(MARGIN, band_top, WIDTH - MARGIN, band_top)
    pen.text(
        WIDTH / 2, band_top - 0.22 * inch, f"{content.carrier.upper()} TRACKING #", 10,
        bold=True, centred=True,
    )  # fmt: skip
    data = content.barcode_data or content.tracking_number
    bar_width = 1.2
    barcode = code128.Code128(data, barHeight=1.05 * inch, barWidth=bar_width, quiet=False)
    if barcode.width > inner:
        barcode = code128.Code128(
            data, barHeight=1.05 * inch, barWidth=bar_width * inner / barcode.width, quiet=False
        )
    barcode.drawOn(c, (WIDTH - barcode.width) / 2, band_top - 1.45 * inch)
    pen.text(
        WIDTH / 2, band_top - 1.7 * inch, grouped(content.tracking_number), 12,
        bold=True, centred=True,
    )  # fmt: skip
    c.setLineWidth(3)
    c.line(MARGIN, 0.7 * inch, WIDTH - MARGIN, 0.7 * inch)

    if content.reference:
        pen.text(MARGIN, 0.5 * inch, pen.fit(f"Ref: {content.reference}", 8, inner), 8)
    if content.footnote:
        pen.text(MARGIN, 0.3 * inch, content.footnote, 8, bold=True)


def _zpl_text(text: str) -> str:
    # ^ and ~ start ZPL commands; a field must not contain them.
    return text.replace("^", " ").replace("~", " ")


def label_zpl(content: LabelContent) -> str:
    """The same label as ZPL II for a 203 dpi 4x6 thermal printer (UTF-8 via ^CI28)."""
    lines = [
        "^XA",
        "^CI28",
        f"^PW{ZPL_DOTS_WIDE}",
        f"^LL{ZPL_DOTS_HIGH}",
        "^LH0,0",
        f"^FO30,30^A0N,50,50^FD{_zpl_text(content.carrier.upper())}^FS",
        f"^FO30,90^A0N,32,32^FD{_zpl_text(content.service.upper())}^FS",
    ]
    if content.banner:
        lines.append("^FO640,20^GB150,150,6^FS")
        lines.append(f"^FO670,45^A0N,110,110^FD{_zpl_text(content.banner[:2])}^FS")
    lines.append("^FO20,190^GB772,4,4^FS")
    y = 210
    for line in content.sender[:4]:
        lines.append(f"^FO30,{y}^A0N,22,22^FD{_zpl_text(line)}^FS")
        y += 26
    y += 20
    lines.append(f"^FO30,{y}^A0N,24,24^FDSHIP TO:^FS")
    y += 36
    for line in content.recipient[:5]:
        lines.append(f"^FO80,{y}^A0N,36,36^FD{_zpl_text(line)}^FS")
        y += 42
    data = content.barcode_data or content.tracking_number
    lines += [
        "^FO20,720^GB772,6,6^FS",
        f"^FO30,740^A0N,28,28^FD{_zpl_text(content.carrier.upper())} TRACKING #^FS",
        # Code 128, 220 dots high, no interpretation line (the grouped number follows).
        f"^FO40,790^BY2,3,220^BCN,220,N,N,N^FD{_zpl_text(data)}^FS",
        f"^FO40,1030^A0N,34,34^FD{grouped(content.tracking_number)}^FS",
        "^FO20,1090^GB772,6,6^FS",
    ]
    if content.reference:
        lines.append(f"^FO30,1110^A0N,22,22^FDRef: {_zpl_text(content.reference)}^FS")
    if content.footnote:
        lines.append(f"^FO30,1150^A0N,22,22^FD{_zpl_text(content.footnote)}^FS")
    lines.append("^XZ")
    return "\n".join(lines) + "\n"
