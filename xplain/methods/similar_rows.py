"""Similar rows: the rows of the model's data nearest to an input, each with the model's prediction and its true
label where known — precedents for a decision, read from the data and the black box."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.catalog import ChatForm, Method, MethodContext, register
from xplain.methods.chat_answers import subject
from xplain.methods.reference_data import ReferenceData, rounded
from xplain.methods.words import words as text_words

SHOWN_CHARS = 300


class SimilarRowsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(5, ge=1, le=10, description="How many similar rows to return.")


class Neighbour(BaseModel):
    row: int = Field(description="The row's number in the model's data (0-based).")
    distance: float
    predicted: str
    true_label: str | None = None
    text: str | None = Field(None, description="Texts: the row's text (its start).")
    differs_in: dict[str, Any] | None = Field(None, description="Tables: the row's values where it differs most.")


class SimilarRowsResult(MethodResult):
    method: str = "similar_rows"
    distance: str = Field(description="How distance is measured.")
    neighbours: list[Neighbour]


def _jaccard_distance(query: set[str], text: str) -> float:
    words = set(w.lower() for w in text_words(text))
    union = query | words
    return 1.0 - len(query & words) / len(union) if union else 1.0


async def nearest(data: ReferenceData, x: Any, k: int) -> SimilarRowsResult:
    if data.kind == "tabular":
        distances = np.linalg.norm(data.moves(np.asarray(data.rows), np.asarray(x, dtype=float)), axis=1)
        same = np.flatnonzero(np.all(np.isclose(np.asarray(data.rows), x, equal_nan=True), axis=1))
    else:
        query = set(w.lower() for w in text_words(x))
        distances = np.array([_jaccard_distance(query, text) for text in data.rows])
        same = np.array([i for i, text in enumerate(data.rows) if text == x], dtype=int)
    note = None
    if len(same):  # the input is a row of the data: itself is no neighbour (its copies elsewhere are)
        distances[same[0]] = np.inf
        note = f"the input is row {int(same[0])} of the data, left out"
    chosen = [int(i) for i in np.argsort(distances, kind="stable")[:k] if np.isfinite(distances[i])]
    probabilities = await data.blackbox.apredict_proba(data.batch([data.rows[i] for i in chosen])) if chosen else []
    neighbours = []
    for i, p in zip(chosen, probabilities):
        neighbours.append(
            Neighbour(
                row=i, distance=rounded(distances[i]), predicted=data.label(p),
                true_label=str(data.labels[i]) if data.labels is not None else None,
                text=data.rows[i][:SHOWN_CHARS] if data.kind == "text" else None,
                differs_in=data.differences(data.rows[i], np.asarray(x, dtype=float)) if data.kind == "tabular" else None,
            )
        )  # fmt: skip
    metric = "standardised euclidean (a differing category counts 1)" if data.kind == "tabular" else "word-set Jaccard"
    return SimilarRowsResult(distance=metric, neighbours=neighbours, notes=[note] if note else [])


async def _similar_rows(ctx: MethodContext, rows: list[Any], options: SimilarRowsOptions) -> list[SimilarRowsResult]:
    data = ReferenceData.of(ctx.blackbox, ctx.reference, ctx.reference_labels, what="similar_rows")
    results = []
    for row in rows:
        with measure_cost(ctx.blackbox) as meter:
            result = await nearest(data, row, options.k)
        result.cost = meter.cost
        results.append(result)
    return results


def _answer(r: dict[str, Any]) -> str:
    listed = []
    for n in r["neighbours"][:5]:
        truth = f", true {n['true_label']}" if n.get("true_label") is not None else ""
        listed.append(f"row {n['row']} (distance {n['distance']}, predicted {n['predicted']}{truth})")
    return f"The rows most like {subject(r)} ({r['distance']} distance): {'; '.join(listed) or 'none'}."


register(
    Method(
        name="similar_rows",
        description="The rows of the model's data nearest to each input, with the model's prediction and the true "
        "label of each (the input itself, when it is a row of the data, left out).",
        inputs=("tabular_row", "text"),
        options=SimilarRowsOptions,
        result=SimilarRowsResult,
        run=_similar_rows,
        uses_llm=False,
        chat=ChatForm(
            " to see the rows that are most similar to one row.",
            ((r"\bsimilar\b|\bnearest\b|\bneighbou?rs?\b|\bclosest\b|\bresembl|\blook[- ]?alikes?\b|\bmost like\b", 4),),
            _answer,
            count="k",
        ),
    )
)
