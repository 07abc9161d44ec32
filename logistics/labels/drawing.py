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
from functools import lru_cache

from reportlab.graphics.barcode import code128
from reportlab.lib.units import inch
from reportlab.pdfbase.pdfmetrics import stringWidth
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


# --- the same label, stamped: for label services that sell hundreds a minute ---------------------
#
# `label_pdf` builds a ReportLab document per label (about a millisecond, two with a CJK font). A
# label service printing for a whole batch (the label API sandbox) stamps instead: the parts of
# the page that only depend on the service (banner, rules, headings, footnote) are written once
# per service as PDF drawing operators, and each label adds its own text and Code 128 bars in
# Helvetica (a standard font: nothing embedded) to a five-object document written directly. The
# page is the one `draw_label` draws; a label whose text Helvetica cannot print is drawn by
# `label_pdf`, with its CJK font embedded.


def _pdf_string(text: str) -> bytes:
    """A PDF literal string in WinAnsi (the standard fonts' encoding)."""
    raw = text.encode("cp1252")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _font_name(bold: bool) -> str:
    return "Helvetica-Bold" if bold else "Helvetica"


def _fit(text: str, size: float, width: float, *, bold: bool = False) -> str:
    """`_Writer.fit` for Helvetica: cut to `width` points with an ellipsis."""
    font = _font_name(bold)
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"


def _text_op(x: float, y: float, text: str, size: float, *, bold=False, centred=False) -> bytes:
    if centred:
        x -= stringWidth(text, _font_name(bold), size) / 2
    font = b"/F2" if bold else b"/F1"
    return b"BT %s %g Tf 1 0 0 1 %.2f %.2f Tm %s Tj ET\n" % (font, size, x, y, _pdf_string(text))


@lru_cache(maxsize=256)
def _stamp_template(carrier: str, service: str, banner: str, footnote: str) -> bytes:
    """The page's operators that are the same on every label of one service."""
    inner = WIDTH - 2 * MARGIN
    top = HEIGHT - MARGIN
    ops = [b"0 g 0 G\n"]
    if banner:
        ops.append(
            b"2 w %.2f %.2f %.2f %.2f re S\n" % (MARGIN, top - 0.8 * inch, 0.8 * inch, 0.8 * inch)
        )
        ops.append(
            _text_op(
                MARGIN + 0.4 * inch, top - 0.62 * inch, banner[:2], 40, bold=True, centred=True
            )
        )
    left = MARGIN + (0.95 * inch if banner else 0)
    ops.append(_text_op(left, top - 0.35 * inch, carrier.upper(), 20, bold=True))
    shown = _fit(service.upper(), 13, WIDTH - MARGIN - left, bold=True)
    ops.append(_text_op(left, top - 0.62 * inch, shown, 13, bold=True))
    y = top - 0.95 * inch
    ops.append(b"1.5 w %.2f %.2f m %.2f %.2f l S\n" % (MARGIN, y, WIDTH - MARGIN, y))
    band_top = 2.55 * inch
    ops.append(b"3 w %.2f %.2f m %.2f %.2f l S\n" % (MARGIN, band_top, WIDTH - MARGIN, band_top))
    heading = f"{carrier.upper()} TRACKING #"
    ops.append(_text_op(WIDTH / 2, band_top - 0.22 * inch, heading, 10, bold=True, centred=True))
    ops.append(
        b"3 w %.2f %.2f m %.2f %.2f l S\n" % (MARGIN, 0.7 * inch, WIDTH - MARGIN, 0.7 * inch)
    )
    if footnote:
        ops.append(_text_op(MARGIN, 0.3 * inch, _fit(footnote, 8, inner, bold=True), 8, bold=True))
    return b"".join(ops)


def _barcode_ops(data: str, *, inner: float, bottom: float) -> bytes:
    """Code 128 of `data` as filled bars, centred, 1.05 in high (as `draw_label` draws it)."""
    bar_width = 1.2
    barcode = code128.Code128(data, barHeight=1.05 * inch, barWidth=bar_width, quiet=False)
    barcode.validate()
    barcode.encode()
    barcode.decompose()
    # Each symbol is one bar (upper case) or space (lower case) of 1-4 modules.
    widths = [ord(symbol) - (64 if symbol.isupper() else 96) for symbol in barcode.decomposed]
    modules = sum(widths)
    if modules * bar_width > inner:
        bar_width = inner / modules
    x = (WIDTH - modules * bar_width) / 2
    height = 1.05 * inch
    ops = []
    for symbol, width in zip(barcode.decomposed, widths, strict=True):
        if symbol.isupper():
            ops.append(b"%.3f %.2f %.3f %.2f re" % (x, bottom, width * bar_width, height))
        x += width * bar_width
    return b" ".join(ops) + b" f\n"


def label_pdf_stamped(content: LabelContent) -> bytes:
    """`label_pdf`'s page, stamped on its service's template (see above): a valid one-page PDF
    whose text layer carries the tracking number, in a tenth of the time."""
    if any(needs_cjk_font(text) for text in _texts(content)):
        return label_pdf(content)
    inner = WIDTH - 2 * MARGIN
    top = HEIGHT - MARGIN
    ops = [_stamp_template(content.carrier, content.service, content.banner, content.footnote)]
    y = top - 0.95 * inch - 0.18 * inch
    for line in content.sender[:4]:
        ops.append(_text_op(MARGIN, y, _fit(line, 8, inner), 8))
        y -= 0.13 * inch
    y -= 0.12 * inch
    ops.append(_text_op(MARGIN, y, "SHIP TO:", 9, bold=True))
    y -= 0.22 * inch
    for line in content.recipient[:5]:
        text = _fit(line, 13, inner, bold=True)
        ops.append(_text_op(MARGIN + 0.25 * inch, y, text, 13, bold=True))
        y -= 0.21 * inch
    for line in content.extra_lines[:2]:
        ops.append(_text_op(MARGIN, y, _fit(line, 8, inner), 8))
        y -= 0.13 * inch
    band_top = 2.55 * inch
    data = content.barcode_data or content.tracking_number
    ops.append(_barcode_ops(data, inner=inner, bottom=band_top - 1.45 * inch))
    number = grouped(content.tracking_number)
    ops.append(_text_op(WIDTH / 2, band_top - 1.7 * inch, number, 12, bold=True, centred=True))
    if content.reference:
        ops.append(_text_op(MARGIN, 0.5 * inch, _fit(f"Ref: {content.reference}", 8, inner), 8))
    return _one_page_pdf(b"".join(ops), title=f"{content.carrier} {content.tracking_number}")


def _one_page_pdf(stream: bytes, *, title: str) -> bytes:
    """A PDF of one 4x6 page drawing `stream` with Helvetica (/F1) and Helvetica-Bold (/F2)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %g %g] /Contents 4 0 R "
        b"/Resources << /ProcSet [/PDF /Text] /Font << /F1 5 0 R /F2 6 0 R >> >> >>"
        % (WIDTH, HEIGHT),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream) + 1, stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Title %s /Producer (tkerp label stamp) >>"
        % _pdf_string(title.encode("cp1252", "replace").decode("cp1252")),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


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
