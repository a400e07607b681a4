"""`xplain classifier fit|predict|explain`: LLM classifiers that explain themselves (LML-DAP over a numeric table,
a Text Bottleneck Model over a text column), fitted from a CSV and saved as JSON + skops."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from xplain.batch.sources import read_table
from xplain.cli.common import app, console, fail, run_with_llm, usage_line
from xplain.llm import LLM, track_usage
from xplain.methods.lml_dap import LMLDAPClassifier
from xplain.methods.persistence import Classifier, load_classifier, save_classifier
from xplain.methods.tbm import TextBottleneckClassifier

classifier = typer.Typer(
    help="Fit, apply and explain LLM classifiers (LML-DAP, Text Bottleneck Model).",
    no_args_is_help=True,
)
app.add_typer(classifier, name="classifier")

DataOption = Annotated[
    Path, typer.Option("--data", help="CSV file with one row per sample.")
]
TextColumnOption = Annotated[
    str, typer.Option("--text-column", help="Column holding the text (TBM only).")
]
ModelArgument = Annotated[
    Path, typer.Argument(help="Model directory written by `xplain classifier fit`.")
]


class Kind(str, Enum):
    lml = "lml"
    tbm = "tbm"


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ValueError(f"--data {path} does not exist")
    frame = read_table(path)
    if frame.empty:
        raise ValueError(f"--data {path} has no rows")
    return frame


def column(frame: pd.DataFrame, name: str, path: Path) -> pd.Series:
    if name not in frame.columns:
        raise ValueError(
            f"{path} has no column {name!r}; its columns are {list(frame.columns)}"
        )
    return frame[name]


def numeric_features(frame: pd.DataFrame, names: list[str], path: Path) -> np.ndarray:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the feature column(s) {missing}")
    text = [n for n in names if not pd.api.types.is_numeric_dtype(frame[n])]
    if text:
        raise ValueError(
            f"LML-DAP needs numeric features; column(s) {text} in {path} are not numeric (one-hot them)"
        )
    return frame[names].to_numpy(dtype=float)


def model_inputs(clf: Classifier, frame: pd.DataFrame, path: Path, text_column: str):
    if isinstance(clf, LMLDAPClassifier):
        return numeric_features(frame, clf.feature_names_, path)
    return column(frame, text_column, path).astype(str).tolist()


def run_checked(work: Callable[[LLM], Awaitable[None]]) -> None:
    """`run_with_llm`, with bad input (ValueError) reported as one red line and exit status 2."""
    try:
        run_with_llm(work)
    except ValueError as error:
        fail(error)


@classifier.command("fit")
def fit(
    kind: Annotated[
        Kind, typer.Option("--kind", help="lml: numeric table; tbm: text column.")
    ],
    data: DataOption,
    label_column: Annotated[
        str, typer.Option("--label-column", help="Column holding the label.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Directory to save the fitted model to.")
    ],
    text_column: TextColumnOption = "text",
) -> None:
    """Fit a classifier on a labelled CSV and save it (JSON + skops, no pickle)."""

    async def work(llm: LLM) -> None:
        frame = read_csv(data)
        y = column(frame, label_column, data).to_numpy()
        if kind is Kind.lml:
            names = [c for c in frame.columns if c != label_column]
            clf: Classifier = LMLDAPClassifier(llm, feature_names=names)
            X = numeric_features(frame, names, data)
        else:
            clf = TextBottleneckClassifier(llm)
            X = column(frame, text_column, data).astype(str).tolist()
        with track_usage() as meter:
            await clf.afit(X, y)
        save_classifier(clf, out)
        console.print(
            f"fitted {type(clf).__name__} on {len(y)} rows, classes {[str(c) for c in clf.classes_]}"
        )
        console.print(f"saved to {out}; LLM: {usage_line(meter.usage)}")

    run_checked(work)


@classifier.command("predict")
def predict(
    model: ModelArgument,
    data: DataOption,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
    text_column: TextColumnOption = "text",
) -> None:
    """Predict a label and class probabilities for every row of a CSV."""

    async def work(llm: LLM) -> None:
        frame = read_csv(data)
        clf = load_classifier(model, llm=llm)
        X = model_inputs(clf, frame, data, text_column)
        proba = await clf.apredict_proba(X)
        labels = clf.classes_[np.argmax(proba, axis=1)].tolist()
        names = [str(c) for c in clf.classes_]
        if as_json:
            rows = [
                {
                    "row": i,
                    "label": label,
                    "probabilities": dict(zip(names, p.tolist())),
                }
                for i, (label, p) in enumerate(zip(labels, proba))
            ]
            console.print_json(json.dumps(rows))
            return
        table = Table(
            "row",
            "label",
            *[f"P({n})" for n in names],
            title=f"{type(clf).__name__} predictions",
        )
        for i, (label, p) in enumerate(zip(labels, proba)):
            table.add_row(str(i), str(label), *[f"{v:.3f}" for v in p])
        console.print(table)

    run_checked(work)


@classifier.command("explain")
def explain(
    model: ModelArgument, data: DataOption, text_column: TextColumnOption = "text"
) -> None:
    """Why each row got its label: LML-DAP's reasons and retrieved rows, or TBM's concept contributions."""

    async def work(llm: LLM) -> None:
        frame = read_csv(data)
        clf = load_classifier(model, llm=llm)
        X = model_inputs(clf, frame, data, text_column)
        explanation = await clf.aexplain(X)
        if isinstance(clf, LMLDAPClassifier):
            table = Table(
                "row",
                "label",
                "confidence",
                "reasons",
                "retrieved rows",
                "fallback",
                title="LML-DAP",
            )
            for i, p in enumerate(explanation.predictions):
                reasons = "; ".join(p.reasons) or "-"
                table.add_row(
                    str(i),
                    p.label,
                    f"{p.confidence:.2f}",
                    reasons,
                    str(p.retrieved_rows),
                    str(p.fallback),
                )
            console.print(table)
        else:
            weights = Table("concept", "weight", title="TBM concepts (global)")
            for c in explanation.concepts:
                weights.add_row(c.concept, f"{c.weight:+.3f}")
            console.print(weights)
            table = Table(
                "row",
                "label",
                "probability",
                "concept",
                "rating",
                "contribution",
                title="TBM (per row)",
            )
            for i, text in enumerate(explanation.texts):
                for j, c in enumerate(text.contributions):
                    head = (
                        (str(i), text.label, f"{text.probability:.2f}")
                        if j == 0
                        else ("", "", "")
                    )
                    table.add_row(
                        *head, c.concept, f"{c.rating:.2f}", f"{c.contribution:+.3f}"
                    )
            console.print(table)
        console.print(f"LLM: {usage_line(explanation.cost.llm)}")

    run_checked(work)
