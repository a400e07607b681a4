"""An LLM strategy beside LIME and KernelSHAP on the same instances at the same black-box budget: each explainer's
ranking with its PGI / PGU, and FA where the truth is known (a linear model's |coef * (x - mean)|)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.blackbox import BlackBox
from xplain.llm import LLM
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.baselines import BaselineExplanation, background_rows, explain_baseline, explain_text_baseline
from xplain.methods.catalog import BackgroundRows, Method, MethodContext, register
from xplain.methods.checks import feature_agreement, linear_ground_truth
from xplain.methods.posthoc import CheckedFeatures, PosthocExplanation, PosthocOptions, Strategy, explain_tabular, explain_text
from xplain.methods.words import distinct_words

BASELINES = ("lime", "kernelshap")


class CompareOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = Field("perturbation", description="The LLM's strategy (texts: perturbation or prediction).")
    k: int = Field(4, ge=1, le=10, description="Top features compared and checked.")
    n_samples: int = Field(24, ge=4, le=1000, description="The LLM's neighbourhood rows per instance.")
    n_gap_samples: int = Field(8, ge=2, le=1000, description="Perturbed copies per instance for PGI / PGU, first round.")
    max_gap_samples: int = Field(
        64, ge=2, le=4000, description="Budget of perturbed copies: sampling doubles until the check decides."
    )
    seed: int = 0
    background: BackgroundRows = None


class ExplainerScore(BaseModel):
    explainer: str = Field(
        description="`posthoc:<strategy>` (the verified explanation), `posthoc:<strategy>:proposed` (the LLM's own "
        "answer), `posthoc:<strategy>:reasked` (its answer re-asked with the evidence, where the first was not kept), "
        "`posthoc:<strategy>:evidence_only` (the neighbourhood's top-k without the LLM), `lime` or "
        "`kernelshap`."
    )
    top: list[str] = Field(description="The top-k features (or words), most important first.")
    pgi: float | None
    pgu: float | None
    verdict: str | None = Field(
        description="The check's verdict on PGI - PGU with its interval: faithful, not faithful or inconclusive."
    )
    feature_agreement: float | None = Field(None, description="FA against the known truth, where there is one.")
    blackbox_queries: int
    llm_calls: int


class ExplainerComparison(MethodResult):
    """Several explainers on one instance: the LLM's explanation first, then LIME's and KernelSHAP's, each with
    the same check, and a score line per explainer."""

    method: str = "compare"
    instance: list[float] | str
    predicted_label: str
    feature_names: list[str] = Field(description="The model's columns (tables) or the text's distinct words.")
    truth: list[str] | None = Field(None, description="The true top-k, where the model is linear.")
    rows_per_explainer: int | None = Field(
        None,
        description="Black-box rows each explainer's ranking was built from (the LLM's neighbourhood size, given to "
        "LIME and KernelSHAP too); the checks after it are the same for all and counted in each one's queries."
    )
    scores: list[ExplainerScore]
    explanations: list[PosthocExplanation | BaselineExplanation] = Field(description="The LLM's first.")

    def signed_importance(self, explanation: PosthocExplanation | BaselineExplanation) -> dict[str, float]:
        """Feature name -> signed importance scaled to 1 at the largest, so explainers share one axis. The LLM
        gives ranks, not weights: its i-th of k features gets (k - i) / k, signed by its direction."""
        if isinstance(explanation, PosthocExplanation):
            k = len(explanation.features)
            return {
                f.feature: (1.0 if f.direction == "+" else -1.0) * (k - i) / k
                for i, f in enumerate(explanation.features)
            }
        top = max((abs(w) for w in explanation.weights.values()), default=0.0) or 1.0
        return {name: explanation.weights[name] / top for name in explanation.ranking if name in explanation.weights}

    def label(self, explanation: PosthocExplanation | BaselineExplanation) -> str:
        return f"LLM ({explanation.strategy})" if isinstance(explanation, PosthocExplanation) else explanation.method


def _score(name: str, top: list[str], found: PosthocExplanation | BaselineExplanation, truth, k: int) -> ExplainerScore:
    return _score_line(name, top, found, truth, k, queries=found.cost.blackbox_queries, llm_calls=found.cost.llm.calls)


def _checked_score(name: str, part: CheckedFeatures, truth, k: int) -> ExplainerScore:
    """A score line for a stage inside the LLM's explanation (its raw proposal, the evidence-only top-k): same
    neighbourhood rows, so no queries or LLM calls of its own beyond the explanation's line."""
    return _score_line(name, [f.feature for f in part.features], part, truth, k, queries=0, llm_calls=0)


def _score_line(name: str, top: list[str], checked, truth, k: int, *, queries: int, llm_calls: int) -> ExplainerScore:
    return ExplainerScore(
        explainer=name,
        top=top[:k],
        pgi=checked.pgi,
        pgu=checked.pgu,
        verdict=checked.faithfulness.verdict if checked.faithfulness is not None else None,
        feature_agreement=feature_agreement(truth, top, k) if truth else None,
        blackbox_queries=queries,
        llm_calls=llm_calls,
    )


def _linear_truth(blackbox: BlackBox, row: list[float], background: np.ndarray, label: str, k: int) -> list[str] | None:
    coef = getattr(blackbox.estimator, "coef_", None)
    if coef is None:
        return None
    coef = np.atleast_2d(coef)
    classes = [str(c) for c in blackbox.classes_]
    row_coef = coef[0] if len(coef) == 1 else coef[classes.index(label)]
    names = blackbox.feature_names or [f"x{i}" for i in range(len(row))]
    return [names[i] for i in linear_ground_truth(row_coef, row, background.mean(axis=0))[:k]]


async def compare_explainers(
    llm: LLM,
    blackbox: BlackBox,
    instances: Sequence[Any],
    background: np.ndarray | None = None,
    options: CompareOptions | None = None,
) -> list[ExplainerComparison]:
    """One comparison per instance (rows of a table, with `background` rows like the data; or texts): the LLM's
    explanation from one batched round, then LIME and KernelSHAP at the black-box rows the LLM used."""
    options = options or CompareOptions()
    llm_options = PosthocOptions(
        strategy=options.strategy, k=options.k, n_samples=options.n_samples, n_gap_samples=options.n_gap_samples,
        max_gap_samples=options.max_gap_samples, seed=options.seed,
    )  # fmt: skip
    tabular = blackbox.kind == "tabular"
    rows = [list(map(float, r)) for r in instances] if tabular else list(instances)
    with measure_cost(blackbox) as meter:
        if tabular:
            background = np.asarray(background, dtype=float)
            llm_found = await explain_tabular(llm, blackbox, np.asarray(rows), background, llm_options)
        else:
            llm_found = await explain_text(llm, blackbox, rows, llm_options)
        # every explainer gets the rows the LLM's neighbourhood used (n_samples, besides the instance itself); the
        # checks that follow are the same for all, and the LLM's repair checks are counted in its own queries
        budget = max(8, options.n_samples)
        common = dict(
            n_samples=budget, k=options.k, n_gap_samples=options.n_gap_samples,
            max_gap_samples=options.max_gap_samples, seed=options.seed,
        )  # fmt: skip
        baselines = {
            name: await explain_baseline(name, blackbox, np.asarray(rows), background, **common)
            if tabular
            else await explain_text_baseline(blackbox, rows, method=name, **common)
            for name in BASELINES
        }
    names = (blackbox.feature_names or [f"x{i}" for i in range(len(rows[0]))]) if tabular else None
    results = []
    for i, (row, explained, cost) in enumerate(zip(rows, llm_found, meter.cost.split(len(rows)))):
        truth = _linear_truth(blackbox, row, background, explained.predicted_label, options.k) if tabular else None
        scores = [_score(f"posthoc:{options.strategy}", [f.feature for f in explained.features], explained, truth, options.k)]
        scores += [
            _checked_score(f"posthoc:{options.strategy}:{part}", getattr(explained, part), truth, options.k)
            for part in ("proposed", "reasked", "evidence_only")
            if getattr(explained, part) is not None
        ]
        scores += [_score(name, found[i].ranking, found[i], truth, options.k) for name, found in baselines.items()]
        results.append(
            ExplainerComparison(
                instance=row, predicted_label=explained.predicted_label, truth=truth, scores=scores,
                rows_per_explainer=budget,
                feature_names=list(names) if tabular else distinct_words(row),
                explanations=[explained, *(found[i] for found in baselines.values())],
                prompt_versions=explained.prompt_versions, cost=cost,
            )  # fmt: skip
        )
    return results


async def _compare(ctx: MethodContext, rows: list[Any], options: CompareOptions) -> list[ExplainerComparison]:
    background = background_rows(ctx, options.background) if ctx.blackbox.kind == "tabular" else None
    return await compare_explainers(ctx.llm, ctx.blackbox, rows, background, options)


register(
    Method(
        name="compare",
        description="An LLM strategy, LIME and KernelSHAP side by side on the same instances at the same black-box "
        "budget: each one's top features, PGI, PGU, and FA where the truth is known.",
        inputs=("tabular_row", "text"),
        options=CompareOptions,
        result=ExplainerComparison,
        run=_compare,
        long_running=True,
    )
)
