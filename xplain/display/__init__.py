"""How results show themselves: one chart spec per kind of result (drawn by matplotlib here and by `charts.js` in
the browser), one check per kind labelled pass / fail / inconclusive, HTML cards for Jupyter, pandas frames.

This package sits above the methods: it imports their result models, and importing it gives every result its
notebook card (`_repr_html_`), `.plot(ax=None)` and `.to_frame()` (as shap's plots take an `Explanation`, which
never imports them). The results themselves know nothing of drawing."""

from xplain.display.cards import card_html, cost_text, headline
from xplain.display.charts import bar_spec, chart_spec, charts_js, describe, draw, figure_svg, plot
from xplain.display.checks import Check, check
from xplain.display.frames import to_frame
from xplain.display import probes as _probes  # noqa: F401 - registers the probe results' views
from xplain.methods.base import ShowsItself


def _give_results_their_views() -> None:
    ShowsItself._repr_html_ = card_html  # type: ignore[attr-defined]  # Jupyter looks it up on the class
    ShowsItself.plot = plot  # type: ignore[attr-defined]
    ShowsItself.to_frame = to_frame  # type: ignore[attr-defined]


_give_results_their_views()


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
