"""Server-rendered SVG charts for the cockpit: no JavaScript library, nothing from a CDN.

Each function takes plain numbers and labels and returns one `<svg>` element whose colours come
from CSS classes (`tkerp/static/tkerp/cockpit.css`), so the charts follow the admin's light and
dark themes. Every text is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 34


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float]
    css: str  # a class of cockpit.css: "s1", "s2", "s3"...


def _nice_max(value: float, *, whole: bool = True) -> float:
    """The axis maximum: four round steps (1, 2, 2.5 or 5 times a power of ten; whole numbers
    for counts) reaching `value`."""
    if value <= 0:
        return 4
    quarter = value / 4
    magnitude = 1.0
    while magnitude * 10 <= quarter:
        magnitude *= 10
    while magnitude > quarter:
        magnitude /= 10
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if step >= quarter and (not whole or (step >= 1 and float(step).is_integer())):
            return 4 * step
    return 4 * max(10 * magnitude, 1)


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:g} %"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _svg(body: list[str], *, label: str, height: int = HEIGHT) -> SafeString:
    return mark_safe(
        f'<svg class="cockpit-chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _y_axis(body: list[str], *, top_value: float, unit: str, plot_h: float) -> None:
    for i in range(5):
        value = top_value * i / 4
        y = TOP + plot_h - plot_h * i / 4
        body.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_fmt(value, unit))}</text>"
        )


def _x_labels(body: list[str], labels: Sequence[str], *, slot: float, every: int) -> None:
    for i, text in enumerate(labels):
        if not text or i % every:
            continue
        x = LEFT + slot * (i + 0.5)
        body.append(
            f'<text class="tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{escape(text)}</text>"
        )


def _legend(body: list[str], series: Sequence[Series], extra: Sequence[tuple[str, str]] = ()):
    x = LEFT
    for name, css in [*((s.name, s.css) for s in series), *extra]:
        body.append(
            f'<rect class="{css}" x="{x}" y="{HEIGHT - 12}" width="10" height="10" rx="2"/>'
            f'<text class="legend" x="{x + 14}" y="{HEIGHT - 3}">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)


def bar_chart(
    *,
    label: str,
    series: Sequence[Series],
    x_labels: Sequence[str],
    label_every: int = 1,
    unit: str = "",
    marker_index: int | None = None,
    marker_text: str = "",
) -> SafeString:
    """Bars per slot; several series stand side by side within a slot. `marker_index` draws a
    vertical line before that slot (e.g. "now")."""
    count = len(x_labels)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = _nice_max(max((v for s in series for v in s.values), default=0))
    slot = plot_w / max(count, 1)
    body: list[str] = []
    _y_axis(body, top_value=top_value, unit=unit, plot_h=plot_h)
    bar_w = max(slot * 0.8 / max(len(series), 1), 0.5)
    for si, one in enumerate(series):
        for i, value in enumerate(one.values):
            if not value:
                continue
            h = plot_h * value / top_value
            x = LEFT + slot * i + slot * 0.1 + bar_w * si
            body.append(
                f'<rect class="bar {one.css}" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"><title>{escape(x_labels[i])}: '
                f"{escape(_fmt(value, unit))} {escape(one.name)}</title></rect>"
            )
    if marker_index is not None and 0 <= marker_index <= count:
        x = LEFT + slot * marker_index
        body.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}"/>'
            f'<text class="marker-text" x="{x + 3:.1f}" y="{TOP + 10}">{escape(marker_text)}</text>'
        )
    _x_labels(body, x_labels, slot=slot, every=label_every)
    if len(series) > 1:
        _legend(body, series)
    return _svg(body, label=label)


def line_chart(
    *,
    label: str,
    series: Sequence[Series],
    x_labels: Sequence[str],
    label_every: int = 1,
    unit: str = "",
) -> SafeString:
    """One polyline per series over the slots, with a dot per point."""
    count = len(x_labels)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max((v for s in series for v in s.values), default=0)
    top_value = _nice_max(peak, whole=unit != "%")
    slot = plot_w / max(count, 1)
    body: list[str] = []
    _y_axis(body, top_value=top_value, unit=unit, plot_h=plot_h)
    for one in series:
        points = [
            (LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * value / top_value)
            for i, value in enumerate(one.values)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        body.append(f'<polyline class="line {one.css}" points="{path}"/>')
        for (x, y), value, text in zip(points, one.values, x_labels, strict=False):
            body.append(
                f'<circle class="dot {one.css}" cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>'
                f"{escape(text)}: {escape(_fmt(value, unit))} {escape(one.name)}</title></circle>"
            )
    _x_labels(body, x_labels, slot=slot, every=label_every)
    _legend(body, series)
    return _svg(body, label=label)


def hbar_chart(
    *,
    label: str,
    rows: Sequence[tuple[str, float | None, str]],
    limit: float,
    limit_text: str,
    unit: str = "%",
) -> SafeString:
    """One horizontal bar per row (name, value or None for "nothing due", hover text), with a
    vertical line at `limit`; bars past it are drawn in the alarm colour."""
    name_w, row_h = 150, 24
    height = max(TOP + row_h * len(rows) + 30, 80)
    plot_w = WIDTH - name_w - RIGHT - 40
    top_value = _nice_max(max([limit * 2, *(v for _, v, _ in rows if v is not None)]), whole=False)
    body: list[str] = []
    for i in range(5):
        value = top_value * i / 4
        x = name_w + plot_w * i / 4
        body.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{height - 24}"/>'
            f'<text class="tick" x="{x:.1f}" y="{height - 10}" text-anchor="middle">'
            f"{escape(_fmt(value, unit))}</text>"
        )
    for i, (name, value, hover) in enumerate(rows):
        y = TOP + row_h * i
        short = name if len(name) <= 22 else name[:21] + "…"
        body.append(
            f'<text class="name" x="{name_w - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(short)}<title>{escape(name)}</title></text>"
        )
        if value is None:
            body.append(
                f'<text class="tick" x="{name_w + 4}" y="{y + 15}">nothing due in 30 days</text>'
            )
            continue
        w = plot_w * value / top_value
        css = "s-bad" if value > limit else "s1"
        body.append(
            f'<rect class="bar {css}" x="{name_w}" y="{y + 4}" width="{max(w, 1):.1f}" '
            f'height="{row_h - 8}" rx="2"><title>{escape(hover)}</title></rect>'
            f'<text class="value" x="{name_w + max(w, 1) + 4:.1f}" y="{y + 15}">'
            f"{escape(_fmt(round(value, 1), unit))}</text>"
        )
    x = name_w + plot_w * limit / top_value
    body.append(
        f'<line class="limit" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP - 6}" y2="{height - 24}"/>'
        f'<text class="limit-text" x="{x + 3:.1f}" y="{TOP - 2}">{escape(limit_text)}</text>'
    )
    return _svg(body, label=label, height=height)
