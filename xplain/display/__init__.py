"""How results show themselves: one chart spec per kind of result (drawn by matplotlib here and by `charts.js` in
the browser), one check per kind labelled pass / fail / inconclusive, HTML cards for Jupyter, pandas frames.

This package sits beside the methods: it imports their result models; the results reach it lazily from
`xplain.methods.base.ShowsItself`."""

from xplain.display.cards import card_html
from xplain.display.charts import chart_spec, draw, figure_svg, plot
from xplain.display.checks import Check, check
from xplain.display.frames import to_frame

__all__ = ["Check", "card_html", "chart_spec", "check", "draw", "figure_svg", "plot", "to_frame"]
