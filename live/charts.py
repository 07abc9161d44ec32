"""Small server-rendered SVG charts (no JavaScript, no static files, no CDN).

Self-contained on purpose: one function, plain SVG with a <title> per bar for hover text, every
label escaped. The cockpit's charts can share it (or replace it) at merge time.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe


def bar_chart_svg(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 720,
    height: int = 200,
    unit: str = "orders",
    tick_every: int | None = None,
) -> SafeString:
    """A bar chart of (label, value) points as an inline <svg>, with the largest value on the
    y axis and every `tick_every`-th label on the x axis (about eight labels by default)."""
    left, right, top, bottom = 40, 8, 20, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max((value for _, value in points), default=0) or 1
    count = max(1, len(points))
    step = plot_w / count
    tick_every = tick_every or max(1, round(count / 8))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="live-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="12" font-size="11" fill="#555">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end" fill="#555">'
        f"{_number(top_value)}</text>",
        f'<text x="{left - 4}" y="{top + plot_h}" font-size="10" text-anchor="end" '
        'fill="#555">0</text>',
    ]
    for index, (label, value) in enumerate(points):
        bar_h = plot_h * (value / top_value) if value > 0 else 0
        x = left + index * step
        parts.append(
            f'<rect class="bar" x="{x + step * 0.1:.1f}" y="{top + plot_h - bar_h:.1f}" '
            f'width="{max(step * 0.8, 1):.1f}" height="{bar_h:.1f}" fill="#417690">'
            f"<title>{escape(str(label))}: {_number(value)} {escape(unit)}</title></rect>"
        )
        if index % tick_every == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{height - 10}" font-size="10" '
                f'text-anchor="middle" fill="#555">{escape(str(label))}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text above is escaped


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
