"""What if: edit an input (set a table's features, replace a text's words) and re-query the black box — the
prediction before and after, both from the model itself."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.errors import InvalidInput
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.catalog import ChatForm, Method, MethodContext, register
from xplain.methods.chat_answers import subject
from xplain.methods.reference_data import ReferenceData

Value = float | bool | Annotated[str, Field(max_length=80)] | None


class FeatureChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str = Field(max_length=80, description="Feature name, as the model names its columns.")
    value: Value = Field(description="The new value: a number, a boolean, or one of a categorical feature's values.")


class WordReplacement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old: str = Field(min_length=1, max_length=80, description="Word or phrase in the text.")
    new: str = Field("", max_length=80, description="What replaces it (empty deletes it).")


class WhatIfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    changes: list[FeatureChange] = Field(
        default_factory=list, max_length=10, description="Tables: features to set, with their new values."
    )
    replacements: list[WordReplacement] = Field(
        default_factory=list, max_length=10, description="Texts: words or phrases to replace."
    )


class Outcome(BaseModel):
    predicted: str
    probabilities: dict[str, float]


class ValueChange(BaseModel):
    old: Any
    new: Any


class WhatIfResult(MethodResult):
    method: str = "what_if"
    changes: dict[str, ValueChange] | None = Field(None, description="Tables: each edited feature, old and new value.")
    edited_text: str | None = Field(None, description="Texts: the text after the replacements.")
    before: Outcome
    after: Outcome
    label_changed: bool


def _edit_row(data: ReferenceData, row: np.ndarray, options: WhatIfOptions) -> tuple[np.ndarray, dict[str, ValueChange]]:
    if not options.changes:
        raise InvalidInput("what_if on a table takes `changes`: the features to set, with their new values")
    edited = row.copy()
    for change in options.changes:
        column = data.feature_index(change.feature)
        try:  # a category must be one the model knows; a number is a number (the column's own error says which)
            edited[column] = data.schema.columns[column].encode(change.value)
        except ValueError as error:
            raise InvalidInput(str(error)) from None
    changed = {data.feature_names[data.feature_index(c.feature)] for c in options.changes}
    applied = {
        name: ValueChange(old=data.value(j, row[j]), new=data.value(j, edited[j]))
        for j, name in enumerate(data.feature_names)
        if name in changed
    }
    return edited, applied


def _edit_text(text: str, options: WhatIfOptions) -> str:
    if not options.replacements:
        raise InvalidInput("what_if on a text takes `replacements`: the words to replace, and what replaces them")
    edited = text
    for replacement in options.replacements:
        if replacement.old not in edited:
            shown = text if len(text) <= 120 else text[:119] + "…"
            raise InvalidInput(
                f"{replacement.old!r} does not occur in the text ({shown!r}); quote words exactly"
            )
        edited = edited.replace(replacement.old, replacement.new)
    return edited


async def _what_if(ctx: MethodContext, rows: list[Any], options: WhatIfOptions) -> list[WhatIfResult | Exception]:
    data = ReferenceData(ctx.blackbox, [np.asarray(r, dtype=float) for r in rows] if ctx.blackbox.kind == "tabular" else rows)
    if data.kind == "tabular" and options.replacements or data.kind == "text" and options.changes:
        wrong = "replacements" if data.kind == "tabular" else "changes"
        raise InvalidInput(f"`{wrong}` edit the other kind of model; this is a {data.kind} model")
    edits: list[tuple[Any, Any, dict[str, Any]] | Exception] = []
    for row in data.rows:
        try:
            if data.kind == "tabular":
                edited, applied = _edit_row(data, np.asarray(row), options)
                edits.append((row, edited, {"changes": applied}))
            else:
                edits.append((row, _edit_text(row, options), {}))
        except InvalidInput as error:
            edits.append(error)
    ok = [e for e in edits if not isinstance(e, Exception)]
    if not ok:
        return list(edits)  # type: ignore[arg-type]
    with measure_cost(ctx.blackbox) as meter:  # every row's original and edit in one batch
        probabilities = await ctx.blackbox.apredict_proba(data.batch([x for pair in ok for x in pair[:2]]))
    costs = iter(meter.cost.split(len(ok)))
    answered = iter(zip(probabilities[0::2], probabilities[1::2]))
    results: list[WhatIfResult | Exception] = []
    for edit in edits:
        if isinstance(edit, Exception):
            results.append(edit)
            continue
        before, after = next(answered)
        extra = edit[2] if data.kind == "tabular" else {"edited_text": edit[1]}
        results.append(
            WhatIfResult(
                before=Outcome(predicted=data.label(before), probabilities=data.probabilities(before)),
                after=Outcome(predicted=data.label(after), probabilities=data.probabilities(after)),
                label_changed=data.label(before) != data.label(after),
                cost=next(costs),
                **extra,
            )
        )
    return results


def _answer(r: dict[str, Any]) -> str:
    if r.get("changes"):
        changes = ", ".join(f"setting {f} from {c['old']} to {c['new']}" for f, c in r["changes"].items())
    else:
        changes = f'editing the text to "{str(r.get("edited_text", ""))[:120]}"'
    before, after = r["before"], r["after"]
    if r.get("label_changed"):
        outcome = (
            f"changes from {before['predicted']} (probability {before['probabilities'][before['predicted']]}) to "
            f"{after['predicted']} (probability {after['probabilities'][after['predicted']]})"
        )
    else:
        label = before["predicted"]
        outcome = (
            f"stays {label}, with P({label}) going from {before['probabilities'][label]} to "
            f"{after['probabilities'][label]}"
        )
    return f"For {subject(r)}, {changes}: the model's prediction {outcome}."


register(
    Method(
        name="what_if",
        description="Edit an input and re-query the model: set features of a row (`changes`) or replace words of a "
        "text (`replacements`); the prediction before and after the edit.",
        inputs=("tabular_row", "text"),
        options=WhatIfOptions,
        result=WhatIfResult,
        run=_what_if,
        uses_llm=False,
        chat=ChatForm(
            " to see what happens to the prediction if a value of a row is changed.",
            (
                (r"\bwhat if\b|\bwhat happens if\b|\bwhat would happen\b", 3),
                (r"\bsuppose\b|\bimagine\b|\bhypothetically\b|\bif (?:we|i|you)\b", 2),
                (r"\b(?:doubled|halved|tripled|double|halve|triple)\b", 1.5),
                (r"\b(?:set|increase|decrease|raise|lower|reduce)\b.{0,40}\b(?:to|by)\s+[-+]?\d", 2),
                (r"\b(?:replace|replaced|instead of|removed?|without the word|deleted?)\b", 1.5),
            ),
            _answer,
        ),
    )
)
