"""Global effects: how inputs drive the model across the whole data (not one row). Every row gets a feature set to
low and high values (a word removed from the texts that hold it) and the mean probability of a class is compared;
for one feature, its curve (a partial dependence read from the black box)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.errors import InvalidInput
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.catalog import ChatForm, Method, MethodContext, register
from xplain.methods.chat_answers import signed_list
from xplain.methods.reference_data import ReferenceData, rounded
from xplain.methods.words import remove_words, words as text_words

QUANTILES = (5, 25, 50, 75, 95)
MAX_VALUES = 12  # the most common values of a category that a curve shows
MAX_WORD_ROWS = 80
MAX_WORDS = 40
UNORDERED = "highest minus lowest"  # how a category's effect is read (its values have no order)


class GlobalEffectsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str | None = Field(None, max_length=80, description="One feature (or word) to trace; default: all.")
    top: int = Field(8, ge=1, le=20, description="How many features (or words) to report, largest effect first.")


class CurvePoint(BaseModel):
    value: Any
    mean_probability: float


class GlobalEffectsResult(MethodResult):
    method: str = "global_effects"
    class_name: str = Field(description="The class whose mean probability is reported.")
    perturbation: str
    effects: dict[str, float] = Field(description="Signed change in the mean probability, largest |change| first.")
    feature: str | None = Field(None, description="With one feature: its name.")
    curve: list[CurvePoint] | None = Field(None, description="With one feature: the mean probability per value.")
    texts_with_word: dict[str, int] | None = Field(None, description="Texts: how many texts hold each word.")


def target_class(data: ReferenceData) -> int:
    """The class whose probability global effects report: the second of two (the 'positive' one), else the first."""
    return 1 if len(data.class_names) == 2 else 0


def _unordered(data: ReferenceData, column: int) -> bool:
    return data.schema.columns[column].kind == "categorical"


def _settings(data: ReferenceData, column: int, whole: bool) -> list[float]:
    """The values a column is set to across the data: a category's seen values (most common first); a boolean's
    or ordinal's lowest and highest seen value (every one for a curve); a number's percentiles (two without a
    curve)."""
    values = np.asarray(data.rows)[:, column]
    present = values[~np.isnan(values)]
    if not len(present):
        return []
    if data.schema.columns[column].discrete:
        codes, counts = np.unique(present, return_counts=True)
        if _unordered(data, column):
            return [float(codes[i]) for i in np.argsort(-counts, kind="stable")[:MAX_VALUES]]
        return [float(c) for c in codes] if whole else [float(codes[0]), float(codes[-1])]
    return [float(v) for v in np.percentile(present, QUANTILES if whole else (25, 75))]


def _effect(data: ReferenceData, column: int, curve: list[tuple[float, float]]) -> float:
    means = [m for _, m in curve]
    return max(means) - min(means) if _unordered(data, column) else means[-1] - means[0]


def _ranked(names: list[str], effects: np.ndarray, top: int) -> dict[str, float]:
    order = np.argsort(-np.abs(effects), kind="stable")[:top]
    return {names[i]: rounded(effects[i]) for i in order}


async def tabular_effects(data: ReferenceData, options: GlobalEffectsOptions) -> GlobalEffectsResult:
    target = target_class(data)
    rows = np.asarray(data.rows)
    names = data.feature_names
    columns = [data.feature_index(options.feature)] if options.feature is not None else range(len(names))
    settings = [(j, v) for j in columns for v in _settings(data, j, whole=options.feature is not None)]
    variants = np.repeat(rows[None, :, :], len(settings), axis=0)
    for i, (j, v) in enumerate(settings):
        variants[i, :, j] = v
    probabilities = await data.blackbox.apredict_proba(variants.reshape(-1, rows.shape[1]))
    means = probabilities[:, target].reshape(len(settings), len(rows)).mean(axis=1)
    by_column: dict[int, list[tuple[float, float]]] = {}
    for (j, v), m in zip(settings, means):
        by_column.setdefault(j, []).append((v, m))
    class_name = data.class_names[target]
    if options.feature is not None:
        [(column, curve)] = by_column.items()
        unordered = _unordered(data, column)
        return GlobalEffectsResult(
            class_name=class_name,
            perturbation=f"mean P({class_name}) over all rows with {names[column]} set to each value; effect = "
            + (UNORDERED if unordered else "last minus first"),
            effects={names[column]: rounded(_effect(data, column, curve))},
            feature=names[column],
            curve=[CurvePoint(value=data.value(column, v), mean_probability=rounded(m)) for v, m in curve],
        )
    present = [j for j in range(len(names)) if j in by_column]
    effects = np.array([_effect(data, j, by_column[j]) for j in present])
    return GlobalEffectsResult(
        class_name=class_name,
        perturbation="number moved from its 25th to its 75th percentile, boolean from false to true, ordinal from "
        "its lowest to its highest seen value; a category set to each seen value (its effect: highest minus lowest "
        "mean probability, unsigned)",
        effects=_ranked([names[j] for j in present], effects, options.top),
    )


async def text_effects(data: ReferenceData, options: GlobalEffectsOptions) -> GlobalEffectsResult:
    """One word: every text that has it; the top words: a sample of the texts, to bound the queries."""
    target = target_class(data)
    texts = [str(t) for t in list(data.rows)[: None if options.feature else MAX_WORD_ROWS]]
    word_sets = [set(w.lower() for w in text_words(t)) for t in texts]
    if options.feature is not None:
        words = [options.feature.strip().lower()]
    else:
        counts: dict[str, int] = {}
        for found in word_sets:
            for word in found:
                counts[word] = counts.get(word, 0) + 1
        frequent = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= 3 and len(w) > 2]
        words = frequent[:MAX_WORDS]
    pairs = [(word, i) for word in words for i, found in enumerate(word_sets) if word in found]
    if not pairs:
        raise InvalidInput(
            f"no text among the first {len(texts)} rows contains {words[0] if words else 'a repeated word'!r}"
        )
    edited = [remove_words(texts[i], [word]) for word, i in pairs]
    originals = sorted({i for _, i in pairs})
    probabilities = await data.blackbox.apredict_proba([texts[i] for i in originals] + edited)
    base = dict(zip(originals, probabilities[: len(originals), target]))
    drops: dict[str, list[float]] = {}
    for (word, i), p in zip(pairs, probabilities[len(originals) :, target]):
        drops.setdefault(word, []).append(base[i] - p)
    present = [w for w in words if w in drops]
    effects = _ranked(present, np.array([np.mean(drops[w]) for w in present]), options.top)
    return GlobalEffectsResult(
        class_name=data.class_names[target],
        perturbation="word removed from the texts that contain it",
        effects=effects,
        texts_with_word={w: len(drops[w]) for w in effects},
    )


async def _global_effects(ctx: MethodContext, items: list[Any], options: GlobalEffectsOptions) -> GlobalEffectsResult:
    data = ReferenceData.for_set(ctx, items, what="global_effects")
    with measure_cost(ctx.blackbox) as meter:
        result = await (tabular_effects if data.kind == "tabular" else text_effects)(data, options)
    result.cost = meter.cost
    return result


def _answer(r: dict[str, Any]) -> str:
    if r.get("curve") and UNORDERED in r["perturbation"]:  # a category's values have no order to rise along
        high = max(r["curve"], key=lambda point: point["mean_probability"])
        low = min(r["curve"], key=lambda point: point["mean_probability"])
        return (
            f"Across the data, the mean P({r['class_name']}) is highest with {r['feature']} = {high['value']} "
            f"({high['mean_probability']}) and lowest with {r['feature']} = {low['value']} ({low['mean_probability']})."
        )
    if r.get("curve"):
        first, last = r["curve"][0], r["curve"][-1]
        rise = last["mean_probability"] - first["mean_probability"]
        trend = "rising" if rise > 0 else "falling" if rise < 0 else "flat"
        return (
            f"Across the data, as {r['feature']} goes from {first['value']} to {last['value']}, the mean "
            f"P({r['class_name']}) goes from {first['mean_probability']} to {last['mean_probability']} ({trend})."
        )
    return (
        f"Across the data, the inputs that move the mean P({r['class_name']}) most ({r['perturbation']}): "
        f"{signed_list(r['effects'])}."
    )


register(
    Method(
        name="global_effects",
        description="How inputs drive the model across the whole data (not one row): the signed change in the mean "
        "probability of a class when each feature moves from low to high (or a word is removed); with `feature`, "
        "that one feature's curve.",
        inputs=("tabular_row", "text"),
        options=GlobalEffectsOptions,
        result=GlobalEffectsResult,
        run=_global_effects,
        unit="set",
        uses_llm=False,
        min_inputs=0,
        chat=ChatForm(
            " to know how a feature affects the predictions across the data.",
            (
                (r"\b(?:overall|globally|global|in general|across (?:the|all)|on average|generally|whole data|"
                 r"all (?:the )?rows)\b", 2),
                (r"\bfeature importances?\b|\bimportan(?:t|ce) features?\b|\bwhich (?:features|words|inputs) matter\b", 3),
                (r"\bhow (?:does|do|did)\b.{0,40}\b(?:affect|influence|change|impact|shape)\b", 3),
                (r"\b(?:effects?|impact|influence|role) of\b|\bdepend(?:s|ence)? on\b|\bpartial dependence\b", 3),
                (r"\bwhat about\b|\band (?:the )?FEATURE\b", 0.5),
            ),
            _answer,
        ),
    )
)
