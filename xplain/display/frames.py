"""Results as pandas frames: one row per feature, candidate, text or prediction, whichever the result lists."""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import pandas as pd

from xplain.methods.classifiers import ClassifierPrediction, FitResult
from xplain.methods.predict import PredictResult, ZeroShotResult
from xplain.methods.baselines import BaselineExplanation
from xplain.methods.compare import ExplainerComparison
from xplain.methods.counterfactual_tabular import TabularCounterfactualExplanation, TabularCounterfactualResult, shown
from xplain.methods.counterfactual_text import (
    ConceptEffectResult,
    TextCounterfactualExplanation,
    TextCounterfactualResult,
)
from xplain.methods.iprompt import IPromptResult
from xplain.methods.lml_dap import LMLDAPExplanation
from xplain.methods.posthoc import PosthocExplanation
from xplain.methods.sasc import SASCResult
from xplain.methods.tbm import TBMExplanation


@singledispatch
def to_frame(result: Any) -> pd.DataFrame:
    raise TypeError(f"no frame known for {type(result).__name__}")


@to_frame.register(PosthocExplanation)
def _(result: PosthocExplanation) -> pd.DataFrame:
    rows = [{"rank": i + 1, **f.model_dump()} for i, f in enumerate(result.features)]
    return pd.DataFrame(rows, columns=["rank", "feature", "direction", "rationale"])


@to_frame.register(BaselineExplanation)
def _(result: BaselineExplanation) -> pd.DataFrame:
    rows = [{"rank": i + 1, "feature": name, "weight": result.weights[name]} for i, name in enumerate(result.ranking)]
    return pd.DataFrame(rows, columns=["rank", "feature", "weight"])


@to_frame.register(ExplainerComparison)
def _(result: ExplainerComparison) -> pd.DataFrame:
    """Features down, explainers across: each explainer's signed importance (1 = its largest), 0 where unnamed."""
    columns = {result.label(e): result.signed_importance(e) for e in result.explanations}
    return pd.DataFrame(columns).reindex(result.feature_names).fillna(0.0).rename_axis("feature")


def _candidates(explanation: Any, input_index: int, extra: Any) -> list[dict[str, Any]]:
    common = {"input": input_index, "original_prediction": explanation.original_prediction}
    return [
        {
            **common,
            "candidate": j,
            "valid": c.valid,
            "prediction": c.prediction,
            "target_probability": c.target_probability,
            "edit_size": c.edit_size,
            **extra(c),
        }
        for j, c in enumerate(explanation.counterfactuals)
    ]


def _tabular_changes(candidate: Any) -> dict[str, Any]:
    return {"changes": ", ".join(f"{c.feature}: {shown(c.old)} -> {shown(c.new)}" for c in candidate.changes)}


@to_frame.register(TabularCounterfactualExplanation)
def _(result: TabularCounterfactualExplanation) -> pd.DataFrame:
    return pd.DataFrame(_candidates(result, 0, _tabular_changes))


@to_frame.register(TabularCounterfactualResult)
def _(result: TabularCounterfactualResult) -> pd.DataFrame:
    return pd.DataFrame([r for i, e in enumerate(result.explanations) for r in _candidates(e, i, _tabular_changes)])


@to_frame.register(TextCounterfactualExplanation)
def _(result: TextCounterfactualExplanation) -> pd.DataFrame:
    return pd.DataFrame(_candidates(result, 0, lambda c: {"text": c.text}))


@to_frame.register(TextCounterfactualResult)
def _(result: TextCounterfactualResult) -> pd.DataFrame:
    rows = [r for i, e in enumerate(result.explanations) for r in _candidates(e, i, lambda c: {"text": c.text})]
    return pd.DataFrame(rows)


@to_frame.register(ConceptEffectResult)
def _(result: ConceptEffectResult) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "text": i.text,
                "effect": i.effect,
                "original_output": i.original_output,
                "edits": len(i.edits),
                "dropped": len(i.dropped),
            }
            for i in result.individual
        ]
    )


@to_frame.register(SASCResult)
def _(result: SASCResult) -> pd.DataFrame:
    return pd.DataFrame(
        [c.model_dump(exclude={"related_texts", "unrelated_texts", "shown_ngrams"}) for c in result.candidates]
    )


@to_frame.register(IPromptResult)
def _(result: IPromptResult) -> pd.DataFrame:
    return pd.DataFrame([c.model_dump() for c in result.candidates])


@to_frame.register(LMLDAPExplanation)
def _(result: LMLDAPExplanation) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "label": p.label,
                "confidence": p.confidence,
                "fallback": p.fallback,
                "reasons": "; ".join(p.reasons),
                **{f"p({k})": v for k, v in p.probabilities.items()},
            }
            for p in result.predictions
        ]
    )


@to_frame.register(TBMExplanation)
def _(result: TBMExplanation) -> pd.DataFrame:
    return pd.DataFrame([{"concept": c.concept, "weight": c.weight} for c in result.concepts])


@to_frame.register(PredictResult)
def _(result: PredictResult) -> pd.DataFrame:
    found = result.prediction
    if found.probabilities is None:
        return pd.DataFrame([{"output": found.output}])
    return pd.DataFrame([{"class": c, "probability": p} for c, p in found.probabilities.items()])


@to_frame.register(ZeroShotResult)
def _(result: ZeroShotResult) -> pd.DataFrame:
    classes = list(result.llm_probabilities)
    rows = [
        {"class": c, "black box": (result.blackbox.probabilities or {}).get(c), "LLM": result.llm_probabilities[c]}
        for c in classes
    ]
    return pd.DataFrame(rows, columns=["class", "black box", "LLM"])


@to_frame.register(FitResult)
def _(result: FitResult) -> pd.DataFrame:
    if result.concepts:
        return pd.DataFrame([c.model_dump() for c in result.concepts])
    return pd.DataFrame([{"label": k, "pattern": v} for k, vs in (result.summaries or {}).items() for v in vs])


@to_frame.register(ClassifierPrediction)
def _(result: ClassifierPrediction) -> pd.DataFrame:
    if result.lml is not None:
        return pd.DataFrame([{"class": c, "probability": p} for c, p in result.lml.probabilities.items()])
    return pd.DataFrame([c.model_dump() for c in result.tbm.contributions])
