"""LML-DAP and text-bottleneck classifiers in the catalog: fit one from a labelled training set (saved without
pickle under the classifier directory) and predict with the reasons (LML-DAP) or concept contributions (TBM)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from xplain.errors import Conflict, InvalidInput, NotFound, Unavailable
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.catalog import Method, MethodContext, register
from xplain.methods.lml_dap import LMLDAPClassifier, RowPrediction
from xplain.methods.persistence import load_classifier, save_classifier
from xplain.methods.tbm import ConceptContribution, TextBottleneckClassifier, TextExplanation
from xplain.validation import SLUG, check_labelled, check_slug, resolve_under, to_text


class FitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SLUG, description="Saved under this name in the classifier directory.")
    kind: Literal["lml", "tbm"] = Field(
        description="lml: LML-DAP on a table (numbers, or rows with words, booleans, empty cells); tbm: concepts "
        "over texts."
    )
    feature_names: list[str] | None = Field(None, max_length=1000, description="lml: column names.")
    replace: bool = Field(False, description="Overwrite a saved classifier of the same name.")


class FitResult(MethodResult):
    name: str
    kind: Literal["lml", "tbm"]
    classes: list[str]
    n_train: int
    train_accuracy: float = Field(description="Accuracy on the training examples (optimistic; a sanity check).")
    majority_accuracy: float = Field(description="Accuracy of always predicting the most common training label.")
    baseline_accuracy: float = Field(
        description="A simple classifier's accuracy on the same training examples (lml: scaled logistic regression; "
        "tbm: TF-IDF + logistic regression)."
    )
    beats_baselines: bool = Field(description="True only when train_accuracy exceeds both figures above.")
    summaries: dict[str, list[str]] | None = Field(None, description="lml: the LLM's summary of each label.")
    concepts: list[ConceptContribution] | None = Field(None, description="tbm: each concept's weight.")


def baseline_accuracies(rows: list, labels: list[str], texts: bool) -> tuple[float, float]:
    """Accuracy of the majority class and of a logistic regression (TF-IDF features for texts, scaled columns for
    rows) on the training examples: what a learned LLM classifier has to beat to have learned anything."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, counts = np.unique(labels, return_counts=True)
    majority = float(counts.max() / len(labels))
    if texts:
        features, X = TfidfVectorizer(), rows
    elif isinstance(rows, pd.DataFrame):  # a table as users hold it: categories one-hot, numbers scaled
        from sklearn.compose import make_column_selector, make_column_transformer
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import OneHotEncoder

        numbers = make_column_selector(dtype_include="number")
        others = make_column_selector(dtype_exclude="number")
        features = make_column_transformer(
            (make_pipeline(SimpleImputer(), StandardScaler()), numbers),
            (OneHotEncoder(handle_unknown="ignore"), others),
        )
        X = rows.astype({c: object for c in rows.columns if not pd.api.types.is_numeric_dtype(rows[c])})
    else:
        features, X = StandardScaler(), np.asarray(rows, dtype=float)
    model = make_pipeline(features, LogisticRegression(max_iter=1000))
    return majority, float(model.fit(X, labels).score(X, labels))


def training_table(rows: list, names: list[str] | None) -> np.ndarray | pd.DataFrame:
    """lml's training rows: rows of numbers as an array; rows with words, booleans or empty cells, or keyed by
    column, as a DataFrame whose columns' kinds the classifier reads."""
    if all(isinstance(row, list) and all(isinstance(v, float) for v in row) for row in rows):
        return np.asarray(rows, dtype=float)
    keyed = [isinstance(row, dict) for row in rows]
    if any(keyed) and not all(keyed):
        raise InvalidInput("give every training row as an object keyed by column, or every one as a list")
    if all(keyed):
        table = pd.DataFrame.from_records(rows)
        if names is not None:
            missing = [n for n in names if n not in table.columns]
            if missing:
                raise InvalidInput(f"training rows lack column(s) {missing[:10]}")
            table = table[names]
        return table
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise InvalidInput(f"training rows have different lengths {sorted(widths)}")
    try:
        return pd.DataFrame(rows, columns=names or [f"x{i}" for i in range(widths.pop())])
    except ValueError as error:
        raise InvalidInput(f"feature_names do not fit the rows: {error}") from None


def _directory(ctx: MethodContext, name: str):
    if ctx.classifier_dir is None:
        raise Unavailable("saving classifiers is off: no classifier directory (XPLAIN_CLASSIFIER_DIR)")
    check_slug(name, "classifier name")
    return resolve_under(ctx.classifier_dir, name, "the classifier directory (XPLAIN_CLASSIFIER_DIR)")


async def _fit(ctx: MethodContext, items: list, options: FitOptions) -> FitResult:
    directory = _directory(ctx, options.name)
    if directory.exists() and not options.replace:
        raise Conflict(f"a classifier named {options.name!r} exists; pass replace: true to overwrite it")
    examples = [check_labelled(item) for item in items]
    rows, labels = [x for x, _ in examples], [y for _, y in examples]
    texts = all(isinstance(x, str) for x in rows)
    if texts != (options.kind == "tbm"):
        raise InvalidInput("tbm trains on texts ({'text', 'label'}); lml on table rows ({'row', 'label'})")
    if len(set(labels)) < 2:
        raise InvalidInput("the training examples hold a single label; a classifier needs at least two")
    if options.kind == "lml":
        table = training_table(rows, options.feature_names)
        # a table's columns are named by it; feature_names then chose and ordered them
        classifier: Any = LMLDAPClassifier(
            ctx.llm, feature_names=options.feature_names if isinstance(table, np.ndarray) else None
        )
    else:
        table, classifier = rows, TextBottleneckClassifier(ctx.llm)
    with measure_cost() as meter:
        ctx.report(0.0, "fitting")
        try:
            await classifier.afit(table, labels)
        except ValueError as error:  # a column the table cannot hold (an unknown value, a bad feature_names)
            raise InvalidInput(str(error)) from None
        ctx.report(0.8, "measuring training accuracy")
        predicted = await classifier.apredict(table)
    await asyncio.to_thread(save_classifier, classifier, directory)
    accuracy = float(np.mean([str(p) == y for p, y in zip(predicted, labels)]))
    majority, baseline = baseline_accuracies(table, labels, texts)
    beats = accuracy > max(majority, baseline)
    notes = [] if beats else [
        f"the classifier does not beat the simple baselines on its training examples (its {accuracy:.2f} vs "
        f"majority class {majority:.2f}, {'TF-IDF' if texts else 'scaled'} logistic regression {baseline:.2f})"
    ]
    return FitResult(
        notes=notes,
        majority_accuracy=majority,
        baseline_accuracy=baseline,
        beats_baselines=beats,
        method="classifier_fit",
        name=options.name,
        kind=options.kind,
        classes=[str(c) for c in classifier.classes_],
        n_train=len(rows),
        train_accuracy=accuracy,
        summaries=classifier.summaries_ if options.kind == "lml" else None,
        concepts=classifier.global_explanation() if options.kind == "tbm" else None,
        cost=meter.cost,
    )


register(
    Method(
        name="classifier_fit",
        description="Fit an LML-DAP (a table: numbers, categories, booleans) or text-bottleneck (texts) classifier "
        "and save it by name.",
        inputs=("training",),
        options=FitOptions,
        result=FitResult,
        run=_fit,
        unit="set",
        long_running=True,
        needs_model=False,
        min_inputs=2,
    )
)


class PredictWithOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classifier: str = Field(pattern=SLUG, description="A classifier saved by classifier_fit.")


class ClassifierPrediction(MethodResult):
    """One row's label with its reasons (lml) or concept contributions (tbm)."""

    lml: RowPrediction | None = None
    tbm: TextExplanation | None = None


def _parse(classifier: Any, row: Any) -> Any:
    if isinstance(classifier, TextBottleneckClassifier):
        return to_text(row)
    values = row.get("row", row) if isinstance(row, dict) else row
    if not classifier.schema_.all_numeric:  # a table with kinds: its schema reads the row (and says what is wrong)
        try:
            return list(classifier.encode_rows([values])[0])
        except ValueError as error:
            raise InvalidInput(str(error)) from None
    try:
        parsed = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidInput("an lml row is a list of numbers") from None
    if len(parsed) != classifier.n_features_in_ or not np.all(np.isfinite(parsed)):
        raise InvalidInput(f"an lml row holds {classifier.n_features_in_} finite numbers")
    return parsed


async def _predict_with(ctx: MethodContext, rows: list, options: PredictWithOptions) -> list[Any]:
    directory = _directory(ctx, options.classifier)
    if not directory.is_dir() and ctx.shared_classifier_dir is not None:  # the caller's own first, else a shared one
        directory = resolve_under(ctx.shared_classifier_dir, options.classifier, "the classifier directory")
    if not directory.is_dir():
        raise NotFound(f"no classifier named {options.classifier!r}; the classifier_fit method fits one")
    classifier = await asyncio.to_thread(load_classifier, directory, ctx.llm)
    parsed: list[Any] = []
    for row in rows:
        try:
            parsed.append(_parse(classifier, row))
        except InvalidInput as error:
            parsed.append(error)
    good = [p for p in parsed if not isinstance(p, InvalidInput)]
    if not good:
        return parsed
    lml = isinstance(classifier, LMLDAPClassifier)
    with measure_cost() as meter:
        explained = await (classifier.aexplain_encoded(np.asarray(good, dtype=float)) if lml else classifier.aexplain(good))
    per_row = iter(zip(explained.predictions if lml else explained.texts, meter.cost.split(len(good))))
    results = []
    for item in parsed:
        if isinstance(item, InvalidInput):
            results.append(item)
            continue
        found, cost = next(per_row)
        kind = "lml" if lml else "tbm"
        results.append(ClassifierPrediction(method="classifier_predict", cost=cost, prompt_versions=explained.prompt_versions, **{kind: found}))
    return results


register(
    Method(
        name="classifier_predict",
        description="Labels from a saved LML-DAP or text-bottleneck classifier, with the reasons or concept "
        "contributions behind each one.",
        inputs=("tabular_row", "text"),
        options=PredictWithOptions,
        result=ClassifierPrediction,
        run=_predict_with,
        needs_model=False,
    )
)
