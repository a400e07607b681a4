"""Explainers side by side on the same instances at the same black-box budget — an LLM strategy (posthoc),
occlusion, LIME, KernelSHAP, any of them: each one's ranking with its PGI / PGU, FA where the truth is known (a
linear model's |coef * (x - mean)|), and how far the rankings agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from xplain.blackbox import BlackBox
from xplain.llm import LLM
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.baselines import BaselineExplanation, background_rows, explain_baseline, explain_text_baseline
from xplain.errors import InvalidInput
from xplain.methods.catalog import BackgroundRows, ChatForm, Method, MethodContext, register
from xplain.methods.checks import feature_agreement, linear_ground_truth
from xplain.methods.posthoc import (
    CheckedFeatures, PosthocExplanation, PosthocOptions, Proposal, Strategy, explain_tabular, explain_text,
)  # fmt: skip
from xplain.methods.words import distinct_words

Explainer = Literal["posthoc", "occlusion", "lime", "kernelshap"]


class CompareOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    explainers: list[Explainer] = Field(
        ["posthoc", "lime", "kernelshap"],
        min_length=1,
        max_length=4,
        description="The explainers to run, each once; the first is the one the others' agreement is measured "
        "against. posthoc is the LLM's (it needs an LLM); occlusion replaces each column by reference rows' values "
        "(texts: removes each word).",
    )
    strategy: Strategy = Field("perturbation", description="posthoc's strategy (texts: perturbation or prediction).")
    proposal: Proposal = Field(
        "auto", description="How posthoc's LLM proposes: generate, choose (texts) or auto (see posthoc's options)."
    )
    k: int = Field(4, ge=1, le=10, description="Top features compared and checked.")
    n_samples: int = Field(24, ge=4, le=1000, description="The LLM's neighbourhood rows per instance.")
    n_gap_samples: int = Field(8, ge=2, le=1000, description="Perturbed copies per instance for PGI / PGU, first round.")
    max_gap_samples: int = Field(
        64, ge=2, le=4000, description="Budget of perturbed copies: sampling doubles until the check decides."
    )
    seed: int = 0
    background: BackgroundRows = None

    @field_validator("explainers")
    @classmethod
    def _each_once(cls, explainers: list[str]) -> list[str]:
        if len(set(explainers)) != len(explainers):
            raise ValueError("name each explainer once")
        return explainers


class ExplainerScore(BaseModel):
    explainer: str = Field(
        description="`posthoc:<strategy>` (the verified explanation), `posthoc:<strategy>:proposed` (the LLM's own "
        "answer), `posthoc:<strategy>:reasked` (its answer re-asked with the evidence, where the first was not kept), "
        "`posthoc:<strategy>:evidence_only` (the neighbourhood's top-k without the LLM), `occlusion`, "
        "`lime` or `kernelshap`."
    )
    top: list[str] = Field(description="The top-k features (or words), most important first.")
    pgi: float | None
    pgu: float | None
    verdict: str | None = Field(
        description="The check's verdict on PGI - PGU with its interval: faithful, not faithful or inconclusive."
    )
    feature_agreement: float | None = Field(None, description="FA against the known truth, where there is one.")
    agreement: float = Field(
        description="Share of the first explainer's top-k that this one names in its own top-k (1 for the first)."
    )
    blackbox_queries: int
    llm_calls: int


class ExplainerComparison(MethodResult):
    """Several explainers on one instance, in the order asked, each with the same check, a score line per
    explainer, and where they agree."""

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
    reference: str = Field("", description="The explainer the others' agreement is measured against (the first).")
    agreement: dict[str, float] = Field(
        default_factory=dict,
        description="Each other explainer -> share of the reference's top-k it also names in its own top-k.",
    )
    consensus: list[str] = Field(
        default_factory=list,
        description="The features in the top-k of more than half of the explainers (of both, for two), by their "
        "mean rank.",
    )
    scores: list[ExplainerScore]
    explanations: list[PosthocExplanation | BaselineExplanation] = Field(description="In the order asked.")

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


def top_of(explanation: PosthocExplanation | BaselineExplanation) -> list[str]:
    """An explanation's ranking, most important first."""
    if isinstance(explanation, PosthocExplanation):
        return [f.feature for f in explanation.features]
    return list(explanation.ranking)


def overlap(reference: list[str], other: list[str], k: int) -> float:
    """Share of `reference`'s top-k that `other` names in its own top-k (case folded: words are compared as words)."""
    first = [name.lower() for name in reference[:k]]
    return len(set(first) & {name.lower() for name in other[:k]}) / max(len(first), 1)


def consensus(rankings: list[list[str]], k: int) -> list[str]:
    """The names in the top-k of more than half of the rankings (of both, for two), by mean rank (a ranking that
    leaves one out of its top-k counts it at rank k); ties by first appearance."""
    counted: dict[str, list[int]] = {}
    for ranking in rankings:
        for rank, name in enumerate(ranking[:k]):
            counted.setdefault(name, []).append(rank)
    held = [name for name, ranks in counted.items() if 2 * len(ranks) > len(rankings)]
    return sorted(held, key=lambda n: (sum(counted[n]) + k * (len(rankings) - len(counted[n]))) / len(rankings))


def _score(name: str, found: PosthocExplanation | BaselineExplanation, truth, k: int, first: list[str]) -> ExplainerScore:
    top = top_of(found)
    return _score_line(
        name, top, found, truth, k, first, queries=found.cost.blackbox_queries, llm_calls=found.cost.llm.calls
    )


def _checked_score(name: str, part: CheckedFeatures, truth, k: int, first: list[str]) -> ExplainerScore:
    """A score line for a stage inside the LLM's explanation (its raw proposal, the evidence-only top-k): same
    neighbourhood rows, so no queries or LLM calls of its own beyond the explanation's line."""
    return _score_line(name, [f.feature for f in part.features], part, truth, k, first, queries=0, llm_calls=0)


def _score_line(
    name: str, top: list[str], checked, truth, k: int, first: list[str], *, queries: int, llm_calls: int
) -> ExplainerScore:
    return ExplainerScore(
        explainer=name,
        top=top[:k],
        pgi=checked.pgi,
        pgu=checked.pgu,
        verdict=checked.faithfulness.verdict if checked.faithfulness is not None else None,
        feature_agreement=feature_agreement(truth, top, k) if truth else None,
        agreement=overlap(first, top, k),
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


async def compare(
    llm: LLM | None,
    blackbox: BlackBox,
    instances: Sequence[Any],
    background: np.ndarray | None = None,
    options: CompareOptions | None = None,
) -> list[ExplainerComparison]:
    """One comparison per instance (rows of a table, with `background` rows like the data; or texts): each
    explainer asked for, in order — the LLM's from one batched round — at the same black-box rows: the LLM's
    neighbourhood size (n_samples) is LIME's and KernelSHAP's budget, and occlusion's (a column per reference row
    it takes values from; a text: one row per word)."""
    options = options or CompareOptions()
    if "posthoc" in options.explainers and llm is None:
        raise InvalidInput("the posthoc explainer needs an LLM; leave it out of explainers or configure one")
    tabular = blackbox.kind == "tabular"
    rows = [list(map(float, r)) for r in instances] if tabular else list(instances)
    if tabular:
        background = np.asarray(background, dtype=float)
    # every explainer gets the rows the LLM's neighbourhood uses (n_samples, besides the instance itself); the
    # checks that follow are the same for all, and the LLM's repair checks are counted in its own queries
    budget = max(8, options.n_samples)
    common = dict(
        n_samples=budget, k=options.k, n_gap_samples=options.n_gap_samples, max_gap_samples=options.max_gap_samples,
        seed=options.seed,
    )  # fmt: skip
    found: dict[str, list[PosthocExplanation | BaselineExplanation]] = {}
    with measure_cost(blackbox) as meter:
        for name in options.explainers:
            if name == "posthoc":
                llm_options = PosthocOptions(
                    strategy=options.strategy, proposal=options.proposal, **{**common, "n_samples": options.n_samples}
                )
                found[name] = (
                    await explain_tabular(llm, blackbox, np.asarray(rows), background, llm_options)
                    if tabular
                    else await explain_text(llm, blackbox, rows, llm_options)
                )
            elif tabular:
                found[name] = await explain_baseline(name, blackbox, np.asarray(rows), background, **common)
            else:
                found[name] = await explain_text_baseline(blackbox, rows, method=name, **common)
    names = (blackbox.feature_names or [f"x{i}" for i in range(len(rows[0]))]) if tabular else None
    results = []
    for i, (row, cost) in enumerate(zip(rows, meter.cost.split(len(rows)))):
        explained = [found[name][i] for name in options.explainers]
        label = explained[0].predicted_label
        truth = _linear_truth(blackbox, row, background, label, options.k) if tabular else None
        first = top_of(explained[0])
        scores = []
        for name, explanation in zip(options.explainers, explained):
            line = f"posthoc:{options.strategy}" if name == "posthoc" else name
            scores.append(_score(line, explanation, truth, options.k, first))
            if name == "posthoc":
                scores += [
                    _checked_score(f"{line}:{part}", getattr(explanation, part), truth, options.k, first)
                    for part in ("proposed", "reasked", "evidence_only")
                    if getattr(explanation, part) is not None
                ]
        results.append(
            ExplainerComparison(
                instance=row, predicted_label=label, truth=truth, scores=scores, rows_per_explainer=budget,
                feature_names=list(names) if tabular else distinct_words(row),
                reference=options.explainers[0],
                agreement={
                    name: overlap(first, top_of(e), options.k)
                    for name, e in zip(options.explainers[1:], explained[1:])
                },
                consensus=consensus([top_of(e) for e in explained], options.k),
                explanations=explained,
                prompt_versions=sorted({v for e in explained for v in e.prompt_versions}), cost=cost,
            )  # fmt: skip
        )
    return results


async def _compare(ctx: MethodContext, rows: list[Any], options: CompareOptions) -> list[ExplainerComparison]:
    background = background_rows(ctx, options.background) if ctx.blackbox.kind == "tabular" else None
    return await compare(ctx.llm, ctx.blackbox, rows, background, options)


#: How questions name an explainer, and a comparison, for the chat's cues.
_EXPLAINER = r"\b(?:lime|(?:kernel[ -]?)?shap(?:ley)?|occlusion|word removal|post[- ]?hoc|explainers?)\b"
_COMPARED = r"\b(?:compare[ds]?|comparison|agree\w*|consistent|versus|vs|the same (?:words|features))\b"

register(
    Method(
        name="compare",
        description="Explainers side by side — the LLM's (posthoc), occlusion, LIME, KernelSHAP, as listed — on the "
        "same instances at the same black-box budget: each one's top features, PGI, PGU, FA where the truth is "
        "known, and how far they agree.",
        inputs=("tabular_row", "text"),
        options=CompareOptions,
        result=ExplainerComparison,
        run=_compare,
        long_running=True,
        chat=ChatForm(
            " to compare explanation methods such as LIME and SHAP.",
            (r"\bexplainers?\b|\bexplanation methods?\b|\bother methods?\b",
             rf"(?:{_EXPLAINER}|\bmethods?\b).{{0,60}}{_COMPARED}|{_COMPARED}.{{0,60}}(?:{_EXPLAINER}|\bmethods?\b)",
             rf"{_EXPLAINER}.{{0,60}}{_EXPLAINER}"),
            "On $subject the model predicts $predicted_label. Features in the top of most explainers: $consensus. "
            "Share of ${reference}'s top features each other explainer also names: $agreement.",
        ),
    )
)
