"""The font every PDF we draw uses: Noto Sans CJK, so Chinese product names print.

Sellers' product names are often Chinese (and buyers' names Japanese or Korean). The Debian
package `fonts-noto-cjk` carries Noto Sans CJK, which covers those scripts and Latin in one face.
WeasyPrint (the pick list) finds it through fontconfig by family name. ReportLab (labels and
packing slips) embeds only fonts with TrueType outlines, and Noto CJK has PostScript (CFF)
outlines, so `reportlab_font` builds a small TrueType font holding just the glyphs a document
needs (quadratic curves converted from the CFF ones with fontTools, the way its otf2ttf recipe
does) and registers it with ReportLab, which embeds a subset of it as usual.

Loading the 16 MB collection's character map and outlines costs about a second once per
process; each later document only converts the glyphs it has not seen yet (a few milliseconds).
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

#: Characters every document gets, whatever its text: digits, Latin, punctuation.
BASE_CHARACTERS = "".join(
    chr(code) for code in (*range(0x20, 0x7F), 0xD7, 0x2013, 0x2014, 0x2026, 0xB7, 0x2022)
)


class PdfFontMissing(RuntimeError):
    """The configured font file is not there (or holds no face by the configured name)."""


@dataclass
class _SourceFont:
    """The CFF font, loaded once per process, and the TrueType glyphs converted so far."""

    path: Path
    face: str
    font: object = None
    cmap: dict[int, str] = field(default_factory=dict)
    glyphs: dict[str, object] = field(default_factory=dict)
    covered: frozenset[int] = frozenset()  # characters the current ReportLab font holds
    generation: int = 0
    name: str = ""  # the current ReportLab font's name
    truetype: bytes = b""  # the current font's file
    superseded: list[str] = field(default_factory=list)
    in_use: int = 0  # documents being drawn right now


_source: _SourceFont | None = None
_lock = threading.Lock()
_generations = itertools.count(1)  # font names stay unique even if the source font changes


def pdf_font_family() -> str:
    """The family name HTML templates ask for (WeasyPrint resolves it through fontconfig)."""
    return settings.TKERP_PDF_FONT_FACE


def _font_number(path: Path, face: str) -> int:
    """Index of the face named `face` in a font collection (0 for a plain font file)."""
    from fontTools.ttLib import TTCollection

    if path.suffix.lower() not in {".ttc", ".otc"}:
        return 0
    collection = TTCollection(str(path), lazy=True)
    try:
        for number, font in enumerate(collection.fonts):
            names = {font["name"].getDebugName(1), font["name"].getDebugName(4)}
            if face in names:
                return number
    finally:
        collection.close()
    raise PdfFontMissing(f"{path} holds no face named {face!r} (TKERP_PDF_FONT_FACE)")


def _source_font() -> _SourceFont:
    global _source
    path = Path(settings.TKERP_PDF_FONT_FILE)
    face = settings.TKERP_PDF_FONT_FACE
    if _source is not None and _source.path == path and _source.face == face:
        return _source
    if not path.is_file():
        raise PdfFontMissing(
            f"the PDF font {path} is missing: install Debian's fonts-noto-cjk (README, "
            "'PDF fonts') or point TKERP_PDF_FONT_FILE at a font that covers Chinese"
        )
    from fontTools.ttLib import TTFont

    font = TTFont(str(path), fontNumber=_font_number(path, face), lazy=True)
    _source = _SourceFont(path=path, face=face, font=font, cmap=font.getBestCmap())
    return _source


def _truetype_glyph(source: _SourceFont, name: str):
    """The glyph `name` with quadratic (TrueType) outlines, converted once per process."""
    glyph = source.glyphs.get(name)
    if glyph is None:
        from fontTools.pens.cu2quPen import Cu2QuPen
        from fontTools.pens.ttGlyphPen import TTGlyphPen

        pen = TTGlyphPen(None)
        # 1 font unit of tolerance: invisible at label sizes; reversed because TrueType winds
        # outer contours clockwise, PostScript counter-clockwise.
        source.font.getGlyphSet()[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyph = source.glyphs[name] = pen.glyph()
    return glyph


def _build_truetype(source: _SourceFont, characters: set[int], *, generation: int) -> bytes:
    from fontTools.fontBuilder import FontBuilder

    src = source.font
    mapping = {code: source.cmap[code] for code in sorted(characters) if code in source.cmap}
    names = [".notdef", *sorted(set(mapping.values()) - {".notdef"})]
    builder = FontBuilder(src["head"].unitsPerEm, isTTF=True)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap(mapping)
    builder.setupGlyf({name: _truetype_glyph(source, name) for name in names})
    metrics = src["hmtx"].metrics
    builder.setupHorizontalMetrics({name: metrics[name] for name in names})
    hhea, os2 = src["hhea"], src["OS/2"]
    builder.setupHorizontalHeader(ascent=hhea.ascent, descent=hhea.descent)
    family = src["name"].getDebugName(1) or source.face
    builder.setupNameTable(
        {
            "familyName": family,
            "styleName": "Regular",
            # ReportLab shares one font object between fonts of the same PostScript name: each
            # generation needs its own.
            "psName": f"{(src['name'].getDebugName(6) or family).replace(' ', '')}-{generation}",
        }
    )
    builder.setupOS2(
        sTypoAscender=os2.sTypoAscender,
        sTypoDescender=os2.sTypoDescender,
        usWinAscent=os2.usWinAscent,
        usWinDescent=os2.usWinDescent,
        fsType=0,  # Noto is OFL: embedding is allowed
    )
    builder.setupPost()
    out = io.BytesIO()
    builder.save(out)
    return out.getvalue()


def _current_covering(source: _SourceFont, text: str) -> None:
    """Make the source's current font cover `text` (building a new generation if it does not).
    Called with the lock held."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    wanted = {ord(character) for character in BASE_CHARACTERS + text} & source.cmap.keys()
    if source.name and wanted <= source.covered:
        return
    covered = source.covered | wanted
    source.generation = next(_generations)
    data = _build_truetype(source, covered, generation=source.generation)
    name = f"TkerpCJK-{source.generation}"
    pdfmetrics.registerFont(TTFont(name, io.BytesIO(data)))
    if source.name:
        source.superseded.append(source.name)
    source.name, source.covered, source.truetype = name, frozenset(covered), data


def truetype_font(text: str) -> bytes:
    """A TrueType font file covering `text` and the basic Latin set: HTML templates embed it
    (@font-face), so WeasyPrint subsets a small font instead of loading the 20 MB collection."""
    with _lock:
        source = _source_font()
        _current_covering(source, text)
        return source.truetype


@contextmanager
def reportlab_font(text: str) -> Iterator[str]:
    """A registered ReportLab font covering `text` and the basic Latin set, by name, for the
    duration of the block (the document must be saved inside it).

    One font per process, rebuilt (as a new name) only when a text brings characters it does not
    hold yet; it then covers every character seen so far, so a worker's fonts stop changing once
    its sellers' catalogue has been printed. Characters the source lacks print as its empty box.
    """
    from reportlab.pdfbase import pdfmetrics

    with _lock:
        source = _source_font()
        _current_covering(source, text)
        name = source.name
        source.in_use += 1
    try:
        yield name
    finally:
        with _lock:
            source.in_use -= 1
            if not source.in_use:
                # ReportLab cannot unregister a font: drop superseded generations from its
                # registry once no document is being drawn with them, so a long-lived worker
                # does not keep every one.
                for old in source.superseded:
                    font = pdfmetrics._fonts.pop(old, None)
                    if font is not None:
                        pdfmetrics._dynFaceNames.pop(font.face.name, None)
                source.superseded.clear()
