"""An LLM strategy beside LIME and KernelSHAP on the same instances at the same black-box budget: each explainer's
ranking with its PGI / PGU, and FA where the truth is known (a linear model's |coef * (x - mean)|)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.baselines import BaselineExplanation, background_rows, explain_baseline, explain_text_baseline
from xplain.methods.catalog import Method, MethodContext, register
from xplain.methods.checks import feature_agreement, linear_ground_truth
from xplain.methods.posthoc import PosthocExplanation, PosthocOptions, Strategy, explain_tabular, explain_text

BASELINES = ("lime", "kernelshap")


class CompareOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = Field("perturbation", description="The LLM's strategy (texts: perturbation or prediction).")
    k: int = Field(4, ge=1, le=10, description="Top features compared and checked.")
    n_samples: int = Field(24, ge=4, le=1000, description="The LLM's neighbourhood rows per instance.")
    n_gap_samples: int = Field(8, ge=1, le=512, description="Perturbed copies per instance for PGI / PGU.")
    seed: int = 0
    background: list[list[float]] | None = Field(
        None,
        max_length=10_000,
        description="Tables: rows like the training data; the model's reference rows if unset.",
        json_schema_extra={"front_data": True},
    )


class ExplainerScore(BaseModel):
    explainer: str = Field(description="`posthoc:<strategy>`, `lime` or `kernelshap`.")
    top: list[str] = Field(description="The top-k features (or words), most important first.")
    pgi: float | None
    pgu: float | None
    faithful: bool | None = Field(description="PGI > PGU; None where either is missing.")
    feature_agreement: float | None = Field(None, description="FA against the known truth, where there is one.")
    blackbox_queries: int
    llm_calls: int


class ComparisonResult(MethodResult):
    method: str = "compare"
    instance: list[float] | str
    predicted_label: str
    truth: list[str] | None = Field(None, description="The true top-k, where the model is linear.")
    explainers: list[ExplainerScore]


def _score(name: str, top: list[str], found: PosthocExplanation | BaselineExplanation, truth, k: int) -> ExplainerScore:
    return ExplainerScore(
        explainer=name,
        top=top[:k],
        pgi=found.pgi,
        pgu=found.pgu,
        faithful=None if found.pgi is None or found.pgu is None else found.pgi > found.pgu,
        feature_agreement=feature_agreement(truth, top, k) if truth else None,
        blackbox_queries=found.cost.blackbox_queries,
        llm_calls=found.cost.llm.calls,
    )


def _linear_truth(ctx: MethodContext, row: list[float], background: np.ndarray, label: str, k: int) -> list[str] | None:
    coef = getattr(ctx.blackbox.estimator, "coef_", None)
    if coef is None:
        return None
    coef = np.atleast_2d(coef)
    classes = [str(c) for c in ctx.blackbox.classes_]
    row_coef = coef[0] if len(coef) == 1 else coef[classes.index(label)]
    names = ctx.blackbox.feature_names or [f"x{i}" for i in range(len(row))]
    return [names[i] for i in linear_ground_truth(row_coef, row, background.mean(axis=0))[:k]]


async def _compare(ctx: MethodContext, rows: list[Any], options: CompareOptions) -> list[ComparisonResult]:
    llm_options = PosthocOptions(
        strategy=options.strategy, k=options.k, n_samples=options.n_samples,
        n_gap_samples=options.n_gap_samples, seed=options.seed,
    )  # fmt: skip
    tabular = ctx.blackbox.kind == "tabular"
    with measure_cost(ctx.blackbox) as meter:
        if tabular:
            background = background_rows(ctx, options.background)
            llm = await explain_tabular(ctx.llm, ctx.blackbox, np.asarray(rows), background, llm_options)
        else:
            llm = await explain_text(ctx.llm, ctx.blackbox, rows, llm_options)
        # the baselines get the black-box rows the LLM's neighbourhood used, so the comparison is at equal budget
        budget = max(8, max(e.cost.blackbox_queries for e in llm))
        common = dict(n_samples=budget, k=options.k, n_gap_samples=options.n_gap_samples, seed=options.seed)
        baselines = {
            name: await explain_baseline(name, ctx.blackbox, np.asarray(rows), background, **common)
            if tabular
            else await explain_text_baseline(ctx.blackbox, rows, method=name, **common)
            for name in BASELINES
        }
    results = []
    for i, (row, explained, cost) in enumerate(zip(rows, llm, meter.cost.split(len(rows)))):
        truth = _linear_truth(ctx, row, background, explained.predicted_label, options.k) if tabular else None
        scores = [_score(f"posthoc:{options.strategy}", [f.feature for f in explained.features], explained, truth, options.k)]
        scores += [_score(name, found[i].ranking, found[i], truth, options.k) for name, found in baselines.items()]
        results.append(
            ComparisonResult(
                instance=row, predicted_label=explained.predicted_label, truth=truth, explainers=scores,
                prompt_versions=explained.prompt_versions, cost=cost,
            )  # fmt: skip
        )
    return results


register(
    Method(
        name="compare",
        description="An LLM strategy, LIME and KernelSHAP side by side on the same instances at the same black-box "
        "budget: each one's top features, PGI, PGU, and FA where the truth is known.",
        inputs=("tabular_row", "text"),
        options=CompareOptions,
        result=ComparisonResult,
        run=_compare,
        long_running=True,
    )
)
