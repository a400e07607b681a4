"""Several explainers on the same instances: the LLM's ranking beside LIME's and KernelSHAP's, each with the same
PGI / PGU check, so a reader sees whether the LLM found what the classical explainers found."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from xplain.blackbox import BlackBox
from xplain.llm import LLM
from xplain.methods.base import Cost, MethodResult
from xplain.methods.baselines import BaselineExplanation, explain_baseline
from xplain.methods.posthoc import PosthocExplanation, PosthocOptions, explain_tabular


class ExplainerComparison(MethodResult):
    method: str = "compare"
    instance: list[float] | str
    feature_names: list[str] = Field(description="The model's columns, in order.")
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


async def compare_explainers(
    llm: LLM,
    blackbox: BlackBox,
    instances: np.ndarray,
    background: np.ndarray,
    options: PosthocOptions | None = None,
    *,
    baselines: tuple[str, ...] = ("lime", "kernelshap"),
    n_samples: int = 100,
) -> list[ExplainerComparison]:
    """One comparison per instance: the LLM's explanation (one batched round for all instances) and each baseline's
    at `n_samples` model rows, checked with the same k, sigma and seed."""
    options = options or PosthocOptions()
    instances = np.atleast_2d(np.asarray(instances, dtype=float))
    llm_explanations = await explain_tabular(llm, blackbox, instances, background, options)
    common = dict(
        n_samples=n_samples, k=options.k, sigma=options.sigma, n_gap_samples=options.n_gap_samples, seed=options.seed
    )
    by_baseline = [await explain_baseline(name, blackbox, instances, background, **common) for name in baselines]
    names = blackbox.feature_names or [f"x{i}" for i in range(instances.shape[1])]
    comparisons = []
    for i, x in enumerate(instances):
        explanations = [llm_explanations[i], *(b[i] for b in by_baseline)]
        comparisons.append(
            ExplainerComparison(
                instance=x.tolist(),
                feature_names=list(names),
                explanations=explanations,
                prompt_versions=llm_explanations[i].prompt_versions,
                cost=_total(e.cost for e in explanations),
            )
        )
    return comparisons


def _total(costs) -> Cost:
    total = Cost()
    for cost in costs:
        total = Cost(
            llm=total.llm + cost.llm,
            blackbox_queries=total.blackbox_queries + cost.blackbox_queries,
            seconds=total.seconds + cost.seconds,
        )
    return total
