"""How results show themselves: one chart spec per kind of result (drawn by matplotlib here and by `charts.js` in
the browser), one check per kind labelled pass / fail / inconclusive, HTML cards for Jupyter, pandas frames.

This package sits beside the methods: it imports their result models; the results reach it lazily from
`xplain.methods.base.ShowsItself`."""

from xplain.display.cards import card_html, cost_text, headline
from xplain.display.charts import bar_spec, chart_spec, charts_js, describe, draw, figure_svg, plot
from xplain.display.checks import Check, check
from xplain.display.frames import to_frame


def shown_by_display(result: object) -> bool:
    """Whether this package knows how to check and chart this kind of result."""
    return check.dispatch(type(result)) is not check.dispatch(object)


__all__ = [
    "bar_spec",
    "Check",
    "card_html",
    "chart_spec",
    "charts_js",
    "check",
    "cost_text",
    "describe",
    "draw",
    "figure_svg",
    "headline",
    "plot",
    "shown_by_display",
    "to_frame",
]
