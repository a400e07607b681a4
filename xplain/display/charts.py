"""One chart per kind of result, as a JSON spec: matplotlib draws it here (`.plot()`, notebook cards) and
`charts.js` draws the same spec in the browser (the batch report, the chat page), so each chart is defined once.

A spec is horizontal bars, one row per label:
`{"title", "xlabel", "labels": [...], "series": [{"name", "values": [number|null]}], "colors": [...] | null,
"signed": bool, "reference": {"value", "label"} | null}`. With one series, `colors` (one per label) overrides the
default colouring (signed: green right, red left).
"""

from __future__ import annotations

import io
from functools import singledispatch
from importlib import resources
from typing import TYPE_CHECKING, Any

from xplain.methods.base import load_result
from xplain.methods.baselines import BaselineExplanation
from xplain.methods.classifiers import ClassifierPrediction, FitResult
from xplain.methods.predict import PredictResult, ZeroShotResult
from xplain.methods.compare import ExplainerComparison
from xplain.methods.counterfactual_tabular import (
    TabularCounterfactualExplanation,
    TabularCounterfactualResult,
    numeric_change,
    shown,
)
from xplain.methods.counterfactual_text import (
    ConceptEffectResult,
    TextCounterfactualExplanation,
    TextCounterfactualResult,
    token_diff,
)
from xplain.methods.iprompt import IPromptResult
from xplain.methods.lml_dap import LMLDAPExplanation
from xplain.methods.posthoc import PosthocExplanation
from xplain.methods.sasc import SASCResult
from xplain.methods.tbm import TBMExplanation

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

POSITIVE, NEGATIVE = "#2e7d32", "#c62828"
VALID, INVALID = "#2e7d32", "#9e9e9e"
SERIES = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f"]
LABEL_CHARS = 42
MOST_BARS = 12


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_spec(
    title: str,
    xlabel: str,
    labels: list[str],
    series: list[tuple[str, list[float | None]]],
    *,
    colors: list[str] | None = None,
    signed: bool = False,
    reference: tuple[float, str] | None = None,
) -> dict[str, Any]:
    """A chart spec from plain data: how every chart here is built, and how a tool result (the chat page's probes)
    can describe a chart that `charts.js` draws the same way."""
    return {
        "title": title,
        "xlabel": xlabel,
        "labels": [_short(label) for label in labels[:MOST_BARS]],
        "series": [
            {"name": name, "values": [None if v is None else float(v) for v in values[:MOST_BARS]]}
            for name, values in series
        ],
        "colors": colors[:MOST_BARS] if colors else None,
        "signed": signed,
        "reference": {"value": float(reference[0]), "label": reference[1]} if reference else None,
    }


@singledispatch
def chart_spec(result: Any) -> dict[str, Any]:
    """The chart of a result, as JSON both matplotlib and the browser draw."""
    raise TypeError(f"no chart known for {type(result).__name__}")


def proposal_kept(result: PosthocExplanation) -> bool:
    """Whether what posthoc returns is the LLM's own first proposal (else re-asked or repaired from the evidence)."""
    proposed = result.proposed
    return proposed is None or [f.feature for f in proposed.features] == [f.feature for f in result.features]


@chart_spec.register(PosthocExplanation)
def _(result: PosthocExplanation) -> dict[str, Any]:
    k = len(result.features)
    values = [(1 if f.direction == "+" else -1) * (k - i) / k for i, f in enumerate(result.features)]
    return bar_spec(
        ("LLM's" if proposal_kept(result) else "Verified") + f" top features for '{result.predicted_label}'",
        "direction × rank (1 = named first)",
        [f.feature for f in result.features],
        [("LLM", values)],
        signed=True,
    )


@chart_spec.register(BaselineExplanation)
def _(result: BaselineExplanation) -> dict[str, Any]:
    top = result.ranking[:MOST_BARS]
    return bar_spec(
        f"{result.method} weights for '{result.predicted_label}'",
        "weight",
        top,
        [(result.method, [result.weights[n] for n in top])],
        signed=True,
    )


@chart_spec.register(ExplainerComparison)
def _(result: ExplainerComparison) -> dict[str, Any]:
    scored = [(result.label(e), result.signed_importance(e)) for e in result.explanations]
    features: list[str] = []
    for _, importance in scored:  # the first explainer's features first, then those the others rank highest
        features += [name for name in list(importance)[:6] if name not in features]
    series = [(name, [importance.get(f, 0.0) for f in features]) for name, importance in scored]
    return bar_spec(
        "Feature effects, explainers side by side",
        "signed importance (1 = each explainer's largest)",
        features,
        series,
        signed=True,
    )


@chart_spec.register(TabularCounterfactualExplanation)
def _(result: TabularCounterfactualExplanation) -> dict[str, Any]:
    if not result.counterfactuals:
        return bar_spec("No counterfactual proposed", "change", [], [("change", [])], signed=True)
    best = result.counterfactuals[0]
    verdict = "flips to" if best.valid else "does not flip; reaches"
    return bar_spec(
        f"Best counterfactual ({verdict} '{best.prediction}', p={best.target_probability:.2f})",
        "new value − old value",
        [f"{c.feature}: {shown(c.old)} → {shown(c.new)}" for c in best.changes],
        [("change", [numeric_change(c) for c in best.changes])],
        signed=True,
    )


@chart_spec.register(TextCounterfactualExplanation)
def _(result: TextCounterfactualExplanation) -> dict[str, Any]:
    labels = [_edit_summary(result.text, c.text) for c in result.counterfactuals]
    return bar_spec(
        "Counterfactual edits (green: the black box flipped)",
        "target-class probability",
        labels,
        [("target probability", [c.target_probability for c in result.counterfactuals])],
        colors=[VALID if c.valid else INVALID for c in result.counterfactuals],
    )


def _edit_summary(original: str, edited: str) -> str:
    """'-old words +new words' for a bar label."""
    pieces = token_diff(original, edited)
    return " ".join(("-" if kind == "removed" else "+") + text for kind, text in pieces if kind != "same") or "(same)"


@chart_spec.register(TabularCounterfactualResult)
@chart_spec.register(TextCounterfactualResult)
def _(result: TabularCounterfactualResult | TextCounterfactualResult) -> dict[str, Any]:
    if len(result.explanations) == 1:
        return chart_spec(result.explanations[0])
    best = [e.counterfactuals[0] if e.counterfactuals else None for e in result.explanations]
    return bar_spec(
        "Best counterfactual per input (green: flipped)",
        "target-class probability",
        [f"input {i}: {e.original_prediction}" for i, e in enumerate(result.explanations)],
        [("target probability", [b.target_probability if b else None for b in best])],
        colors=[VALID if b and b.valid else INVALID for b in best],
    )


@chart_spec.register(ConceptEffectResult)
def _(result: ConceptEffectResult) -> dict[str, Any]:
    change = f"{result.concept} → {result.concept_value}" if result.concept_value else result.concept
    reference = (result.average_effect, "average") if result.average_effect is not None else None
    return bar_spec(
        f"Effect of changing {change} on {result.output}",
        "output change",
        [i.text for i in result.individual],
        [("effect", [i.effect for i in result.individual])],
        signed=True,
        reference=reference,
    )


@chart_spec.register(SASCResult)
def _(result: SASCResult) -> dict[str, Any]:
    labels = [c.explanation + (" (not scored)" if c.score is None else "") for c in result.candidates]
    return bar_spec(
        "Candidate explanations of the module",
        "score (related − unrelated, in module std)",
        labels,
        [("score", [c.score for c in result.candidates])],
        signed=True,
    )


@chart_spec.register(IPromptResult)
def _(result: IPromptResult) -> dict[str, Any]:
    return bar_spec(
        "Candidate prompts",
        "log-likelihood gain over no instruction (nats)",
        [c.prompt for c in result.candidates],
        [("gain", [c.gain for c in result.candidates])],
        signed=True,
    )


@chart_spec.register(LMLDAPExplanation)
def _(result: LMLDAPExplanation) -> dict[str, Any]:
    return bar_spec(
        "LML-DAP predictions (grey: fallback to retrieved rows)",
        "confidence",
        [f"row {i}: {p.label}" for i, p in enumerate(result.predictions)],
        [("confidence", [p.confidence for p in result.predictions])],
        colors=[INVALID if p.fallback else SERIES[0] for p in result.predictions],
    )


@chart_spec.register(TBMExplanation)
def _(result: TBMExplanation) -> dict[str, Any]:
    concepts = sorted(result.concepts, key=lambda c: -abs(c.weight))
    return bar_spec(
        "Concept weights",
        "weight in the linear layer",
        [c.concept for c in concepts],
        [("weight", [c.weight for c in concepts])],
        signed=True,
    )


#: Results the chats draw no chart for: posthoc's chart would show the LLM's ranks as if they were effect sizes;
#: a what-if reads as its before / after table.
NO_CHAT_CHART = {"posthoc", "what_if"}


def chat_chart(result: dict[str, Any]) -> dict[str, Any] | None:
    """The chart spec of a method's result as JSON (a chat tool's artifact), drawn by the same code as the batch
    report and the notebook cards; None where the result has no chart."""
    if result.get("method") in NO_CHAT_CHART:
        return None
    try:
        return chart_spec(load_result(result))
    except (TypeError, ValueError):
        return None


def describe(spec: dict[str, Any]) -> str:
    """What a chart shows, in words (for screen readers and for reading without the picture)."""
    parts = []
    for one in spec["series"]:
        bars = ", ".join(
            f"{label} {value:+.3g}" for label, value in zip(spec["labels"], one["values"]) if value is not None
        )
        parts.append(f"{one['name']}: {bars or 'no bars'}" if len(spec["series"]) > 1 else bars or "no bars")
    return f"{spec['title']} ({spec['xlabel']}): " + "; ".join(parts)


def draw(spec: dict[str, Any], ax: Axes | None = None) -> Figure:
    """Draw a chart spec as horizontal bars on `ax` (a new figure if None); returns the figure."""
    from matplotlib.figure import Figure

    labels, series = spec["labels"], spec["series"]
    if ax is None:
        figure = Figure(
            figsize=(6.4, 0.8 + 0.32 * max(len(labels), 1) * max(1, len(series) * 0.7)), layout="constrained"
        )
        ax = figure.add_subplot()
    figure = ax.get_figure()
    height = 0.8 / len(series)
    for s, one in enumerate(series):
        values = [0.0 if v is None else v for v in one["values"]]
        if len(series) == 1 and spec.get("colors"):
            colors = spec["colors"]
        elif len(series) == 1 and spec.get("signed"):
            colors = [POSITIVE if v >= 0 else NEGATIVE for v in values]
        else:
            colors = SERIES[s % len(SERIES)]
        offsets = [i - 0.4 + height * (s + 0.5) for i in range(len(values))]
        ax.barh(offsets, values, height=height * 0.9, color=colors, label=one["name"])
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.axvline(0, color="#555", linewidth=0.8)
    if spec.get("reference"):
        ax.axvline(
            spec["reference"]["value"], color="#333", linestyle="--", linewidth=1, label=spec["reference"]["label"]
        )
    if not labels:
        ax.text(0.5, 0.5, "nothing to draw", ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_title(spec["title"], fontsize=10, loc="left")
    ax.set_xlabel(spec["xlabel"], fontsize=9)
    ax.tick_params(labelsize=8)
    if len(series) > 1 or spec.get("reference"):
        ax.legend(fontsize=8, loc="best")
    return figure


def plot(result: Any, ax: Axes | None = None) -> Figure:
    return draw(chart_spec(result), ax)


def charts_js() -> str:
    """The browser's renderer of chart specs (`xplainCharts.svg(spec)`), to inline in a page or serve."""
    return resources.files(__package__).joinpath("charts.js").read_text(encoding="utf-8")


def figure_svg(figure: Figure) -> str:
    """The figure as inline SVG (no XML header), for HTML cards."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: a tenth of the size, searchable
        figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _probabilities_spec(title: str, series: list[tuple[str, dict[str, float]]]) -> dict[str, Any]:
    labels = list(series[0][1])
    return bar_spec(title, "probability", labels, [(name, [p.get(c, 0.0) for c in labels]) for name, p in series])


@chart_spec.register(PredictResult)
def _(result: PredictResult) -> dict[str, Any]:
    if result.prediction.probabilities is None:
        return bar_spec("The module's output", "output", ["output"], [("output", [result.prediction.output])])
    return _probabilities_spec(f"Predicted '{result.prediction.label}'", [("black box", result.prediction.probabilities)])


@chart_spec.register(ZeroShotResult)
def _(result: ZeroShotResult) -> dict[str, Any]:
    series = [("black box", result.blackbox.probabilities or {}), ("LLM", result.llm_probabilities)]
    return _probabilities_spec("The black box beside the LLM's own label", series)


@chart_spec.register(FitResult)
def _(result: FitResult) -> dict[str, Any]:
    if result.concepts:
        names = [c.concept for c in result.concepts]
        return bar_spec("Concept weights", "weight", names, [("weight", [c.weight for c in result.concepts])], signed=True)
    labels = list(result.summaries or {})
    return bar_spec("Patterns summarised per label", "patterns", labels, [("patterns", [len(result.summaries[k]) for k in labels])])


@chart_spec.register(ClassifierPrediction)
def _(result: ClassifierPrediction) -> dict[str, Any]:
    if result.lml is not None:
        return _probabilities_spec(f"Predicted '{result.lml.label}'", [("LML-DAP", result.lml.probabilities)])
    found = result.tbm.contributions[:MOST_BARS]
    return bar_spec(
        f"Concept contributions to '{result.tbm.label}'", "contribution", [c.concept for c in found],
        [("contribution", [c.contribution for c in found])], signed=True,
    )  # fmt: skip
