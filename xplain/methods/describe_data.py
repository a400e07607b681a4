"""Facts about the model's data, read from the data itself: an overview (rows, features, classes, label counts), one
feature's statistics (a number's spread, a category's counts), or one row's values in the user's own terms."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.errors import InvalidInput
from xplain.methods.base import MethodResult
from xplain.methods.catalog import ChatForm, Method, MethodContext, register
from xplain.methods.chat_answers import subject
from xplain.methods.reference_data import ReferenceData, rounded
from xplain.methods.words import words as text_words

MAX_VALUES = 12  # the most common values of a category that a summary shows


class DescribeDataOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str | None = Field(None, max_length=80, description="A feature to summarise (tables).")
    row: int | None = Field(None, ge=0, description="A row of the data to show in full (0-based).")


class DataOverview(BaseModel):
    rows: int
    classes: list[str]
    description: str | None = None
    features: list[str] | None = None
    n_features: int | None = None
    mean_words_per_text: float | None = None
    label_counts: dict[str, int] | None = None


class FeatureSummary(BaseModel):
    """A category or boolean: how often each value occurs; a number: its spread. Missing values counted apart."""

    feature: str
    kind: str
    missing: int = 0
    counts: dict[str, int] | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    q25: float | None = None
    median: float | None = None
    q75: float | None = None
    max: float | None = None


class DataDescription(MethodResult):
    method: str = "describe_data"
    overview: DataOverview | None = None
    summary: FeatureSummary | None = None
    row: int | None = None
    values: dict[str, Any] | str | None = Field(None, description="The row's values (a table) or its text.")
    true_label: str | None = None


def feature_summary(data: ReferenceData, column: int) -> FeatureSummary:
    values = np.asarray(data.rows)[:, column]
    present = values[~np.isnan(values)]
    summary = FeatureSummary(
        feature=data.feature_names[column], kind=data.schema.columns[column].kind, missing=len(values) - len(present)
    )
    if data.schema.columns[column].discrete:
        codes, counts = np.unique(present, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:MAX_VALUES]
        summary.counts = {str(data.value(column, codes[i])): int(counts[i]) for i in order}
    elif len(present):
        q25, median, q75 = np.percentile(present, [25, 50, 75])
        summary.mean, summary.std = rounded(present.mean()), rounded(present.std())
        summary.min, summary.max = rounded(present.min()), rounded(present.max())
        summary.q25, summary.median, summary.q75 = rounded(q25), rounded(median), rounded(q75)
    return summary


def overview(data: ReferenceData) -> DataOverview:
    found = DataOverview(rows=len(data.rows), classes=data.class_names, description=data.description or None)
    if data.kind == "tabular":
        found.features, found.n_features = data.feature_names, len(data.feature_names)
    else:
        found.mean_words_per_text = rounded(np.mean([len(text_words(t)) for t in data.rows]), 1)
    if data.labels is not None:
        labels, counts = np.unique(data.labels, return_counts=True)
        found.label_counts = {str(label): int(count) for label, count in zip(labels, counts)}
    return found


async def _describe_data(ctx: MethodContext, items: list[Any], options: DescribeDataOptions) -> DataDescription:
    data = ReferenceData.for_set(ctx, items, what="describe_data")
    if options.row is not None:
        row = data.row(options.row)
        truth = str(data.labels[options.row]) if data.labels is not None else None
        return DataDescription(row=options.row, values=row if data.kind == "text" else data.values(row), true_label=truth)
    if options.feature is not None:
        if data.kind == "text":
            raise InvalidInput("text data has no named features; ask about a row instead")
        return DataDescription(summary=feature_summary(data, data.feature_index(options.feature)))
    return DataDescription(overview=overview(data))


def _answer(r: dict[str, Any]) -> str:
    truth = f" The true label is {r['true_label']}." if r.get("true_label") is not None else ""
    if r.get("values") is not None:
        values = r["values"]
        shown = (
            ", ".join(f"{k} {v}" for k, v in list(values.items())[:12]) + (" …" if len(values) > 12 else "")
            if isinstance(values, dict)
            else f'"{str(values)[:300]}"'
        )
        return f"{subject(r).capitalize()}: {shown}.{truth}"
    if r.get("summary"):
        s = r["summary"]
        if s.get("counts"):
            counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
            return f"{s['feature']} ({s['kind']}): {counts}."
        return (
            f"{s['feature']}: mean {s['mean']}, median {s['median']}, from {s['min']} to {s['max']} "
            f"(middle half between {s['q25']} and {s['q75']}, std {s['std']})."
        )
    o = r["overview"]
    features = o.get("features") or []
    listed = f", {o['n_features']} features ({', '.join(features[:8])}{' …' if len(features) > 8 else ''})" if features else ""
    counts = o.get("label_counts")
    counted = f" Label counts: {', '.join(f'{k} {v}' for k, v in counts.items())}." if counts else ""
    return f"The data has {o['rows']} rows{listed} and classes {', '.join(o['classes'])}.{counted}"


register(
    Method(
        name="describe_data",
        description="Facts about the model's data (its reference rows, or the inputs given): with no options an "
        "overview (rows, features, classes, label counts); with `feature` that feature's statistics; with `row` "
        "that row's values.",
        inputs=("tabular_row", "text"),
        options=DescribeDataOptions,
        result=DataDescription,
        run=_describe_data,
        unit="set",
        uses_llm=False,
        min_inputs=0,
        chat=ChatForm(
            " statistics about the data or a feature, or to see a row.",
            (
                (r"\b(?:mean|average|median|minimum|maximum|min|max|range|distribution|statistics?|std|"
                 r"standard deviation|spread|typical|quartiles?)\b", 2.5),
                (r"\bhow many (?:rows|examples|samples|reviews|patients|records|features|classes|wines)\b", 3),
                (r"\bdescribe the data\b|\bwhat (?:features|columns|classes|labels) (?:are|does|do)\b|\bdata ?set\b", 2.5),
                (r"\b(?:show|display|print|give)(?: me)? (?:the )?(?:values? of )?(?:row|review|sample|record)\b|"
                 r"\bwhat does (?:row|review|sample) \d+ (?:look like|say|contain)\b|\bvalues? (?:of|in) row\b", 4),
                (r"\bclass balance\b|\blabel counts?\b|\bhow balanced\b", 3),
            ),
            _answer,
        ),
    )
)
