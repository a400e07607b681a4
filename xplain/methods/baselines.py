"""LIME and KernelSHAP through their own libraries, and occlusion, querying through the same BlackBox so queries
count alike."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.blackbox import BlackBox
from xplain.errors import InvalidInput
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.catalog import BackgroundRows, ChatForm, Method, MethodContext, register
from xplain.methods.checks import Check, prediction_gaps, text_prediction_gaps
from xplain.methods.posthoc import check_table, table_instance
from xplain.blackbox.schema import numeric_schema
from xplain.validation import reference_rows
from xplain.methods.words import distinct_words, remove_words

#: LIME fits a weighted linear model with one coefficient per feature; below this many samples per feature its
#: weights are mostly the ridge penalty and the sampling noise (a common rule of thumb for regressions).
LIME_SAMPLES_PER_FEATURE = 5


class BaselineExplanation(MethodResult):
    """A classical explainer's ranking for one instance, with the same PGI / PGU check as the LLM's."""

    instance: dict[str, Any] | list[float] | str = Field(
        description="The row explained (column -> value, in the user's terms), or the text."
    )
    predicted_label: str
    ranking: list[str] = Field(description="Features by |weight|, largest first.")
    weights: dict[str, float]
    pgi: float | None
    pgu: float | None
    faithfulness: Check | None = Field(
        default=None, description="PGI - PGU with its confidence interval and verdict."
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Why the weights may be under-determined, and the library's own warnings.",
    )


def _lime_weights(
    blackbox: BlackBox,
    x: np.ndarray,
    background: np.ndarray,
    label: int,
    n_samples: int,
    seed: int,
):
    from lime.lime_tabular import LimeTabularExplainer

    schema = blackbox.schema
    explainer = LimeTabularExplainer(
        background,
        feature_names=list(range(x.size)),
        # categories and booleans are drawn from the background's values (LIME's own categorical support)
        categorical_features=[] if schema is None else [j for j, c in enumerate(schema.columns) if c.discrete],
        discretize_continuous=False,
        sample_around_instance=True,  # a local neighbourhood, like the LLM's, not draws around the data mean
        random_state=seed,
    )
    found = explainer.explain_instance(
        x,
        # LIME's Gaussian steps on a whole-number column are rounded before the model sees them
        blackbox.predict_proba if schema is None else lambda rows: blackbox.predict_proba(schema.snap(rows)),
        labels=(label,),
        num_features=x.size,
        num_samples=n_samples,
    )
    weights = np.zeros(x.size)
    for index, weight in found.as_map()[label]:
        weights[index] = weight
    return weights


_GLOBAL_RNG = threading.Lock()


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """shap's KernelExplainer samples coalitions from NumPy's global RNG and ignores its `seed` argument (shap
    0.51), so the same request gave other weights each time: seed that RNG for one call at a time, and put the
    caller's state back after."""
    with _GLOBAL_RNG:
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _shap_weights(
    blackbox: BlackBox,
    x: np.ndarray,
    background: np.ndarray,
    label: int,
    n_samples: int,
    seed: int,
):
    import shap

    # KernelSHAP evaluates each coalition against every background row: a small k-means summary and
    # n_samples // len(summary) coalitions keep its model rows at the same budget as the other methods. Each
    # centre's values are rounded to values seen in their column, so a category stays a category the model knows;
    # a feature is a whole column, so a one-hot model's effects come out grouped by column.
    summary = (
        _kmeans_summary(np.ascontiguousarray(background, dtype=float).tobytes(), background.shape)
        if len(background) > SHAP_BACKGROUND
        else background
    )
    coalitions = shap_coalitions(n_samples, len(background))
    explainer = shap.KernelExplainer(lambda rows: blackbox.predict_proba(rows)[:, label], summary)
    with numpy_global_seed(seed):
        values = explainer.shap_values(x.reshape(1, -1), nsamples=coalitions, l1_reg=False, silent=True)
    return np.asarray(values).reshape(-1)


SHAP_BACKGROUND = 4


@functools.lru_cache(maxsize=8)
def _kmeans_summary(rows: bytes, shape: tuple[int, int]):
    """shap's k-means summary of a background, computed once per background rather than once per explained row
    (on a table of a few thousand rows it took seconds each time; k-means is seeded, so the summary is the same)."""
    import shap

    return shap.kmeans(np.frombuffer(rows).reshape(shape), SHAP_BACKGROUND, round_values=True)


def _occlusion_weights(
    blackbox: BlackBox,
    x: np.ndarray,
    background: np.ndarray,
    label: int,
    n_samples: int,
    seed: int,
):
    """Occlusion against reference rows: each column in turn takes the values of the same few background rows
    (n_samples // columns of them, drawn once by `seed`), and its weight is the mean drop in the label's
    probability; a category takes another row's category, never a code between two."""
    count = max(1, min(len(background), n_samples // max(x.size, 1)))
    donors = background[np.random.default_rng(seed).choice(len(background), count, replace=False)]
    variants = np.repeat(x[None, :], x.size * count, axis=0)
    for j in range(x.size):
        variants[j * count : (j + 1) * count, j] = donors[:, j]
    base = blackbox.predict_proba(x[None, :])[0, label]
    occluded = blackbox.predict_proba(variants)[:, label].reshape(x.size, count)
    return base - occluded.mean(axis=1)


EXPLAINERS = {"lime": _lime_weights, "kernelshap": _shap_weights, "occlusion": _occlusion_weights}


def shap_coalitions(n_samples: int, n_background: int) -> int:
    """Coalitions KernelSHAP gets at a budget of `n_samples` model rows (each coalition costs one row per
    background summary row)."""
    return max(n_samples // max(min(n_background, SHAP_BACKGROUND), 1), 2)


def budget_warnings(method: str, n_samples: int, n_features: int, n_background: int) -> list[str]:
    """Why a baseline's weights are under-determined at this budget, before anything runs."""
    if method == "kernelshap":
        coalitions = shap_coalitions(n_samples, n_background)
        if coalitions < n_features + 2:
            return [
                f"KernelSHAP is under-determined: {coalitions} coalitions for {n_features} features (it needs at "
                f"least {n_features + 2}; raise n_samples to {(n_features + 2) * min(n_background, SHAP_BACKGROUND)})"
            ]
    minimum = LIME_SAMPLES_PER_FEATURE * n_features
    if method.startswith("lime") and n_samples < minimum:
        return [
            f"LIME has {n_samples} samples for {n_features} features, below the stated minimum of "
            f"{LIME_SAMPLES_PER_FEATURE} per feature ({minimum}); its weights are mostly noise and penalty"
        ]
    return []


#: Warnings about the libraries' own futures (raised on import), not about this explanation.
NOT_ABOUT_RESULT = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


@contextmanager
def library_warnings():
    """Collect what shap / lime warn about (warnings and their loggers) instead of losing it on stderr.
    The baselines run one at a time, so the process-wide warnings filter is swapped only briefly."""
    collected: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("shap", "lime")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield collected
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        collected.extend(str(w.message).strip() for w in caught if not issubclass(w.category, NOT_ABOUT_RESULT))
        unique = list(dict.fromkeys(collected))
        collected[:] = unique


def _with_warnings(function: Callable, *args) -> tuple[np.ndarray | dict, list[str]]:
    """Run a library explainer and return its weights with the warnings it raised."""
    with library_warnings() as collected:
        weights = function(*args)
    return weights, collected


async def explain_baseline(
    method: str,
    blackbox: BlackBox,
    instances: np.ndarray,
    background: np.ndarray,
    *,
    n_samples: int = 100,
    k: int = 4,
    sigma: float = 0.3,
    n_gap_samples: int = 8,
    max_gap_samples: int = 64,
    seed: int = 0,
) -> list[BaselineExplanation]:
    """Run LIME, KernelSHAP or occlusion at `n_samples` model rows per instance; PGI / PGU over the top-k, as for
    the LLM.
    Each result warns when the budget leaves the weights under-determined, and carries the library's warnings."""
    if method not in EXPLAINERS:
        raise ValueError(
            f"unknown baseline {method!r}; expected one of {sorted(EXPLAINERS)}"
        )
    if blackbox.kind != "tabular":
        raise ValueError(
            f"baselines explain tabular black boxes, got kind {blackbox.kind!r}"
        )
    instances = check_table(instances)  # LIME and KernelSHAP cannot perturb a missing number
    background = np.asarray(background, dtype=float)
    background = check_table(background[np.isfinite(background).all(axis=1)], instances.shape[1])
    names = blackbox.feature_names or [f"x{i}" for i in range(instances.shape[1])]
    under_determined = budget_warnings(method, n_samples, instances.shape[1], len(background))
    scale = (blackbox.schema or numeric_schema(names)).scale(background)
    results = []
    for x in instances:  # each library runs its own sampling loop per instance
        with measure_cost(blackbox) as meter:
            probabilities = await blackbox.apredict_proba(x.reshape(1, -1))
            label = int(probabilities[0].argmax())
            weights, raised = await asyncio.to_thread(
                _with_warnings, EXPLAINERS[method], blackbox, x, background, label, n_samples, seed
            )
            order = [int(i) for i in np.argsort(-np.abs(weights), kind="stable")]
            [gaps] = await prediction_gaps(
                blackbox,
                x,
                [order[:k]],
                scale=scale,
                sigma=sigma,
                n_samples=n_gap_samples,
                max_samples=max_gap_samples,
                seed=seed,
                background=background,
            )
        results.append(
            BaselineExplanation(
                method=method,
                cost=meter.cost,
                instance=table_instance(blackbox, x),
                predicted_label=str(blackbox.classes_[label]),
                ranking=[names[i] for i in order],
                weights={names[i]: float(weights[i]) for i in range(len(names))},
                pgi=gaps.pgi if gaps else None,
                pgu=gaps.pgu if gaps else None,
                faithfulness=gaps.check if gaps else None,
                warnings=under_determined + raised,
            )
        )
    return results


def _lime_text_weights(
    blackbox: BlackBox, text: str, label: int, n_samples: int, seed: int
) -> dict[str, float]:
    """LIME's word weights (bag of words: a word is removed everywhere at once), keyed by the lower-cased word."""
    from lime.lime_text import LimeTextExplainer

    explainer = LimeTextExplainer(bow=True, random_state=seed)
    found = explainer.explain_instance(
        text,
        lambda variants: blackbox.predict_proba(list(variants)),
        labels=(label,),
        # LIME counts case variants as separate words
        num_features=2 * len(distinct_words(text)),
        num_samples=n_samples,
    )
    weights: dict[str, float] = {}
    # LIME keeps case; fold it, keeping the larger weight
    for word, weight in found.as_list(label=label):
        key = word.lower()
        if abs(weight) > abs(weights.get(key, 0.0)):
            weights[key] = float(weight)
    return weights


def _shap_text_weights(
    blackbox: BlackBox, text: str, label: int, n_samples: int, seed: int
) -> dict[str, float]:
    """KernelSHAP over word presence: a coalition keeps some of the text's distinct words and removes the rest
    everywhere; the reference is the text with every one of them removed."""
    import shap

    words = distinct_words(text)

    def keep(masks: np.ndarray) -> np.ndarray:
        variants = [remove_words(text, [w for w, on in zip(words, mask) if not on]) for mask in masks]
        return blackbox.predict_proba(variants)[:, label]

    explainer = shap.KernelExplainer(keep, np.zeros((1, len(words))))
    with numpy_global_seed(seed):
        values = explainer.shap_values(np.ones((1, len(words))), nsamples=max(n_samples, 2), l1_reg=False, silent=True)
    values = np.asarray(values).reshape(-1)
    return {w: float(v) for w, v in zip(words, values)}


def _occlusion_text_weights(blackbox: BlackBox, text: str, label: int, n_samples: int, seed: int) -> dict[str, float]:
    """Each distinct word removed everywhere, one variant per word (at most n_samples words): the drop in the
    label's probability."""
    words = distinct_words(text)[: max(n_samples, 1)]
    probabilities = blackbox.predict_proba([text, *(remove_words(text, [w]) for w in words)])[:, label]
    return {w: float(probabilities[0] - p) for w, p in zip(words, probabilities[1:])}


TEXT_EXPLAINERS = {"lime": _lime_text_weights, "kernelshap": _shap_text_weights, "occlusion": _occlusion_text_weights}


async def explain_text_baseline(
    blackbox: BlackBox,
    texts: list[str],
    *,
    method: str = "lime",
    n_samples: int = 100,
    k: int = 4,
    n_gap_samples: int = 8,
    max_gap_samples: int = 64,
    seed: int = 0,
) -> list[BaselineExplanation]:
    """LIME, KernelSHAP or occlusion for text at `n_samples` model queries per text (occlusion: one per distinct
    word); PGI / PGU over its top-k words, as for the LLM."""
    if method not in TEXT_EXPLAINERS:
        raise ValueError(f"unknown text baseline {method!r}; expected one of {sorted(TEXT_EXPLAINERS)}")
    if blackbox.kind != "text":
        raise ValueError(
            f"explain_text_baseline needs a text black box, got kind {blackbox.kind!r}"
        )
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    results = []
    for text in texts:  # LIME runs its own sampling loop per text
        with measure_cost(blackbox) as meter:
            label = int((await blackbox.apredict_proba([text]))[0].argmax())
            weights, raised = await asyncio.to_thread(
                _with_warnings, TEXT_EXPLAINERS[method], blackbox, text, label, n_samples, seed
            )
            ranking = sorted(weights, key=lambda w: -abs(weights[w]))
            [gaps] = await text_prediction_gaps(
                blackbox,
                [text],
                [ranking[:k]],
                n_samples=n_gap_samples,
                max_samples=max_gap_samples,
                seed=seed,
            )
        results.append(
            BaselineExplanation(
                method=method,
                cost=meter.cost,
                instance=text,
                predicted_label=str(blackbox.classes_[label]),
                ranking=ranking,
                weights=weights,
                pgi=gaps.pgi if gaps else None,
                pgu=gaps.pgu if gaps else None,
                faithfulness=gaps.check if gaps else None,
                warnings=budget_warnings(method, n_samples, len(distinct_words(text)), 1) + raised,
            )
        )
    return results


class BaselineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(4, ge=1, le=10, description="Top features (or words) whose PGI / PGU are checked.")
    n_samples: int = Field(100, ge=8, le=5000, description="Black-box rows per instance: the explainer's budget.")
    sigma: float = Field(0.3, gt=0, le=5, description="Tables: PGI/PGU noise in standard deviations.")
    n_gap_samples: int = Field(8, ge=2, le=1000, description="Perturbed copies per instance for PGI / PGU, first round.")
    max_gap_samples: int = Field(
        64, ge=2, le=4000, description="Budget of perturbed copies: sampling doubles until the check decides."
    )
    seed: int = 0
    background: BackgroundRows = None


def background_rows(ctx: MethodContext, given: list | None) -> np.ndarray:
    background = reference_rows(ctx.blackbox, given if given is not None else ctx.reference)
    if background is None:
        raise InvalidInput("this method needs background rows: pass options.background (rows like the data)")
    return background


def _baseline(name: str):
    async def run(ctx: MethodContext, rows: list, options: BaselineOptions) -> list[BaselineExplanation]:
        common = dict(
            n_samples=options.n_samples, k=options.k, n_gap_samples=options.n_gap_samples,
            max_gap_samples=options.max_gap_samples, seed=options.seed,
        )  # fmt: skip
        if ctx.blackbox.kind == "tabular":
            background = background_rows(ctx, options.background)
            table = np.asarray(rows, dtype=float)
            missing = np.isnan(table).any(axis=1)  # a missing number cannot be perturbed: that row fails alone
            explained = iter(await explain_baseline(
                name, ctx.blackbox, table[~missing], background, sigma=options.sigma, **common
            ) if not missing.all() else [])  # fmt: skip
            return [
                InvalidInput(f"{name} cannot perturb a missing number: fill the row's missing values first")
                if gone else next(explained)
                for gone in missing
            ]
        wordless = [not distinct_words(text) for text in rows]  # nothing to weigh: that text fails alone
        explained = iter(await explain_text_baseline(
            ctx.blackbox, [t for t, gone in zip(rows, wordless) if not gone], method=name, **common
        ) if not all(wordless) else [])  # fmt: skip
        return [
            InvalidInput(f"{name} weighs a text's words, and this one has none (only punctuation or symbols)")
            if gone else next(explained)
            for gone in wordless
        ]

    return run


_ANSWER = "$library ranks the inputs for $subject (predicted $predicted_label) as: $ranking; the check gives PGI $pgi, PGU $pgu."
for _name, _description, _chat in (
    ("lime", "LIME's local linear weights for each prediction (tables and texts), with the same PGI / PGU check.",
     ChatForm(" to see LIME's local weights for one row.", (r"\blime\b",), _ANSWER.replace("$library", "LIME"))),
    ("kernelshap", "KernelSHAP values for each prediction (tables and texts), with the same PGI / PGU check.",
     ChatForm(" to see KernelSHAP values for one row.", (r"\bk(?:ernel)?[ -]?shap\b", r"\bshapley\b"),
              _ANSWER.replace("$library", "KernelSHAP"))),
):  # fmt: skip
    register(
        Method(
            name=_name,
            description=_description,
            inputs=("tabular_row", "text"),
            options=BaselineOptions,
            result=BaselineExplanation,
            run=_baseline(_name),
            uses_llm=False,
            chat=_chat,
        )
    )
