"""The model's score and mistakes on labelled data: its accuracy on the reference rows' true labels (or on the
labelled examples given) and the rows it gets wrong."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.errors import InvalidInput
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.catalog import ChatForm, Method, MethodContext, register
from xplain.methods.reference_data import ReferenceData, rounded
from xplain.validation import to_model_input


class ModelScoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_mistakes: int = Field(5, ge=0, le=20, description="How many misclassified rows to list.")


class Mistake(BaseModel):
    row: int
    predicted: str
    true_label: str


class ModelScoreResult(MethodResult):
    method: str = "model_score"
    rows: int = Field(description="Labelled rows scored.")
    accuracy: float
    mistakes: int
    mistake_examples: list[Mistake] = Field(description="The first rows the model gets wrong, in data order.")


def labelled_data(ctx: MethodContext, items: list[Any]) -> ReferenceData:
    """Examples given (`{"row": [...], "label": L}` or `{"text": "...", "label": L}`), else the reference rows with
    their true labels; refused where there are no labels to score against."""
    if items:
        if not all(isinstance(item, dict) and "label" in item for item in items):
            raise InvalidInput('model_score takes labelled examples: {"row": [...], "label": L} or {"text": ..., "label": L}')
        rows = [to_model_input(ctx.blackbox, item["text"] if "text" in item else item.get("row")) for item in items]
        return ReferenceData(ctx.blackbox, rows, [str(item["label"]) for item in items])
    data = ReferenceData.of(ctx.blackbox, ctx.reference, ctx.reference_labels, what="model_score")
    if data.labels is None:
        raise InvalidInput(
            "model_score compares the model with true labels, and this model's data has none: give labelled "
            "examples, or register the model with a reference file and its `label_column`"
        )
    return data


async def _model_score(ctx: MethodContext, items: list[Any], options: ModelScoreOptions) -> ModelScoreResult:
    data = labelled_data(ctx, items)
    with measure_cost(ctx.blackbox) as meter:
        predicted = np.asarray(await data.blackbox.apredict(data.rows)).astype(str)
    truth = np.asarray(data.labels).astype(str)
    wrong = np.flatnonzero(predicted != truth)
    return ModelScoreResult(
        rows=len(truth),
        accuracy=rounded(1 - len(wrong) / len(truth)),
        mistakes=len(wrong),
        mistake_examples=[
            Mistake(row=int(i), predicted=predicted[i], true_label=truth[i]) for i in wrong[: options.max_mistakes]
        ],
        cost=meter.cost,
    )


def _answer(r: dict[str, Any]) -> str:
    examples = "; ".join(
        f"row {m['row']} (predicted {m['predicted']}, true {m['true_label']})" for m in r["mistake_examples"]
    )
    return (
        f"On the {r['rows']} labelled rows the model is right {100 * r['accuracy']:.1f}% of the time: "
        f"{r['mistakes']} mistakes.{f' For example: {examples}.' if examples else ''}"
    )


register(
    Method(
        name="model_score",
        description="How accurate the model is on labelled data (its reference rows' true labels, or the labelled "
        "examples given), and which rows it gets wrong.",
        inputs=("training",),
        options=ModelScoreOptions,
        result=ModelScoreResult,
        run=_model_score,
        unit="set",
        uses_llm=False,
        min_inputs=0,
        chat=ChatForm(
            " to know how accurate the model is and which rows it gets wrong.",
            (
                (r"\bmistakes?\b|\bmisclassif|\bwrong\b|\bincorrect(?:ly)?\b|\berrors?\b|\bget (?:it )?wrong|"
                 r"\bfails? on\b", 4),
                (r"\baccura(?:te|cy)\b|\bperformance\b|\bhow (?:good|well|reliable)\b|\berror rate\b|\bscore\b", 4),
                (r"\bhow often\b.{0,30}\bright\b|\bf1\b|\bcorrect(?:ly)?\b", 2),
            ),
            _answer,
            count="max_mistakes",
        ),
    )
)
