"""An HTML report of a batch run that people read: summary figures at the top, then one row per input with the
input beside its answer, its check (failed first) and its chart; sortable and filterable in the page.

The page is one self-contained file (no CDN, works offline). Charts travel as the JSON specs of
`xplain.display.charts` and `charts.js` draws them, the same code the chat page uses.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from pydantic import ValidationError

from xplain.batch.runner import RowOutcome
from xplain.display import bar_spec, chart_spec, charts_js, check, cost_text, headline, shown_by_display
from xplain.display.charts import MOST_BARS, describe
from xplain.methods.base import ShowsItself, load_result
from xplain.methods.baselines import BaselineExplanation
from xplain.methods.compare import ExplainerComparison
from xplain.methods.posthoc import PosthocExplanation

MAX_ROWS_SHOWN = 500
INPUT_CHARS = 600
#: Row order on opening the page: what needs a look first.
STATUS_ORDER = {"fail": 0, "error": 1, "inconclusive": 2, "no check": 3, "pass": 4}
#: Bidirectional controls (embeddings, overrides, isolates, marks). Inputs and answers are data: shown as their code
#: points, so that a row cannot reverse how the page reads.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
STATUS_COLOURS = {
    "fail": "#c62828",
    "error": "#6d4c41",
    "inconclusive": "#8d6e00",
    "no check": "#757575",
    "pass": "#2e7d32",
}


def _as_result(outcome: RowOutcome) -> ShowsItself | None:
    """The row's result as its class, when it is one the display knows."""
    if not outcome.ok or not outcome.result:
        return None
    try:
        return load_result(outcome.result)
    except (ValueError, ValidationError):
        return None


def _input_text(outcome: RowOutcome, inputs: Sequence[Any] | None) -> str:
    if inputs is not None and 0 <= outcome.index < len(inputs):
        value = inputs[outcome.index]
    else:
        result = outcome.result or {}
        value = next((result[k] for k in ("instance", "text", "row") if k in result), None)
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        value = value["text"]
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(_nan_as_null(value))
    return text if len(text) <= INPUT_CHARS else text[: INPUT_CHARS - 1] + "…"


def _nan_as_null(value: Any) -> Any:
    """An empty cell as JSON writes it (`null`), not Python's `NaN`, which is not JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_as_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_as_null(v) for v in value]
    return value


def _visible(html: str) -> str:
    """`html` with every bidirectional control written as its code point, e.g. `[U+202E]`."""
    return BIDI_CONTROLS.sub(lambda match: f"[U+{ord(match.group()):04X}]", html)


def _plain_answer(result: dict[str, Any]) -> str:
    """A result the display does not know: its first few scalar fields."""
    fields = [(k, v) for k, v in result.items() if isinstance(v, str | int | float | bool) and k != "method"][:4]
    return ", ".join(f"{escape(k)}: <b>{escape(str(v))}</b>" for k, v in fields) or "(no summary)"


def _row(
    outcome: RowOutcome, result: ShowsItself | None, inputs: Sequence[Any] | None, specs: dict[str, Any]
) -> tuple[int, str, str]:
    """(order, status, the row's HTML); the row's chart spec goes into `specs`."""
    chart = ""
    if not outcome.ok:
        status, check_html = "error", ""
        answer = f"<span class='err'>{escape(str(outcome.error))}</span>"
    elif result is None or not shown_by_display(result):
        status, check_html, answer = "no check", "", _plain_answer(outcome.result or {})
    else:
        verdict = check(result)
        status = verdict.status
        check_html = f"<div title='{escape(verdict.rule)}'>{escape(verdict.name)}: {escape(verdict.value)}</div>"
        answer = f"{headline(result)}<div class='cost'>{escape(cost_text(result))}</div>"
        spec = specs[f"r{outcome.index}"] = chart_spec(result)
        chart = f" data-chart='r{outcome.index}' aria-label='{escape(describe(spec))}'"
    raw = escape(json.dumps(outcome.result if outcome.ok else outcome.error, indent=1))
    html = (
        f"<tr data-status='{status}' data-order='{STATUS_ORDER[status]}' data-index='{outcome.index}'>"
        f"<td class='idx'>{outcome.index}</td>"
        f"<td class='input'><div class='clip'>{escape(_input_text(outcome, inputs))}</div></td>"
        f"<td class='answer'>{answer}<details><summary>JSON</summary><pre>{raw}</pre></details></td>"
        f"<td class='check'><span class='badge' style='background:{STATUS_COLOURS[status]}'>{status}</span>"
        f"{check_html}</td>"
        f"<td class='chart'{chart}></td></tr>"
    )
    return STATUS_ORDER[status], status, html


def _bars(title: str, xlabel: str, counts: dict[str, float], **style: Any) -> dict[str, Any]:
    return bar_spec(title, xlabel, list(counts), [(title, list(counts.values()))], **style)


def _summary_figures(
    outcomes: list[RowOutcome], results: list[ShowsItself | None], statuses: Counter
) -> list[dict[str, Any]]:
    """Checks by outcome, the black box's labels, LLM agreement and the mean feature effect, where rows hold them."""
    figures = [
        _bars(
            "Checks",
            "rows",
            {s: statuses[s] for s in STATUS_ORDER if statuses[s]},
            colors=[STATUS_COLOURS[s] for s in STATUS_ORDER if statuses[s]],
        )  # fmt: skip
    ]
    dumps = [o.result for o in outcomes if o.ok and o.result]
    labels = Counter(label for label in map(_blackbox_label, dumps) if label is not None)
    if labels:
        figures.append(_bars("Black-box labels", "rows", dict(sorted(labels.items()))))
    agreement = [r["agrees"] for r in dumps if isinstance(r.get("agrees"), bool)]
    if agreement:
        share = sum(agreement) / len(agreement)
        figures.append(_bars("LLM agrees with the black box", "share of rows", {"agree": share, "disagree": 1 - share}))
    effects = _mean_effects(results)
    if effects:
        xlabel = "mean signed importance over rows (0 where not named)"
        figures.append(_bars("Mean feature effect", xlabel, effects, signed=True))
    return figures


def _blackbox_label(result: dict[str, Any]) -> str | None:
    """The black box's label as each kind of result names it (explanations, counterfactuals, predictions)."""
    for key in ("predicted_label", "original_prediction", "label"):
        if key in result:
            return str(result[key])
    for key in ("blackbox", "prediction"):  # zero-shot and predict results nest it
        if isinstance(result.get(key), dict) and result[key].get("label") is not None:
            return str(result[key]["label"])
    return None


def _mean_effects(results: list[ShowsItself | None]) -> dict[str, float]:
    """Per feature, the mean of the first explainer's signed importance over the rows that explain features."""
    sums: dict[str, float] = defaultdict(float)
    rows = 0
    for result in results:
        if not isinstance(result, PosthocExplanation | BaselineExplanation | ExplainerComparison):
            continue
        spec = chart_spec(result)
        rows += 1
        for label, value in zip(spec["labels"], spec["series"][0]["values"]):
            sums[label] += value or 0.0
    top = sorted(sums.items(), key=lambda item: -abs(item[1]))[:MOST_BARS]
    return {name: total / rows for name, total in top}


def write_report(
    path: Path,
    title: str,
    outcomes: list[RowOutcome],
    seconds: float | None = None,
    inputs: Sequence[Any] | None = None,
) -> None:
    """Write the report of `outcomes`; `inputs` (all rows, by index) puts each input beside its result."""
    specs: dict[str, Any] = {}
    results = [_as_result(o) for o in outcomes]
    shown = sorted(
        (_row(o, r, inputs, specs) for o, r in zip(outcomes[:MAX_ROWS_SHOWN], results)), key=lambda row: row[0]
    )
    statuses = Counter(status for _, status, _ in shown)
    ok = sum(o.ok for o in outcomes)
    summary: list[tuple[str, Any]] = [("rows", len(outcomes)), ("succeeded", ok), ("failed", len(outcomes) - ok)]
    summary += [(f"check: {s}", statuses[s]) for s in STATUS_ORDER if statuses[s] and s != "error"]
    if seconds is not None:
        summary.append(("seconds (this run)", f"{seconds:.1f}"))
    reasons = Counter(o.error for o in outcomes if not o.ok)
    summary += [(f"failure: {reason}", count) for reason, count in reasons.most_common(5)]
    if len(outcomes) > MAX_ROWS_SHOWN:
        summary.append(("rows shown", f"the first {MAX_ROWS_SHOWN}"))
    figures = _summary_figures(outcomes, results, statuses)
    specs.update({f"s{i}": figure for i, figure in enumerate(figures)})
    page = Template(resources.files(__package__).joinpath("templates/report.html").read_text(encoding="utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        page.substitute(
            title=_visible(escape(title)),
            summary=_visible(
                "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in summary)
            ),
            figures="".join(f"<figure data-chart='s{i}'></figure>" for i in range(len(figures))),
            statuses="".join(f"<option value='{s}'>{s} ({statuses[s]})</option>" for s in STATUS_ORDER if statuses[s]),
            rows=_visible("".join(html for _, _, html in shown)),
            specs=_visible(json.dumps(specs, ensure_ascii=False)).replace("</", "<\\/"),
            charts_js=charts_js(),
        ),
        encoding="utf-8",
    )
