"""A compact HTML card per result, for Jupyter's `_repr_html_`: the answer, its check labelled pass / fail /
inconclusive, what it cost, and its chart as inline SVG."""

from __future__ import annotations

from collections import Counter
from functools import singledispatch
from html import escape
from typing import Any

from xplain.display.charts import chart_spec, describe, draw, figure_svg, proposal_kept
from xplain.display.checks import check
from xplain.methods.base import Cost
from xplain.methods.baselines import BaselineExplanation
from xplain.methods.classifiers import ClassifierPrediction, FitResult
from xplain.methods.predict import PredictResult, ZeroShotResult
from xplain.methods.compare import ExplainerComparison
from xplain.methods.counterfactual import ExplanationBase
from xplain.methods.counterfactual_tabular import TabularCounterfactualExplanation, TabularCounterfactualResult, shown
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

STATUS_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#8d6e00"}
STYLE = (
    "font-family:system-ui,sans-serif;border:1px solid #ddd;border-radius:6px;padding:.6rem .8rem;"
    "max-width:44rem;color:#222;background:#fff"
)


@singledispatch
def headline(result: Any) -> str:
    """The result's answer in one or two lines of HTML."""
    raise TypeError(f"no card known for {type(result).__name__}")


def _features(items: list[tuple[str, str]]) -> str:
    return ", ".join(f"<b>{escape(name)}</b> ({escape(sign)})" for name, sign in items) or "none"


@headline.register(PosthocExplanation)
def _(result: PosthocExplanation) -> str:
    """What the LLM named only when what is returned is its proposal; a repaired answer says what was returned,
    how much of it the LLM proposed, and what the LLM first proposed with its verdict."""
    answer = f"Predicted <b>{escape(result.predicted_label)}</b>; "
    returned = _features([(f.feature, f.direction) for f in result.features])
    proposed = result.proposed
    if proposed is None or proposal_kept(result):
        answer += f"the LLM ({escape(result.strategy)}) names {returned}"
    else:
        from_llm = sum(f.source == "llm" for f in result.features)
        verdict = proposed.faithfulness.verdict if proposed.faithfulness is not None else "not checked"
        answer += (
            f"verified: {returned} ({from_llm} of {len(result.features)} proposed by the LLM); "
            f"the LLM ({escape(result.strategy)}) first proposed "
            f"{_features([(f.feature, f.direction) for f in proposed.features])} ({escape(verdict)})"
        )
    return answer + (f"<br><span style='color:#c62828'>{escape(result.error)}</span>" if result.error else "")


@headline.register(BaselineExplanation)
def _(result: BaselineExplanation) -> str:
    top = [(n, f"{result.weights[n]:+.3g}") for n in result.ranking[:4]]
    return f"Predicted <b>{escape(result.predicted_label)}</b>; {escape(result.method)} ranks {_features(top)}"


@headline.register(ExplainerComparison)
def _(result: ExplainerComparison) -> str:
    rows = []
    for explanation in result.explanations:
        outcome = check(explanation)
        top = ", ".join(escape(name) for name in list(result.signed_importance(explanation))[:4])
        rows.append(
            f"<tr><td>{escape(result.label(explanation))}</td><td>{top}</td>"
            f"<td style='white-space:nowrap'>{escape(outcome.value)}</td><td>{_badge(outcome.status)}</td></tr>"
        )
    label = escape(result.explanations[0].predicted_label) if result.explanations else "?"
    return (
        f"Predicted <b>{label}</b>; {len(result.explanations)} explainers on the same row"
        "<table style='border-collapse:collapse;margin:.3rem 0;font-size:.85rem'>"
        "<tr><th align=left>explainer</th><th align=left>top features</th><th align=left>PGI / PGU</th><th></th></tr>"
        + "".join(rows)
        + "</table>"
    )


def diff_html(original: str, edited: str) -> str:
    """A word diff: removed words struck through in red, added ones underlined in green."""
    styles = {
        "removed": "color:#c62828;text-decoration:line-through",
        "added": "color:#2e7d32;text-decoration:underline",
    }
    return " ".join(
        escape(text) if kind == "same" else f"<span style='{styles[kind]}'>{escape(text)}</span>"
        for kind, text in token_diff(original, edited)
    )


def _flip(explanation: ExplanationBase) -> str:
    best = explanation.counterfactuals[0] if explanation.counterfactuals else None
    if best is None:
        return f"<b>{escape(str(explanation.original_prediction))}</b>: no counterfactual proposed"
    arrow = "→" if best.valid else "↛"
    return (
        f"<b>{escape(str(explanation.original_prediction))}</b> {arrow} <b>{escape(str(best.prediction))}</b> "
        f"(target probability {best.target_probability:.2f})"
    )


@headline.register(TabularCounterfactualExplanation)
def _(result: TabularCounterfactualExplanation) -> str:
    best = result.counterfactuals[0] if result.counterfactuals else None
    changes = ", ".join(f"{escape(c.feature)} {escape(shown(c.old))} → {escape(shown(c.new))}" for c in best.changes) if best else ""
    return _flip(result) + (f" by {changes}" if changes else "")


@headline.register(TextCounterfactualExplanation)
def _(result: TextCounterfactualExplanation) -> str:
    best = result.counterfactuals[0] if result.counterfactuals else None
    return _flip(result) + (f"<div style='margin:.3rem 0'>{diff_html(result.text, best.text)}</div>" if best else "")


@headline.register(TabularCounterfactualResult)
@headline.register(TextCounterfactualResult)
def _(result: TabularCounterfactualResult | TextCounterfactualResult) -> str:
    return "<br>".join(headline(e) for e in result.explanations[:5]) + (
        f"<br>… and {len(result.explanations) - 5} more inputs" if len(result.explanations) > 5 else ""
    )


@headline.register(ConceptEffectResult)
def _(result: ConceptEffectResult) -> str:
    change = escape(result.concept) + (f" → {escape(result.concept_value)}" if result.concept_value else "")
    if result.average_effect is None:
        return f"Changing <b>{change}</b>: no edit could be measured"
    return (
        f"Changing <b>{change}</b> moves {escape(result.output)} by <b>{result.average_effect:+.3f}</b> on average "
        f"over {result.texts_measured} texts"
    )


@headline.register(SASCResult)
def _(result: SASCResult) -> str:
    best = result.best
    return f"The module responds to: <b>{escape(best.explanation)}</b>" if best else "No explanation proposed"


@headline.register(IPromptResult)
def _(result: IPromptResult) -> str:
    best = result.candidates[0] if result.candidates else None
    return f"Best prompt: <b>{escape(best.prompt)}</b> (gain {best.gain:+.2f} nats)" if best else "No prompt proposed"


@headline.register(LMLDAPExplanation)
def _(result: LMLDAPExplanation) -> str:
    counts = Counter(p.label for p in result.predictions)
    return f"{len(result.predictions)} predictions: " + ", ".join(
        f"<b>{escape(k)}</b> ×{v}" for k, v in counts.most_common()
    )


@headline.register(TBMExplanation)
def _(result: TBMExplanation) -> str:
    top = sorted(result.concepts, key=lambda c: -abs(c.weight))[:4]
    return "Concepts by weight: " + _features([(c.concept, f"{c.weight:+.2f}") for c in top])


def cost_text(result: Any) -> str:
    cost: Cost | None = getattr(result, "cost", None)
    if cost is None:  # a counterfactual search's per-input explanation counts its own requests
        return f"{result.llm_requests} LLM requests, {result.blackbox_queries} black-box rows"
    tokens = cost.llm.prompt_tokens + cost.llm.completion_tokens
    cached = f" ({cost.llm.cache_hits} from the cache)" if cost.llm.cache_hits else ""
    return (
        f"{cost.llm.calls} LLM calls{cached}, {tokens:,} tokens, {cost.blackbox_queries:,} black-box rows, "
        f"{cost.seconds:.2f} s"
    )


def _badge(status: str) -> str:
    return (
        f"<span style='background:{STATUS_COLOURS[status]};color:#fff;border-radius:3px;padding:0 .4rem;"
        f"font-size:.8rem'>{status}</span>"
    )


def card_html(result: Any) -> str:
    outcome = check(result)
    spec = chart_spec(result)
    svg = figure_svg(draw(spec))
    name = type(result).__name__
    kind = escape(f"{result.method} · {name}" if hasattr(result, "method") else name)
    return (
        f"<div class='xplain-card' style='{STYLE}'>"
        f"<div style='font-size:.75rem;color:#777'>{kind}</div>"
        f"<div style='margin:.3rem 0'>{headline(result)}</div>"
        f"<div title='{escape(outcome.rule)}'>check: {escape(outcome.name)} {escape(outcome.value)} "
        f"{_badge(outcome.status)}</div>"
        f"<div style='font-size:.8rem;color:#555'>cost: {escape(cost_text(result))}</div>"
        f"<div class='xplain-figure' role='img' aria-label='{escape(describe(spec))}'>{svg}</div>"
        "</div>"
    )


@headline.register(PredictResult)
def _(result: PredictResult) -> str:
    found = result.prediction
    if found.label is None:
        return f"Output <b>{found.output:.4g}</b>"
    return f"Predicted <b>{escape(str(found.label))}</b> (p = {max(found.probabilities.values()):.2f})"


@headline.register(ZeroShotResult)
def _(result: ZeroShotResult) -> str:
    verdict = "agrees" if result.agrees else "disagrees"
    return (
        f"The black box predicts <b>{escape(str(result.blackbox.label))}</b>; the LLM says "
        f"<b>{escape(result.llm_label)}</b> ({verdict})"
    )


@headline.register(FitResult)
def _(result: FitResult) -> str:
    return (
        f"Fitted <b>{escape(result.name)}</b> ({escape(result.kind)}) on {result.n_train} examples: "
        f"{', '.join(escape(c) for c in result.classes)}"
    )


@headline.register(ClassifierPrediction)
def _(result: ClassifierPrediction) -> str:
    if result.lml is not None:
        reasons = "; ".join(escape(r) for r in result.lml.reasons)
        return f"Predicted <b>{escape(result.lml.label)}</b> because {reasons}"
    top = _features([(c.concept, f"{c.contribution:+.2g}") for c in result.tbm.contributions[:4]])
    return f"Predicted <b>{escape(result.tbm.label)}</b>; concepts {top}"
