"""The cockpit's SVG charts: plain numbers in, escaped markup out, round axes."""

import re

from tkerp.cockpit.svg import Series, _nice_max, bar_chart, hbar_chart, line_chart


def test_axes_end_on_round_numbers_and_counts_on_whole_steps():
    assert _nice_max(0) == 4
    assert _nice_max(3) == 4
    assert _nice_max(90) == 100
    assert _nice_max(1800) == 2000
    assert _nice_max(37.5, whole=False) == 40
    assert _nice_max(0.3, whole=False) == 0.4


def test_every_text_is_escaped():
    evil = '<script>alert("x")</script>'
    svgs = [
        bar_chart(label=evil, series=[Series(evil, [1, 2], "s1")], x_labels=[evil, "b"]),
        line_chart(label=evil, series=[Series(evil, [1, 2], "s1")], x_labels=[evil, "b"]),
        hbar_chart(label=evil, rows=[(evil, 7.0, evil)], limit=5, limit_text=evil),
    ]
    for svg in svgs:
        assert "<script>" not in svg and "&lt;script&gt;" in svg
        assert svg.startswith("<svg") and svg.endswith("</svg>")


def test_bars_are_as_tall_as_their_value_and_past_the_limit_in_the_alarm_colour():
    svg = bar_chart(label="x", series=[Series("orders", [0, 2, 4], "s1")], x_labels=["a", "b", "c"])
    # Zero draws nothing; 4 fills the plot (axis top 4), 2 half of it.
    heights = [float(h) for h in re.findall(r'height="([\d.]+)"><title>', svg)]
    assert len(heights) == 2 and heights[1] == 2 * heights[0]
    rows = [("late shop", 7.0, ""), ("fine shop", 2.0, ""), ("quiet shop", None, "")]
    svg = hbar_chart(label="late", rows=rows, limit=5, limit_text="limit 5 %")
    assert svg.count('class="bar s-bad"') == 1 and svg.count('class="bar s1"') == 1
    assert "nothing due in 30 days" in svg and 'class="limit"' in svg
