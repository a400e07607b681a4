"""Probe tools: questions the black box itself answers — predictions, what-if edits, data statistics, similar rows,
score and mistakes, and a one-feature-at-a-time effect probe. Every number they return comes from querying the black
box or reading the data; each probe sends its black-box queries as one batch."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, model_validator

from xplain.tools.context import ProbeContext
from xplain.tools.registry import make_tool, register_tool, rounded

MAX_TEXT = 2000
WORD = re.compile(r"\w+(?:'\w+)?")


# -- arguments ------------------------------------------------------------------------------------------------


class RowArgs(BaseModel):
    row: int = Field(ge=0, description="Row number in the data set (0-based).")


class TextOrRowArgs(BaseModel):
    row: int | None = Field(None, ge=0, description="Row number in the data set (0-based); or give `text`.")
    text: str | None = Field(None, max_length=MAX_TEXT, description="A text to ask about; or give `row`.")

    @model_validator(mode="after")
    def _one_input(self) -> TextOrRowArgs:
        if (self.row is None) == (self.text is None):
            raise ValueError("give exactly one of `row` (a row number) or `text`")
        return self


class FeatureChange(BaseModel):
    feature: str = Field(max_length=80, description="Feature name, as listed by describe_data.")
    value: float = Field(description="The new value.")


class TabularWhatIfArgs(RowArgs):
    changes: list[FeatureChange] = Field(min_length=1, max_length=10, description="Features to set, with values.")


class WordReplacement(BaseModel):
    old: str = Field(min_length=1, max_length=80, description="Word or phrase in the text.")
    new: str = Field("", max_length=80, description="What replaces it (empty deletes it).")


class TextWhatIfArgs(TextOrRowArgs):
    replacements: list[WordReplacement] = Field(min_length=1, max_length=10, description="Edits to make.")


class DescribeArgs(BaseModel):
    feature: str | None = Field(None, max_length=80, description="A feature to summarise (tabular data).")
    row: int | None = Field(None, ge=0, description="A row to show in full.")


class SimilarArgs(TextOrRowArgs):
    k: int = Field(5, ge=1, le=10, description="How many similar rows to return.")


class TabularSimilarArgs(RowArgs):
    k: int = Field(5, ge=1, le=10, description="How many similar rows to return.")


class ScoreArgs(BaseModel):
    max_mistakes: int = Field(5, ge=0, le=20, description="How many misclassified rows to list.")


class TabularEffectArgs(RowArgs):
    top: int = Field(8, ge=1, le=20, description="How many features to report, largest effect first.")


class TextEffectArgs(TextOrRowArgs):
    top: int = Field(8, ge=1, le=20, description="How many words to report, largest effect first.")


# -- shared helpers -------------------------------------------------------------------------------------------


def _probabilities(context: ProbeContext, row: np.ndarray) -> dict[str, float]:
    return {name: rounded(p) for name, p in zip(context.class_names, row)}


def _label(context: ProbeContext, probabilities: np.ndarray) -> str:
    return context.class_names[int(np.argmax(probabilities))]


def _input_of(context: ProbeContext, args: TextOrRowArgs | RowArgs) -> tuple[Any, dict[str, Any]]:
    """The model input the arguments point at, and how to name it in the output."""
    text = getattr(args, "text", None)
    if text is not None:
        return text, {"text": text}
    return context.row(args.row), {"row": args.row}


def _true_label(context: ProbeContext, args: Any) -> dict[str, str]:
    row = getattr(args, "row", None)
    if context.labels is None or row is None:
        return {}
    return {"true_label": str(context.labels[row])}


def _words(text: str) -> list[str]:
    return WORD.findall(text)


def _remove_word(text: str, word: str) -> str:
    return re.sub(rf"\b{re.escape(word)}\b", "", text).replace("  ", " ").strip()


# -- predict --------------------------------------------------------------------------------------------------


@register_tool("predict")
def predict_tool(context: ProbeContext) -> BaseTool:
    async def run(args: RowArgs | TextOrRowArgs) -> dict[str, Any]:
        model_input, source = _input_of(context, args)
        [probabilities] = await context.blackbox.apredict_proba(_batch(context, [model_input]))
        return {
            **source,
            "predicted": _label(context, probabilities),
            "probabilities": _probabilities(context, probabilities),
            **_true_label(context, args),
        }

    what = "row of the data set" if context.kind == "tabular" else "data set row or a given text"
    return make_tool(
        "predict",
        f"The black-box model's predicted label and class probabilities for a {what}.",
        RowArgs if context.kind == "tabular" else TextOrRowArgs,
        run,
    )


def _batch(context: ProbeContext, inputs: list[Any]) -> Any:
    return np.vstack(inputs) if context.kind == "tabular" else list(inputs)


# -- what if --------------------------------------------------------------------------------------------------


@register_tool("what_if")
def what_if_tool(context: ProbeContext) -> BaseTool:
    async def run_tabular(args: TabularWhatIfArgs) -> dict[str, Any]:
        original = np.asarray(context.row(args.row), dtype=np.float64)
        edited = original.copy()
        applied = {}
        for change in args.changes:
            column = context.feature_index(change.feature)
            edited[column] = change.value
            applied[context.feature_names[column]] = {"from": rounded(original[column]), "to": rounded(change.value)}
        before, after = await context.blackbox.apredict_proba(np.vstack([original, edited]))
        return _comparison(context, {"row": args.row, "changes": applied}, before, after)

    async def run_text(args: TextWhatIfArgs) -> dict[str, Any]:
        original, source = _input_of(context, args)
        edited = original
        for replacement in args.replacements:
            if replacement.old not in edited:
                raise ValueError(f"{replacement.old!r} does not occur in the text; quote words exactly")
            edited = edited.replace(replacement.old, replacement.new)
        before, after = await context.blackbox.apredict_proba([original, edited])
        return _comparison(context, {**source, "edited_text": edited}, before, after)

    if context.kind == "tabular":
        return make_tool(
            "what_if",
            "Change feature values of a row and re-query the model: the prediction before and after the edit.",
            TabularWhatIfArgs,
            run_tabular,
        )
    return make_tool(
        "what_if",
        "Edit words of a text and re-query the model: the prediction before and after the edit.",
        TextWhatIfArgs,
        run_text,
    )


def _comparison(context: ProbeContext, head: dict[str, Any], before: np.ndarray, after: np.ndarray) -> dict[str, Any]:
    label_before, label_after = _label(context, before), _label(context, after)
    return {
        **head,
        "before": {"predicted": label_before, "probabilities": _probabilities(context, before)},
        "after": {"predicted": label_after, "probabilities": _probabilities(context, after)},
        "label_changed": label_before != label_after,
    }


# -- describe data --------------------------------------------------------------------------------------------


@register_tool("describe_data")
def describe_data_tool(context: ProbeContext) -> BaseTool:
    async def run(args: DescribeArgs) -> dict[str, Any]:
        if args.row is not None:
            row = context.row(args.row)
            shown = row if context.kind == "text" else dict(zip(context.feature_names, map(rounded, row)))
            return {"row": args.row, "values": shown, **_true_label(context, args)}
        if args.feature is not None:
            if context.kind == "text":
                raise ValueError("text data has no named features; ask about a row instead")
            return _feature_summary(context, context.feature_index(args.feature))
        return _overview(context)

    return make_tool(
        "describe_data",
        "Facts about the data: with no arguments an overview (rows, features, classes, label counts); with "
        "`feature` that feature's statistics; with `row` the row's values.",
        DescribeArgs,
        run,
    )


def _feature_summary(context: ProbeContext, column: int) -> dict[str, Any]:
    values = np.asarray(context.rows)[:, column]
    quartiles = np.percentile(values, [25, 50, 75])
    return {
        "feature": context.feature_names[column],
        "mean": rounded(values.mean()),
        "std": rounded(values.std()),
        "min": rounded(values.min()),
        "q25": rounded(quartiles[0]),
        "median": rounded(quartiles[1]),
        "q75": rounded(quartiles[2]),
        "max": rounded(values.max()),
    }


def _overview(context: ProbeContext) -> dict[str, Any]:
    overview: dict[str, Any] = {"rows": len(context.rows), "classes": context.class_names}
    if context.description:
        overview["description"] = context.description
    if context.kind == "tabular":
        overview["features"] = context.feature_names
    else:
        overview["mean_words_per_text"] = rounded(np.mean([len(_words(t)) for t in context.rows]), 1)
    if context.labels is not None:
        labels, counts = np.unique(context.labels, return_counts=True)
        overview["label_counts"] = {str(label): int(count) for label, count in zip(labels, counts)}
    return overview


# -- similar rows ---------------------------------------------------------------------------------------------


@register_tool("similar_rows")
def similar_rows_tool(context: ProbeContext) -> BaseTool:
    async def run(args: TabularSimilarArgs | SimilarArgs) -> dict[str, Any]:
        model_input, source = _input_of(context, args)
        exclude = getattr(args, "row", None)
        if context.kind == "tabular":
            rows = np.asarray(context.rows)
            scale = rows.std(axis=0)
            scale[scale == 0] = 1.0
            distances = np.linalg.norm((rows - model_input) / scale, axis=1)
        else:
            query = set(w.lower() for w in _words(model_input))
            distances = np.array([_jaccard_distance(query, text) for text in context.rows])
        if exclude is not None:
            distances[exclude] = np.inf
        nearest = [int(i) for i in np.argsort(distances, kind="stable")[: args.k] if np.isfinite(distances[i])]
        probabilities = await context.blackbox.apredict_proba(_batch(context, [context.rows[i] for i in nearest]))
        neighbours = []
        for i, p in zip(nearest, probabilities):
            entry: dict[str, Any] = {"row": i, "distance": rounded(distances[i]), "predicted": _label(context, p)}
            if context.labels is not None:
                entry["true_label"] = str(context.labels[i])
            if context.kind == "text":
                entry["text"] = context.rows[i][:300]
            neighbours.append(entry)
        metric = "standardised euclidean" if context.kind == "tabular" else "word-set Jaccard"
        return {**source, "distance": metric, "neighbours": neighbours}

    return make_tool(
        "similar_rows",
        "The data set rows nearest to a row (or text), with the model's prediction and the true label of each.",
        TabularSimilarArgs if context.kind == "tabular" else SimilarArgs,
        run,
    )


def _jaccard_distance(query: set[str], text: str) -> float:
    words = set(w.lower() for w in _words(text))
    union = query | words
    return 1.0 - len(query & words) / len(union) if union else 1.0


# -- score and mistakes ---------------------------------------------------------------------------------------


@register_tool("model_score")
def model_score_tool(context: ProbeContext) -> BaseTool | None:
    if context.labels is None:
        return None

    async def run(args: ScoreArgs) -> dict[str, Any]:
        predicted = await context.blackbox.apredict(context.rows)
        truth = context.labels.astype(str)
        wrong = np.flatnonzero(predicted.astype(str) != truth)
        return {
            "rows": len(truth),
            "accuracy": rounded(1 - len(wrong) / len(truth)),
            "mistakes": len(wrong),
            "mistake_examples": [
                {"row": int(i), "predicted": str(predicted[i]), "true_label": str(truth[i])}
                for i in wrong[: args.max_mistakes]
            ],
        }

    return make_tool(
        "model_score",
        "How accurate the model is on the labelled data set, and which rows it gets wrong.",
        ScoreArgs,
        run,
    )


# -- feature effect -------------------------------------------------------------------------------------------


@register_tool("feature_effect")
def feature_effect_tool(context: ProbeContext) -> BaseTool:
    async def run_tabular(args: TabularEffectArgs) -> dict[str, Any]:
        original = np.asarray(context.row(args.row), dtype=np.float64)
        medians = np.median(np.asarray(context.rows), axis=0)
        variants = np.repeat(original[None, :], len(original), axis=0)
        variants[np.arange(len(original)), np.arange(len(original))] = medians
        probabilities = await context.blackbox.apredict_proba(np.vstack([original, variants]))
        names = context.feature_names
        return _effects(context, {"row": args.row}, probabilities, names, "feature set to the data median", args.top)

    async def run_text(args: TextEffectArgs) -> dict[str, Any]:
        original, source = _input_of(context, args)
        words = list(dict.fromkeys(_words(original)))[:60]
        if not words:
            raise ValueError("the text has no words to remove")
        variants = [_remove_word(original, w) for w in words]
        probabilities = await context.blackbox.apredict_proba([original, *variants])
        return _effects(context, source, probabilities, words, "word removed", args.top)

    description = (
        "Which inputs drive one prediction: {what} one at a time, re-queries the model, and reports how much the "
        "probability of the predicted class drops (positive = the input supports the prediction). Returns a bar chart."
    )
    if context.kind == "tabular":
        what = "sets each feature to its data-set median"
        return make_tool("feature_effect", description.format(what=what), TabularEffectArgs, run_tabular)
    return make_tool("feature_effect", description.format(what="removes each word"), TextEffectArgs, run_text)


def _effects(
    context: ProbeContext,
    source: dict[str, Any],
    probabilities: np.ndarray,
    names: list[str],
    perturbation: str,
    top: int,
) -> dict[str, Any]:
    """Effect of each perturbation (rows 1..) on the probability of the class predicted for row 0."""
    predicted = int(np.argmax(probabilities[0]))
    effects = probabilities[0, predicted] - probabilities[1:, predicted]
    order = np.argsort(-np.abs(effects), kind="stable")[:top]
    ranked = [(names[i], rounded(effects[i])) for i in order]
    class_name = context.class_names[predicted]
    return {
        **source,
        "predicted": class_name,
        "probability": rounded(probabilities[0, predicted]),
        "perturbation": perturbation,
        "effects": dict(ranked),
        "plot": {
            "kind": "bar",
            "title": f"Drop in P({class_name}) when each input is perturbed",
            "labels": [name for name, _ in ranked],
            "values": [value for _, value in ranked],
        },
    }
