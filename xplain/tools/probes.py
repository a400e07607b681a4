"""Probe tools: questions the black box itself answers — predictions, what-if edits, data statistics, similar rows,
score and mistakes, and a one-feature-at-a-time effect probe. Every number they return comes from querying the black
box or reading the data; each probe sends its black-box queries as one batch."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, model_validator

from xplain.methods.checks import Gaps, prediction_gaps, text_prediction_gaps
from xplain.methods.words import distinct_words, remove_words, words as text_words
from xplain.tools.context import ProbeContext
from xplain.tools.registry import make_tool, register_tool, rounded

MAX_TEXT = 2000
MAX_VALUES = 12  # the most common values of a category that a summary or a curve shows


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
    value: float | bool | Annotated[str, Field(max_length=80)] = Field(
        description="The new value: a number, or one of a categorical feature's values."
    )


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


class GlobalEffectArgs(BaseModel):
    feature: str | None = Field(None, max_length=80, description="One feature (or word) to trace; default: all.")
    top: int = Field(8, ge=1, le=20, description="How many features (or words) to report, largest effect first.")


class SurrogateArgs(BaseModel):
    depth: int = Field(3, ge=1, le=4, description="Depth of the rule tree (more = more detail, harder to read).")


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
            # a category must be one the model knows; a number is a number (the column's own error says which)
            edited[column] = context.schema.columns[column].encode(change.value)
            applied[context.feature_names[column]] = {
                "from": context.value(column, original[column]), "to": context.value(column, edited[column])
            }
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
            shown = row if context.kind == "text" else context.values(row)
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
    """A category or boolean: how often each value occurs; a number: its spread. Missing values counted apart."""
    values = np.asarray(context.rows)[:, column]
    present = values[~np.isnan(values)]
    summary: dict[str, Any] = {"feature": context.feature_names[column], "kind": context.schema.columns[column].kind}
    if len(present) < len(values):
        summary["missing"] = int(len(values) - len(present))
    if context.schema.columns[column].discrete:
        codes, counts = np.unique(present, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:MAX_VALUES]
        return {**summary, "counts": {str(context.value(column, codes[i])): int(counts[i]) for i in order}}
    if not len(present):
        return summary
    quartiles = np.percentile(present, [25, 50, 75])
    return {
        **summary,
        "mean": rounded(present.mean()),
        "std": rounded(present.std()),
        "min": rounded(present.min()),
        "q25": rounded(quartiles[0]),
        "median": rounded(quartiles[1]),
        "q75": rounded(quartiles[2]),
        "max": rounded(present.max()),
    }


def _overview(context: ProbeContext) -> dict[str, Any]:
    overview: dict[str, Any] = {"rows": len(context.rows), "classes": context.class_names}
    if context.description:
        overview["description"] = context.description
    if context.kind == "tabular":
        overview["features"] = context.feature_names
        overview["n_features"] = len(context.feature_names)
    else:
        overview["mean_words_per_text"] = rounded(np.mean([len(text_words(t)) for t in context.rows]), 1)
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
            distances = np.linalg.norm(_moves(context, np.asarray(context.rows), model_input), axis=1)
        else:
            query = set(w.lower() for w in text_words(model_input))
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
            else:
                entry["differs_in"] = _differences(context, context.rows[i], model_input)
            neighbours.append(entry)
        metric = "standardised euclidean (a differing category counts 1)" if context.kind == "tabular" else "word-set Jaccard"
        return {**source, "distance": metric, "neighbours": neighbours}

    return make_tool(
        "similar_rows",
        "The data set rows nearest to a row (or text), with the model's prediction and the true label of each.",
        TabularSimilarArgs if context.kind == "tabular" else SimilarArgs,
        run,
    )


def _moves(context: ProbeContext, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    """How far each row is from `x` per column: numbers in the reference's standard deviations, a category or
    boolean 1 where it differs (a difference of codes means nothing)."""
    return context.schema.changes(rows, x, context.schema.scale(np.asarray(context.rows)))


def _differences(context: ProbeContext, row: np.ndarray, x: np.ndarray, most: int = 5) -> dict[str, Any]:
    """The columns in which `row` differs from `x`, with `row`'s values in the user's terms (largest moves first)."""
    moved = np.abs(_moves(context, np.asarray(row, dtype=np.float64)[None, :], x)[0])
    order = [j for j in np.argsort(-moved, kind="stable") if moved[j] > 0][:most]
    return {context.feature_names[j]: context.value(j, row[j]) for j in order}


def _jaccard_distance(query: set[str], text: str) -> float:
    words = set(w.lower() for w in text_words(text))
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


async def _tabular_effects(context: ProbeContext, row: int, top: int) -> dict[str, Any]:
    original = np.asarray(context.row(row), dtype=np.float64)
    rows = np.asarray(context.rows)
    typical = _typical(context)
    variants = np.repeat(original[None, :], len(original), axis=0)
    variants[np.arange(len(original)), np.arange(len(original))] = typical
    probabilities = await context.blackbox.apredict_proba(np.vstack([original, variants]))
    names = context.feature_names
    perturbation = "feature set to the data median (a category or boolean to its most common value)"
    result = _effects(context, {"row": row}, probabilities, names, perturbation, top)
    result["set_to"] = {name: context.value(names.index(name), typical[names.index(name)]) for name in result["effects"]}
    checked = [names.index(name) for name in list(result["effects"])[:CHECKED]]
    [gaps] = await prediction_gaps(
        context.blackbox, original, [checked], scale=context.schema.scale(rows), sigma=0.3, n_samples=16, background=rows
    )
    return {**result, "check": _check(gaps, len(checked))}


def _typical(context: ProbeContext) -> np.ndarray:
    """Each column's typical value: a number's median, a category's or boolean's most common value (missing
    values aside)."""
    rows = np.asarray(context.rows)
    typical = np.zeros(rows.shape[1])
    for j, column in enumerate(context.schema.columns):
        present = rows[~np.isnan(rows[:, j]), j]
        if not len(present):
            typical[j] = np.nan
        elif column.discrete:
            codes, counts = np.unique(present, return_counts=True)
            typical[j] = codes[np.argmax(counts)]
        else:
            typical[j] = np.median(present)
    return typical


async def _text_effects(context: ProbeContext, args: TextOrRowArgs, top: int) -> dict[str, Any]:
    original, source = _input_of(context, args)
    words = distinct_words(original, 60)
    if not words:
        raise ValueError("the text has no words to remove")
    variants = [remove_words(original, [w]) for w in words]
    probabilities = await context.blackbox.apredict_proba([original, *variants])
    result = _effects(context, source, probabilities, words, "word removed", top)
    checked = [w.lower() for w in list(result["effects"])[:CHECKED]]
    [gaps] = await text_prediction_gaps(context.blackbox, [original], [checked], n_samples=16)
    return {**result, "check": _check(gaps, len(checked))}


@register_tool("feature_effect")
def feature_effect_tool(context: ProbeContext) -> BaseTool:
    async def run_tabular(args: TabularEffectArgs) -> dict[str, Any]:
        return await _tabular_effects(context, args.row, args.top)

    async def run_text(args: TextEffectArgs) -> dict[str, Any]:
        return await _text_effects(context, args, args.top)

    description = (
        "Which inputs drive one prediction: {what} one at a time, re-queries the model, and reports how much the "
        "probability of the predicted class drops (positive = the input supports the prediction), with a PGI / PGU "
        "check of the top inputs. Returns a bar chart."
    )
    if context.kind == "tabular":
        what = "sets each feature to its data-set median"
        return make_tool("feature_effect", description.format(what=what), TabularEffectArgs, run_tabular)
    return make_tool("feature_effect", description.format(what="removes each word"), TextEffectArgs, run_text)


CHECKED = 3  # the top effects whose faithfulness PGI / PGU checks


def _check(gaps: Gaps | None, k: int) -> dict[str, Any]:
    """PGI / PGU of the top-k inputs: perturbing them should move the prediction more than perturbing the rest;
    the verdict is decisive only when the interval of PGI - PGU excludes zero."""
    if gaps is None:
        return {"top_k": k, "pgi": None, "pgu": None, "verdict": "inconclusive"}
    low, high = gaps.check.interval
    return {
        "top_k": k,
        "pgi": rounded(gaps.pgi),
        "pgu": rounded(gaps.pgu),
        "verdict": gaps.check.verdict,
        "interval": [rounded(low), rounded(high)],
        "draws": gaps.check.n,
    }


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


# -- global effects -------------------------------------------------------------------------------------------

QUANTILES = (5, 25, 50, 75, 95)
MAX_WORD_ROWS = 80
MAX_WORDS = 40


def _target_class(context: ProbeContext) -> int:
    """The class whose probability global effects report: the second of two (the 'positive' one), else the first."""
    return 1 if len(context.class_names) == 2 else 0


@register_tool("global_effects")
def global_effects_tool(context: ProbeContext) -> BaseTool:
    target = _target_class(context)

    async def run_tabular(args: GlobalEffectArgs) -> dict[str, Any]:
        rows = np.asarray(context.rows)
        names = context.feature_names
        columns = [context.feature_index(args.feature)] if args.feature is not None else range(len(names))
        settings = [(j, v) for j in columns for v in _settings(context, j, whole=args.feature is not None)]
        variants = np.repeat(rows[None, :, :], len(settings), axis=0)
        for i, (j, v) in enumerate(settings):
            variants[i, :, j] = v
        probabilities = await context.blackbox.apredict_proba(variants.reshape(-1, rows.shape[1]))
        means = probabilities[:, target].reshape(len(settings), len(rows)).mean(axis=1)
        by_column: dict[int, list[tuple[float, float]]] = {}
        for (j, v), m in zip(settings, means):
            by_column.setdefault(j, []).append((v, m))
        class_name = context.class_names[target]
        if args.feature is not None:
            [(column, curve)] = by_column.items()
            return {
                "feature": names[column],
                "class": class_name,
                "curve": [{"value": context.value(column, v), "mean_probability": rounded(m)} for v, m in curve],
                "effect": rounded(_effect(context, column, curve)),
                "reading": f"mean P({class_name}) over all rows with the feature set to each value"
                + ("; effect = highest minus lowest" if _unordered(context, column) else "; effect = last minus first"),
            }
        present = [j for j in range(len(names)) if j in by_column]
        effects = np.array([_effect(context, j, by_column[j]) for j in present])
        perturbation = (
            "number moved from its 25th to its 75th percentile, boolean from false to true, ordinal from its "
            "lowest to its highest seen value; a category set to each seen value (its effect: highest minus "
            "lowest mean probability, unsigned)"
        )
        return _global_summary(context, target, [names[j] for j in present], effects, perturbation, args.top)

    async def run_text(args: GlobalEffectArgs) -> dict[str, Any]:
        # one word: every row that has it; the top words: a sample, to bound the queries
        texts = [str(t) for t in list(context.rows)[: None if args.feature else MAX_WORD_ROWS]]
        word_sets = [set(w.lower() for w in text_words(t)) for t in texts]
        if args.feature is not None:
            words = [args.feature.strip().lower()]
        else:
            counts: dict[str, int] = {}
            for found in word_sets:
                for word in found:
                    counts[word] = counts.get(word, 0) + 1
            frequent = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= 3 and len(w) > 2]
            words = frequent[:MAX_WORDS]
        pairs = [(word, i) for word in words for i, found in enumerate(word_sets) if word in found]
        if not pairs:
            raise ValueError(f"no text among the first {len(texts)} rows contains {words[0] if words else 'a repeated word'!r}")
        edited = [remove_words(texts[i], [word]) for word, i in pairs]
        originals = sorted({i for _, i in pairs})
        probabilities = await context.blackbox.apredict_proba([texts[i] for i in originals] + edited)
        base = dict(zip(originals, probabilities[: len(originals), target]))
        drops: dict[str, list[float]] = {}
        for (word, i), p in zip(pairs, probabilities[len(originals) :, target]):
            drops.setdefault(word, []).append(base[i] - p)
        effects = np.array([np.mean(drops[w]) for w in words if w in drops])
        present = [w for w in words if w in drops]
        result = _global_summary(context, target, present, effects, "word removed from the texts that contain it", args.top)
        result["texts_with_word"] = {w: len(drops[w]) for w in result["effects"]}
        return result

    description = (
        "How inputs drive the model across the whole data set (not one row): the signed change in the mean "
        "probability of a class when each feature moves from low to high (or a word is removed); with `feature`, "
        "that one feature's curve."
    )
    if context.kind == "tabular":
        return make_tool("global_effects", description, GlobalEffectArgs, run_tabular)
    return make_tool("global_effects", description, GlobalEffectArgs, run_text)


def _unordered(context: ProbeContext, column: int) -> bool:
    return context.schema.columns[column].kind == "categorical"


def _settings(context: ProbeContext, column: int, whole: bool) -> list[float]:
    """The values a column is set to across the data: a category's seen values (most common first); a boolean's
    or ordinal's lowest and highest seen value (every one for a curve); a number's percentiles (two without a
    curve)."""
    values = np.asarray(context.rows)[:, column]
    present = values[~np.isnan(values)]
    if not len(present):
        return []
    if context.schema.columns[column].discrete:
        codes, counts = np.unique(present, return_counts=True)
        if _unordered(context, column):
            return [float(codes[i]) for i in np.argsort(-counts, kind="stable")[:MAX_VALUES]]
        return [float(c) for c in codes] if whole else [float(codes[0]), float(codes[-1])]
    return [float(v) for v in np.percentile(present, QUANTILES if whole else (25, 75))]


def _effect(context: ProbeContext, column: int, curve: list[tuple[float, float]]) -> float:
    means = [m for _, m in curve]
    return max(means) - min(means) if _unordered(context, column) else means[-1] - means[0]


def _global_summary(
    context: ProbeContext, target: int, names: list[str], effects: np.ndarray, perturbation: str, top: int
) -> dict[str, Any]:
    order = np.argsort(-np.abs(effects), kind="stable")[:top]
    ranked = [(names[i], rounded(effects[i])) for i in order]
    class_name = context.class_names[target]
    return {
        "class": class_name,
        "perturbation": perturbation,
        "effects": dict(ranked),
        "plot": {
            "kind": "bar",
            "title": f"Change in mean P({class_name}) across the data",
            "labels": [name for name, _ in ranked],
            "values": [value for _, value in ranked],
        },
    }


# -- surrogate rule -------------------------------------------------------------------------------------------


@register_tool("surrogate_rule")
def surrogate_rule_tool(context: ProbeContext) -> BaseTool:
    async def run(args: SurrogateArgs) -> dict[str, Any]:
        from sklearn.tree import DecisionTreeClassifier

        labels = np.asarray(await context.blackbox.apredict(context.rows)).astype(str)
        if context.kind == "tabular":
            features, names = _rule_features(context)
        else:
            from sklearn.feature_extraction.text import CountVectorizer

            vectorizer = CountVectorizer(binary=True, min_df=2, max_features=500)
            features = vectorizer.fit_transform([str(t) for t in context.rows]).toarray()
            names = list(vectorizer.get_feature_names_out())
        half = len(labels) // 2 if len(labels) >= 20 else len(labels)
        tree = DecisionTreeClassifier(max_depth=args.depth, random_state=0).fit(features[:half], labels[:half])
        held_out = features[half:] if half < len(labels) else features
        truth = labels[half:] if half < len(labels) else labels
        fidelity = float(np.mean(tree.predict(held_out) == truth))
        return {
            "rules": _tree_rules(tree, names, context)[:8],
            "fidelity": rounded(fidelity),
            "checked_on": f"{len(truth)} {'held-out ' if half < len(labels) else ''}rows",
            "reading": "fidelity = share of rows where the rule gives the model's own label",
        }

    return make_tool(
        "surrogate_rule",
        "A readable rule for how the model decides: a small decision tree fitted to the model's own labels on the "
        "data, with its fidelity (how often it agrees with the model) on rows it was not fitted on.",
        SurrogateArgs,
        run,
    )


def _rule_features(context: ProbeContext) -> tuple[np.ndarray, list[Any]]:
    """What the rule tree splits on, each with how to say its two sides: a number (or ordinal) by a threshold,
    a boolean as itself, a category by one indicator per seen value (`workclass = Private` or not)."""
    rows = np.asarray(context.rows)
    features, names = [], []
    for j, column in enumerate(context.schema.columns):
        name = context.feature_names[j]
        if column.kind == "categorical":
            for code in np.unique(rows[~np.isnan(rows[:, j]), j]):
                features.append((rows[:, j] == code).astype(float))
                value = context.value(j, code)
                names.append((f"{name} != {value}", f"{name} = {value}"))
        elif column.kind == "boolean":
            features.append(rows[:, j])
            names.append((f"{name} = False", f"{name} = True"))
        else:
            features.append(rows[:, j])
            names.append(j)
    return np.column_stack(features), names


def _tree_rules(tree: Any, names: list[Any], context: ProbeContext) -> list[dict[str, Any]]:
    """Each leaf of a fitted tree as `if <conditions> then <label>`, largest leaves first."""
    inner = tree.tree_
    rules = []

    def walk(node: int, conditions: list[str]) -> None:
        if inner.children_left[node] == -1:
            label = str(tree.classes_[int(np.argmax(inner.value[node][0]))])
            rules.append({"if": " and ".join(conditions) or "always", "then": label, "rows": int(inner.n_node_samples[node])})
            return
        name, threshold = names[inner.feature[node]], inner.threshold[node]
        if isinstance(name, tuple):  # an indicator's or boolean's two sides, said in the user's values
            low, high = name
        elif context.kind == "tabular":
            low, high = _threshold_sides(context, name, threshold)
        else:
            low, high = f"the text lacks '{name}'", f"the text contains '{name}'"
        walk(inner.children_left[node], [*conditions, low])
        walk(inner.children_right[node], [*conditions, high])

    walk(0, [])
    return sorted(rules, key=lambda rule: -rule["rows"])


def _threshold_sides(context: ProbeContext, column: int, threshold: float) -> tuple[str, str]:
    """`age <= 39.5` / `age > 39.5`; an ordinal by its values: `grade <= mid` / `grade >= high`."""
    name = context.feature_names[column]
    if context.schema.columns[column].kind == "ordinal":
        below, above = np.floor(threshold), np.ceil(threshold)
        return f"{name} <= {context.value(column, below)}", f"{name} >= {context.value(column, above)}"
    return f"{name} <= {rounded(threshold, 3)}", f"{name} > {rounded(threshold, 3)}"
