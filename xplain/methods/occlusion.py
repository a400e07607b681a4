"""Occlusion: which inputs drive one prediction. Each feature is set to its typical value in the data (each word of
a text removed) one at a time, the black box re-queried, and the drop in the probability of the predicted class
reported — with a PGI / PGU check of the top inputs, so the ranking says whether the model bears it out."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.errors import InvalidInput
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.catalog import BackgroundRows, ChatForm, Method, MethodContext, register
from xplain.methods.chat_answers import check_words, signed_list, subject
from xplain.methods.checks import Gaps, prediction_gaps, text_prediction_gaps
from xplain.methods.reference_data import ReferenceData, rounded
from xplain.methods.words import distinct_words, remove_words

CHECKED = 3  # the top effects whose faithfulness PGI / PGU checks
MAX_WORDS = 60


class OcclusionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top: int = Field(6, ge=1, le=20, description="How many features (or words) to report, largest effect first.")
    background: BackgroundRows = None


class EffectCheck(BaseModel):
    """PGI / PGU of the top-k inputs: perturbing them should move the prediction more than perturbing the rest; the
    verdict is decisive only when the interval of PGI - PGU excludes zero."""

    top_k: int
    pgi: float | None
    pgu: float | None
    verdict: str
    interval: list[float] | None = None
    draws: int | None = None


class OcclusionResult(MethodResult):
    method: str = "occlusion"
    predicted: str
    probability: float = Field(description="The predicted class's probability for the input as it is.")
    perturbation: str = Field(description="What was done to each input, one at a time.")
    effects: dict[str, float] = Field(
        description="Drop in P(predicted) per perturbed input, largest |drop| first (positive: the input supports it)."
    )
    set_to: dict[str, Any] | None = Field(None, description="Tables: the value each feature was set to.")
    check: EffectCheck


def effect_check(gaps: Gaps | None, k: int) -> EffectCheck:
    if gaps is None:
        return EffectCheck(top_k=k, pgi=None, pgu=None, verdict="inconclusive")
    low, high = gaps.check.interval
    return EffectCheck(
        top_k=k, pgi=rounded(gaps.pgi), pgu=rounded(gaps.pgu), verdict=gaps.check.verdict or "inconclusive",
        interval=[rounded(low), rounded(high)], draws=gaps.check.n,
    )  # fmt: skip


def typical_values(data: ReferenceData) -> np.ndarray:
    """Each column's typical value: a number's median, a category's or boolean's most common value (missing
    values aside)."""
    rows = np.asarray(data.rows)
    typical = np.zeros(rows.shape[1])
    for j, column in enumerate(data.schema.columns):
        present = rows[~np.isnan(rows[:, j]), j]
        if not len(present):
            typical[j] = np.nan
        elif column.discrete:
            codes, counts = np.unique(present, return_counts=True)
            typical[j] = codes[np.argmax(counts)]
        else:
            typical[j] = np.median(present)
    return typical


def _ranked(data: ReferenceData, probabilities: np.ndarray, names: list[str], top: int) -> tuple[int, dict[str, float]]:
    """The class predicted for row 0, and the effect of each perturbation (rows 1..) on its probability."""
    predicted = int(np.argmax(probabilities[0]))
    effects = probabilities[0, predicted] - probabilities[1:, predicted]
    order = np.argsort(-np.abs(effects), kind="stable")[:top]
    return predicted, {names[i]: rounded(effects[i]) for i in order}


async def tabular_occlusion(data: ReferenceData, row: np.ndarray, top: int) -> OcclusionResult:
    original = np.asarray(row, dtype=np.float64)
    rows = np.asarray(data.rows)
    typical = typical_values(data)
    variants = np.repeat(original[None, :], len(original), axis=0)
    variants[np.arange(len(original)), np.arange(len(original))] = typical
    probabilities = await data.blackbox.apredict_proba(np.vstack([original, variants]))
    names = data.feature_names
    predicted, effects = _ranked(data, probabilities, names, top)
    checked = [names.index(name) for name in list(effects)[:CHECKED]]
    [gaps] = await prediction_gaps(
        data.blackbox, original, [checked], scale=data.schema.scale(rows), sigma=0.3, n_samples=16, background=rows
    )
    return OcclusionResult(
        predicted=data.class_names[predicted],
        probability=rounded(probabilities[0, predicted]),
        perturbation="feature set to the data median (a category or boolean to its most common value)",
        effects=effects,
        set_to={name: data.value(names.index(name), typical[names.index(name)]) for name in effects},
        check=effect_check(gaps, len(checked)),
    )


async def text_occlusion(data: ReferenceData, text: str, top: int) -> OcclusionResult:
    words = distinct_words(text, MAX_WORDS)
    if not words:
        raise InvalidInput("occlusion removes a text's words, and this one has none")
    variants = [remove_words(text, [w]) for w in words]
    probabilities = await data.blackbox.apredict_proba([text, *variants])
    predicted, effects = _ranked(data, probabilities, words, top)
    checked = list(effects)[:CHECKED]
    [gaps] = await text_prediction_gaps(data.blackbox, [text], [checked], n_samples=16)
    return OcclusionResult(
        predicted=data.class_names[predicted],
        probability=rounded(probabilities[0, predicted]),
        perturbation="word removed",
        effects=effects,
        check=effect_check(gaps, len(checked)),
    )


async def _occlusion(ctx: MethodContext, rows: list[Any], options: OcclusionOptions) -> list[OcclusionResult | Exception]:
    if ctx.blackbox.kind == "tabular":
        reference = options.background if options.background is not None else ctx.reference
        data = ReferenceData.of(ctx.blackbox, reference, what="occlusion on a table (medians of the data)")
    else:  # a text's words need no data: the texts themselves stand in for it
        data = ReferenceData(ctx.blackbox, list(rows))
    results: list[OcclusionResult | Exception] = []
    for row in rows:
        with measure_cost(ctx.blackbox) as meter:
            try:
                if data.kind == "tabular":
                    if np.isnan(np.asarray(row, dtype=float)).any():
                        raise InvalidInput("occlusion cannot perturb a missing number: fill the row's missing values")
                    result = await tabular_occlusion(data, np.asarray(row, dtype=float), options.top)
                else:
                    result = await text_occlusion(data, row, options.top)
            except InvalidInput as error:
                results.append(error)
                continue
        result.cost = meter.cost
        results.append(result)
    return results


def _answer(r: dict[str, Any]) -> str:
    perturbation = r["perturbation"].replace("feature set", "set").replace("word removed", "removed")
    return (
        f"The model predicts {r['predicted']} for {subject(r)} (probability {r['probability']}). The inputs that move "
        f"it most, as the drop in P({r['predicted']}) when each is {perturbation}: {signed_list(r['effects'])}."
        f"{check_words(r.get('check'))}"
    )


register(
    Method(
        name="occlusion",
        description="Which inputs drive one prediction: each feature set to its typical value in the data (each word "
        "removed) one at a time, the drop in the predicted class's probability, with a PGI / PGU check of the top "
        "inputs.",
        inputs=("tabular_row", "text"),
        options=OcclusionOptions,
        result=OcclusionResult,
        run=_occlusion,
        uses_llm=False,
        chat=ChatForm(
            " to know why the model made its prediction for one row.",
            (
                (r"\bwhy\b", 3),
                (r"\bexplain|\bexplanation|\breasons?\b|\bjustif", 2.5),
                (r"\bwhat (?:drives|drove|made|makes|led|causes|caused)\b", 2.5),
                (r"\b(?:features?|words?|inputs?|factors?)\b.{0,30}\b(?:drive|drove|matter|mattered|influence[ds]?|"
                 r"behind|responsible|contribut)", 2),
                (r"\bcontribut", 1.5),
                (r"\bfor (?:this|that|the) (?:row|review|case|patient|prediction)\b", 0.5),
                (r"\bocclu", 4),
            ),
            _answer,
        ),
    )
)
