"""A 4x6-inch shipping label, drawn with ReportLab (PDF) or written as ZPL for thermal printers.

The layout is fixed, so ReportLab draws it directly (no HTML): about a millisecond a label. The
same drawing serves the manual source (a label for a tracking number typed in) and the
sandboxes, which stand for carriers' and platforms' label services and must hand back real
documents.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from reportlab.graphics.barcode import code128
from reportlab.lib.units import inch
from reportlab.pdfgen import canvas

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


def _fit(text: str, font: str, size: float, width: float, c: canvas.Canvas) -> str:
    """`text` cut to fit `width` points (long addresses must not run off the label)."""
    if c.stringWidth(text, font, size) <= width:
        return text
    while text and c.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"


def label_pdf(content: LabelContent) -> bytes:
    """One 4x6 page: carrier and service banner, sender, recipient, Code 128 of the barcode
    data with the tracking number under it, and the parcel reference."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=(WIDTH, HEIGHT))
    c.setTitle(f"{content.carrier} {content.tracking_number}")
    draw_label(c, content)
    c.showPage()
    c.save()
    return buffer.getvalue()


def draw_label(c: canvas.Canvas, content: LabelContent) -> None:
    """Draw the label in the 4x6-inch box at the canvas origin (the caller ends the page)."""
    inner = WIDTH - 2 * MARGIN
    top = HEIGHT - MARGIN

    # Service banner.
    if content.banner:
        c.setLineWidth(2)
        c.rect(MARGIN, top - 0.8 * inch, 0.8 * inch, 0.8 * inch)
        c.setFont("Helvetica-Bold", 40)
        c.drawCentredString(MARGIN + 0.4 * inch, top - 0.62 * inch, content.banner[:2])
    left = MARGIN + (0.95 * inch if content.banner else 0)
    c.setFont("Helvetica-Bold", 20)
    c.drawString(left, top - 0.35 * inch, content.carrier.upper())
    c.setFont("Helvetica-Bold", 13)
    c.drawString(
        left,
        top - 0.62 * inch,
        _fit(content.service.upper(), "Helvetica-Bold", 13, WIDTH - MARGIN - left, c),
    )
    y = top - 0.95 * inch
    c.setLineWidth(1.5)
    c.line(MARGIN, y, WIDTH - MARGIN, y)

    # Sender, small.
    c.setFont("Helvetica", 8)
    y -= 0.18 * inch
    for line in content.sender[:4]:
        c.drawString(MARGIN, y, _fit(line, "Helvetica", 8, inner, c))
        y -= 0.13 * inch

    # Recipient, large.
    y -= 0.12 * inch
    c.setFont("Helvetica-Bold", 9)
    c.drawString(MARGIN, y, "SHIP TO:")
    y -= 0.22 * inch
    c.setFont("Helvetica-Bold", 13)
    for line in content.recipient[:5]:
        c.drawString(MARGIN + 0.25 * inch, y, _fit(line, "Helvetica-Bold", 13, inner, c))
        y -= 0.21 * inch
    for line in content.extra_lines[:2]:
        c.setFont("Helvetica", 8)
        c.drawString(MARGIN, y, _fit(line, "Helvetica", 8, inner, c))
        y -= 0.13 * inch

    # Barcode band.
    band_top = 2.55 * inch
    c.setLineWidth(3)
    c.line(MARGIN, band_top, WIDTH - MARGIN, band_top)
    c.setFont("Helvetica-Bold", 10)
    c.drawCentredString(WIDTH / 2, band_top - 0.22 * inch, f"{content.carrier.upper()} TRACKING #")
    data = content.barcode_data or content.tracking_number
    bar_width = 1.2
    barcode = code128.Code128(data, barHeight=1.05 * inch, barWidth=bar_width, quiet=False)
    if barcode.width > inner:
        barcode = code128.Code128(
            data, barHeight=1.05 * inch, barWidth=bar_width * inner / barcode.width, quiet=False
        )
    barcode.drawOn(c, (WIDTH - barcode.width) / 2, band_top - 1.45 * inch)
    c.setFont("Helvetica-Bold", 12)
    c.drawCentredString(WIDTH / 2, band_top - 1.7 * inch, grouped(content.tracking_number))
    c.setLineWidth(3)
    c.line(MARGIN, 0.7 * inch, WIDTH - MARGIN, 0.7 * inch)

    c.setFont("Helvetica", 8)
    if content.reference:
        c.drawString(MARGIN, 0.5 * inch, f"Ref: {content.reference}")
    if content.footnote:
        c.setFont("Helvetica-Bold", 8)
        c.drawString(MARGIN, 0.3 * inch, content.footnote)


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
