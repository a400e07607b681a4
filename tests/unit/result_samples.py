"""One result of every kind, built by hand (no LLM): what the display tests show, plot, frame and round-trip."""

from __future__ import annotations

from xplain.llm import Usage
from xplain.methods.base import Cost
from xplain.methods.baselines import BaselineExplanation
from xplain.methods.compare import ExplainerComparison
from xplain.methods.counterfactual_tabular import (
    FeatureChange,
    TabularCounterfactual,
    TabularCounterfactualExplanation,
    TabularCounterfactualResult,
)
from xplain.methods.counterfactual_text import (
    ConceptEffectResult,
    IndividualEffect,
    TextCounterfactual,
    TextCounterfactualExplanation,
    TextCounterfactualResult,
)
from xplain.methods.iprompt import IPromptResult, PromptCandidate
from xplain.methods.lml_dap import LMLDAPExplanation, RowPrediction
from xplain.methods.posthoc import FeatureAttribution, PosthocExplanation
from xplain.methods.sasc import ExplanationCandidate, NgramActivation, SASCResult
from xplain.methods.tbm import ConceptContribution, TBMExplanation, TextExplanation

COST = Cost(llm=Usage(calls=2, prompt_tokens=300, completion_tokens=40, seconds=0.5), blackbox_queries=48, seconds=0.7)


def posthoc(pgi: float | None = 0.31, pgu: float | None = 0.04) -> PosthocExplanation:
    return PosthocExplanation(
        method="posthoc", cost=COST, strategy="perturbation", instance=[0.5, 1.0, 2.0], predicted_label="0",
        features=[FeatureAttribution(feature="debt", direction="-", rationale="more debt, less credit"),
                  FeatureAttribution(feature="age", direction="+", rationale="older")],
        pgi=pgi, pgu=pgu, llm_attempts=1,
    )  # fmt: skip


def baseline(method: str = "lime") -> BaselineExplanation:
    return BaselineExplanation(
        method=method, cost=COST, instance=[0.5, 1.0, 2.0], predicted_label="0", ranking=["debt", "age", "income"],
        weights={"age": 0.12, "income": -0.01, "debt": -0.4}, pgi=0.28, pgu=0.05,
    )  # fmt: skip


def tabular_explanation(valid: bool = True) -> TabularCounterfactualExplanation:
    candidate = TabularCounterfactual(
        valid=valid, prediction=1 if valid else 0, probability=0.7, target_probability=0.7 if valid else 0.3,
        edit_size=1, round=1, values=[0.5, 1.0, 0.2], changes=[FeatureChange(feature="debt", old=2.0, new=0.2)],
    )  # fmt: skip
    return TabularCounterfactualExplanation(
        original_prediction=0, original_probability=0.9, row=[0.5, 1.0, 2.0], counterfactuals=[candidate],
        rounds_used=1, llm_requests=1, blackbox_queries=3,
    )  # fmt: skip


def text_explanation(valid: bool = True) -> TextCounterfactualExplanation:
    candidate = TextCounterfactual(
        valid=valid, prediction="pos" if valid else "neg", probability=0.8, target_probability=0.8 if valid else 0.2,
        edit_size=1, round=1, text="a wonderful film",
    )  # fmt: skip
    return TextCounterfactualExplanation(
        original_prediction="neg", original_probability=0.9, text="a dreadful film", counterfactuals=[candidate],
        llm_requests=1, blackbox_queries=2,
    )  # fmt: skip


def samples() -> dict[str, object]:
    """Every kind of result, each passing its check."""
    return {
        "posthoc": posthoc(),
        "baseline": baseline(),
        "comparison": ExplainerComparison(
            instance=[0.5, 1.0, 2.0],
            predicted_label="approved",
            feature_names=["age", "income", "debt"],
            cost=COST,
            scores=[],
            explanations=[posthoc(), baseline("lime"), baseline("kernelshap")],
        ),  # fmt: skip
        "tabular_counterfactual": tabular_explanation(),
        "tabular_counterfactuals": TabularCounterfactualResult(
            cost=COST,
            feature_names=["age", "income", "debt"],
            constraints={},
            explanations=[tabular_explanation(), tabular_explanation(valid=False), tabular_explanation()],
        ),  # fmt: skip
        "text_counterfactual": text_explanation(),
        "text_counterfactuals": TextCounterfactualResult(cost=COST, mode="target", explanations=[text_explanation()]),
        "concept_effect": ConceptEffectResult(
            cost=COST,
            concept="tone",
            concept_value="cheerful",
            output="P(pos)",
            average_effect=0.2,
            texts_measured=3,
            individual=[
                IndividualEffect(text=t, edits=[t + "!"], original_output=0.3, edited_outputs=[0.3 + e], effect=e)
                for t, e in [("dull plot", 0.3), ("slow start", 0.25), ("odd cast", 0.05)]
            ],
        ),  # fmt: skip
        "sasc": SASCResult(
            cost=COST,
            n_ngrams=40,
            module_mean=0.1,
            module_std=0.5,
            top_ngrams=[NgramActivation(ngram="dog", activation=2.0)],
            candidates=[
                ExplanationCandidate(
                    explanation="animals",
                    score=1.4,
                    mean_related=0.9,
                    mean_unrelated=0.2,
                    related_texts=["a dog"],
                    unrelated_texts=["a car"],
                    shown_ngrams=["dog"],
                ),
                ExplanationCandidate(
                    explanation="pets",
                    score=None,
                    mean_related=None,
                    mean_unrelated=0.2,
                    related_texts=[],
                    unrelated_texts=["a car"],
                    shown_ngrams=["cat"],
                ),
            ],
        ),  # fmt: skip
        "iprompt": IPromptResult(
            cost=COST,
            baseline_loglik=-3.0,
            n_train=8,
            n_heldout=4,
            candidates=[
                PromptCandidate(
                    prompt="Add the numbers.",
                    loglik=-1.0,
                    gain=2.0,
                    iteration=1,
                    origin="mutated",
                    heldout_accuracy=0.75,
                ),
                PromptCandidate(prompt="Say a number.", loglik=-2.5, gain=0.5, iteration=0, origin="proposed"),
            ],
        ),  # fmt: skip
        "lml_dap": LMLDAPExplanation(
            cost=COST,
            summaries={"yes": ["x > 1"]},
            predictions=[
                RowPrediction(
                    label="yes",
                    confidence=0.8,
                    probabilities={"yes": 0.8, "no": 0.2},
                    reasons=["x high"],
                    retrieved_rows=[1, 2],
                    conditions=[],
                    fallback=False,
                ),
                RowPrediction(
                    label="no",
                    confidence=0.6,
                    probabilities={"yes": 0.4, "no": 0.6},
                    reasons=["majority"],
                    retrieved_rows=[3],
                    conditions=[],
                    fallback=True,
                ),
            ],
        ),  # fmt: skip
        "tbm": TBMExplanation(
            cost=COST,
            concepts=[
                ConceptContribution(concept="praise", rating=0, weight=1.5, contribution=0),
                ConceptContribution(concept="boredom", rating=0, weight=-0.8, contribution=0),
            ],
            texts=[
                TextExplanation(
                    label="pos",
                    probability=0.8,
                    contributions=[ConceptContribution(concept="praise", rating=2, weight=1.5, contribution=3.0)],
                )
            ],
        ),  # fmt: skip
    }
