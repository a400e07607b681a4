"""The black box's own answers, and the LLM's second opinion on them (zero-shot labels by log-likelihood)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.blackbox import BlackBox
from xplain.errors import InvalidInput
from xplain.llm import ScoreRequest
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.chat_answers import subject
from xplain.methods.catalog import ChatForm, Method, MethodContext, register
from xplain.prompts import load_prompt
from xplain.prompts.data import fence
from xplain.validation import describe_row


class Prediction(BaseModel):
    """A classifier's label and class probabilities, or a module's output."""

    label: str | int | None = None
    probabilities: dict[str, float] | None = None
    output: float | None = None


class PredictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictResult(MethodResult):
    method: str = "predict"
    prediction: Prediction


def prediction_of(blackbox: BlackBox, output: np.ndarray | float) -> Prediction:
    if not blackbox.is_classifier:
        return Prediction(output=float(output))
    classes = [c.item() if hasattr(c, "item") else c for c in blackbox.classes_]
    return Prediction(
        label=classes[int(np.argmax(output))], probabilities={str(c): float(p) for c, p in zip(classes, output)}
    )


async def predictions(blackbox: BlackBox, inputs: list[Any]) -> list[Prediction]:
    batch = np.asarray(inputs, dtype=float) if blackbox.kind == "tabular" else inputs
    outputs = await (blackbox.apredict_proba(batch) if blackbox.is_classifier else blackbox.apredict(batch))
    return [prediction_of(blackbox, output) for output in outputs]


async def _predict(ctx: MethodContext, rows: list[Any], options: PredictOptions) -> list[PredictResult]:
    with measure_cost(ctx.blackbox) as meter:
        found = await predictions(ctx.blackbox, rows)
    return [PredictResult(prediction=p, cost=c) for p, c in zip(found, meter.cost.split(len(rows)))]


def _answer(r: dict[str, Any]) -> str:
    prediction = r["prediction"]
    if prediction.get("probabilities") is None:
        return f"The model gives {prediction['output']} for {subject(r)}."
    label = str(prediction["label"])
    return f"The model predicts {label} for {subject(r)} (probability {round(prediction['probabilities'][label], 4)})."


register(
    Method(
        name="predict",
        description="The black box's prediction for each row (probabilities for classifiers, the output for modules).",
        inputs=("tabular_row", "text", "module"),
        options=PredictOptions,
        result=PredictResult,
        run=_predict,
        uses_llm=False,
        chat=ChatForm(
            " to know the model's prediction for one row.",
            (
                (r"\bpredict(?:s|ed|ion)?\b", 2),
                (r"\bclassif(?:y|ied|ies|ication)\b|\blabel(?:led|ed)?\b|\bverdict\b|\boutput\b", 1.5),
                (r"\bwhat (?:does|did|would) the model (?:say|think|output|give)\b", 2.5),
                (r"\bprobabilit|\bhow (?:likely|confident|sure|certain)\b|\bchance\b", 2),
                (r"\bis (?:it|this|row \d+|the \w+) (?:positive|negative|malignant|benign)\b", 1.5),
            ),
            _answer,
        ),
    )
)


class ZeroShotOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_names: dict[str, str] = Field(
        default_factory=dict,
        description="Words for the model's classes, e.g. {'0': 'negative', '1': 'positive'}; class names if unset.",
    )


class ZeroShotResult(MethodResult):
    method: str = "zero_shot"
    blackbox: Prediction
    llm_label: str
    llm_probabilities: dict[str, float]
    agrees: bool = Field(description="Whether the LLM's label is the black box's.")


async def _zero_shot(ctx: MethodContext, rows: list[Any], options: ZeroShotOptions) -> list[ZeroShotResult]:
    """The LLM's own label (by label log-likelihood) beside the black box's: a second opinion, and where they
    disagree, a row worth a closer look."""
    if not ctx.blackbox.is_classifier:
        raise InvalidInput("zero_shot needs a classifier")
    classes = [str(c.item() if hasattr(c, "item") else c) for c in ctx.blackbox.classes_]
    words = [options.label_names.get(c, c) for c in classes]
    template = load_prompt("zero_shot/label")
    with measure_cost(ctx.blackbox) as meter:
        found = await predictions(ctx.blackbox, rows)
        requests = [
            ScoreRequest(
                prompt=template.render(data=fence(describe_row(ctx.blackbox, x)), labels=", ".join(words)),
                continuations=[f" {w}" for w in words],
            )
            for x in rows
        ]
        scored = await ctx.llm.score(requests)
    results = []
    for prediction, scores, cost in zip(found, scored, meter.cost.split(len(rows))):
        logprobs = np.asarray(scores.logprobs)
        shares = np.exp(logprobs - logprobs.max())
        shares /= shares.sum()
        llm_label = classes[int(np.argmax(shares))]
        results.append(
            ZeroShotResult(
                blackbox=prediction,
                llm_label=llm_label,
                llm_probabilities={c: float(p) for c, p in zip(classes, shares)},
                agrees=llm_label == str(prediction.label),
                prompt_versions=[template.ref],
                cost=cost,
            )
        )
    return results


register(
    Method(
        name="zero_shot",
        description="The LLM labels each row itself (label log-likelihoods) and is compared with the black box.",
        inputs=("tabular_row", "text"),
        options=ZeroShotOptions,
        result=ZeroShotResult,
        run=_zero_shot,
        chat=ChatForm(
            " to know which label the LLM itself would give one row.",
            (r"\bzero[- ]?shot\b", r"\b(?:llm|language model)\b.{0,20}\b(?:itself|alone|own)\b.{0,20}\b(?:label|predict|say)"),
            "Asked itself, the LLM labels $subject $llm_label; whether that is the model's label: $agrees.",
        ),
    )
)
