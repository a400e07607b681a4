"""`xplain eval counterfactual`: flip rate, edit size, fluency and cost per valid counterfactual, on a TF-IDF text
classifier and tabular models, with DiCE (random) as the tabular baseline at the same query budget; plus a
concept-effect check on a black box that reads one concept's keywords only (the truth is known)."""

from __future__ import annotations

import io
import math
import re
import time
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from xplain.blackbox import BlackBox, from_callable, from_estimator
from xplain.blackbox.errors import QueryBudgetExceeded
from xplain.data.datasets import tabular_dataset, text_dataset
from xplain.evals.report import EvalTable, Size, suite
from xplain.llm import LLM, ScoreRequest
from xplain.methods.counterfactual_tabular import tabular_counterfactuals
from xplain.methods.counterfactual_text import concept_effect, text_counterfactuals
from xplain.methods.checks import proportion_check
from xplain.prompts import load_prompt

COLUMNS = [
    "data",
    "method",
    "inputs",
    "flip_rate",
    "flip_rate_ci",
    "mean_edit_size",
    "median_edit_size",
    "fluency_cf",
    "fluency_original",
    "queries_per_valid",
    "llm_calls_per_valid",
    "effect",
    "seconds",
]
SIZES = {
    "small": {"texts": 3, "rows": 2, "rounds": 2, "tables": ("synthetic", "wine"), "concept_texts": 3},
    "full": {
        "texts": 20,
        "rows": 10,
        "rounds": 3,
        "tables": ("synthetic", "breast_cancer", "wine", "diabetes"),
        "concept_texts": 12,
    },
}
FOOD_WORDS = {"delicious", "tasty", "fresh", "bland", "stale", "greasy", "flavorful", "overcooked"}
FOOD_POSITIVE = {"delicious", "tasty", "fresh", "flavorful"}
RESTAURANT_TEXTS = [
    "The pasta was delicious and the waiter was rude.",
    "Bland soup, but the staff were friendly.",
    "Fresh bread and a slow, careless waiter.",
    "The steak was overcooked; the service was quick and kind.",
    "Tasty curry, friendly host, long wait.",
    "Stale fries and a polite waitress.",
    "Greasy burger, attentive staff.",
    "Flavorful tacos but the cashier ignored us.",
    "The salad was fresh and the manager was helpful.",
    "Bland noodles and an unfriendly server.",
    "Delicious dessert; the waiter forgot our order.",
    "Overcooked fish, but a very warm welcome.",
]


#: guided mode: words edited at most (its max_rounds)
GUIDED_WORDS = 4


def _per(total: float, valid: int) -> float | None:
    return total / valid if valid else None


async def _fluency(llm: LLM, texts: list[str]) -> float | None:
    """Mean log-likelihood per token (nats) of `texts` under the LLM, in one batched score call."""
    if not texts:
        return None
    prompt = load_prompt("counterfactual/fluency").render()
    scores = await llm.score([ScoreRequest(prompt=prompt, continuations=[" " + t]) for t in texts])
    return float(np.mean([s.logprobs[0] / max(1, s.token_counts[0]) for s in scores]))


async def _text_rows(llm: LLM, table: EvalTable, size: Size) -> None:
    data = text_dataset(n=400 if size == "small" else 2000)
    model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(max_iter=1000)).fit(
        data.texts_train, data.y_train
    )
    short = [t for t in data.texts_test if len(t) < 140][: SIZES[size]["texts"]]
    names = {0: "negative", 1: "positive"}
    for mode in ("guided", "target", "causal"):
        blackbox = from_estimator(model, kind="text")
        started = time.perf_counter()
        result = await text_counterfactuals(
            llm,
            blackbox,
            short,
            mode=mode,
            task="movie-review sentiment classifier",
            label_names=names,
            max_rounds=GUIDED_WORDS if mode == "guided" else SIZES[size]["rounds"],
            reference=data.texts_train,  # guided: the words the black box reads as the goal come from them
        )
        best = [e.valid[0] for e in result.explanations if e.valid]
        table.add(
            data="rotten_tomatoes (tf-idf + lr)",
            median_edit_size=float(np.median([c.edit_size for c in best])) if best else None,
            method=f"xplain text ({mode})",
            inputs=len(short),
            flip_rate=len(best) / len(short),
            flip_rate_ci=rate_interval(len(best), len(short)),
            mean_edit_size=float(np.mean([c.edit_size for c in best])) if best else None,
            fluency_cf=await _fluency(llm, [c.text for c in best]),
            fluency_original=await _fluency(llm, [e.text for e in result.explanations if e.valid]),
            queries_per_valid=_per(result.cost.blackbox_queries, len(best)),
            llm_calls_per_valid=_per(result.cost.llm.calls, len(best)),
            seconds=time.perf_counter() - started,
        )


class _DiceModel:
    """DiCE's view of the black box: the same de-duplicating, caching, budgeted wrapper xplain's search uses."""

    def __init__(self, blackbox: BlackBox) -> None:
        self.blackbox = blackbox

    def predict_proba(self, X):
        return self.blackbox.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X):
        return self.blackbox.predict(np.asarray(X, dtype=np.float64))


def _dice_row(name: str, data, model: RandomForestClassifier, rows: np.ndarray, budget: int) -> dict:
    """DiCE's random method held to `budget` distinct black-box rows per input (what xplain spent on average, the
    original row included; post-hoc sparsity off, as it costs extra rows); a search that needs more counts as no
    flip. Every result is re-checked on the model."""
    import dice_ml
    import pandas as pd

    frame = pd.DataFrame(data.X_train, columns=data.feature_names).assign(label=data.y_train)
    blackbox = from_estimator(model, feature_names=data.feature_names, query_budget=budget)
    explainer = dice_ml.Dice(
        dice_ml.Data(dataframe=frame, continuous_features=data.feature_names, outcome_name="label"),
        dice_ml.Model(model=_DiceModel(blackbox), backend="sklearn"),
        method="random",
    )
    started = time.perf_counter()
    flips, sizes, spent = 0, [], 0
    for row in rows:
        blackbox.reset_stats()
        query = pd.DataFrame([row], columns=data.feature_names)
        try:
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):  # DiCE's progress bars and prints
                found = (
                    explainer.generate_counterfactuals(
                        query,
                        total_CFs=1,
                        desired_class="opposite",
                        sample_size=max(1, (budget - 1) // 2),
                        random_seed=0,
                        posthoc_sparsity_param=None,
                        verbose=False,
                    )
                    .cf_examples_list[0]
                    .final_cfs_df
                )
        except QueryBudgetExceeded:
            continue
        finally:
            spent += blackbox.stats().evaluated
        if found is None or found.empty:
            continue
        candidate = found[data.feature_names].to_numpy(dtype=np.float64)[:1]
        if model.predict(candidate)[0] != model.predict(row[None, :])[0]:
            flips += 1
            sizes.append(int(np.sum(~np.isclose(candidate[0], row))))
    return {
        "data": name,
        "method": f"DiCE random (budget {budget} rows/input)",
        "inputs": len(rows),
        "flip_rate": flips / len(rows),
        "flip_rate_ci": rate_interval(flips, len(rows)),
        "mean_edit_size": float(np.mean(sizes)) if sizes else None,
        "queries_per_valid": _per(spent, flips),
        "llm_calls_per_valid": None,
        "seconds": time.perf_counter() - started,
    }


async def _tabular_rows(llm: LLM, table: EvalTable, size: Size) -> None:
    for name in SIZES[size]["tables"]:
        data = tabular_dataset(name)
        model = RandomForestClassifier(n_estimators=50, random_state=0).fit(data.X_train, data.y_train)
        rows = data.X_test[: SIZES[size]["rows"]]
        blackbox = from_estimator(model, feature_names=data.feature_names)
        started = time.perf_counter()
        result = await tabular_counterfactuals(
            llm,
            blackbox,
            rows,
            reference=data.X_train,
            label_names=dict(enumerate(data.class_names)),
            max_rounds=SIZES[size]["rounds"],
        )
        best = [e.valid[0] for e in result.explanations if e.valid]
        table.add(
            data=f"{name} (random forest)",
            method="xplain tabular",
            inputs=len(rows),
            flip_rate=len(best) / len(rows),
            flip_rate_ci=rate_interval(len(best), len(rows)),
            mean_edit_size=float(np.mean([c.edit_size for c in best])) if best else None,
            queries_per_valid=_per(result.cost.blackbox_queries, len(best)),
            llm_calls_per_valid=_per(result.cost.llm.calls, len(best)),
            seconds=time.perf_counter() - started,
        )
        budget = max(2, math.ceil(result.cost.blackbox_queries / len(rows)))
        try:
            table.add(**_dice_row(f"{name} (random forest)", data, model, rows, budget))
        except ImportError:
            table.notes["dice"] = "dice-ml is not installed; DiCE rows left out"


def food_keyword_box(texts: list[str]) -> np.ndarray:
    """A black box built to read food words only: P(positive) from the food adjectives, nothing else."""
    rows = []
    for text in texts:
        words = re.findall(r"[a-z]+", text.lower())
        score = sum(1 if w in FOOD_POSITIVE else -1 for w in words if w in FOOD_WORDS)
        p = 1 / (1 + math.exp(-2 * score))
        rows.append([1 - p, p])
    return np.array(rows)


async def _concept_rows(llm: LLM, table: EvalTable, size: Size) -> None:
    texts = RESTAURANT_TEXTS[: SIZES[size]["concept_texts"]]
    for concept in ("food quality", "service"):
        blackbox = from_callable(food_keyword_box, kind="text", classes=[0, 1])
        started = time.perf_counter()
        result = await concept_effect(
            llm, blackbox, texts, concept, output_class=1, task="restaurant-review sentiment classifier"
        )
        table.add(
            data="food-keyword box (truth: food only)",
            method=f"concept effect: {concept}",
            inputs=len(texts),
            effect=result.average_effect,
            queries_per_valid=_per(result.cost.blackbox_queries, result.texts_measured),
            llm_calls_per_valid=_per(result.cost.llm.calls, result.texts_measured),
            seconds=time.perf_counter() - started,
        )
        table.notes[f"concept_effect_{concept}"] = {
            "texts_measured": result.texts_measured,
            "mean_abs_individual_effect": float(
                np.mean([abs(e.effect) for e in result.individual if e.effect is not None])
            )
            if result.texts_measured
            else None,
        }


@suite("counterfactual")
async def run(llm: LLM, size: Size) -> EvalTable:
    table = EvalTable(suite="counterfactual", columns=COLUMNS)
    table.notes.update(
        {
            "flip_rate": "share of inputs with at least one counterfactual the black box confirmed",
            "flip_rate_ci": "its 95% Wilson interval: at a few inputs a flip rate says little, and this shows how little",
            "edit_size": "token-level edit distance (text) or number of changed features (tabular), best valid one",
            "fluency": "mean log-likelihood per token (nats) under the LLM, of the valid counterfactuals and of their originals",
            "effect": "average change in P(positive) between texts and their concept edits (should be large for food, ~0 for service)",
        }
    )
    await _text_rows(llm, table, size)
    await _tabular_rows(llm, table, size)
    await _concept_rows(llm, table, size)
    return table


def rate_interval(hits: int, n: int) -> str | None:
    """A rate's Wilson interval as text for the table, e.g. '[0.09, 0.69]'."""
    found = proportion_check(hits, n)
    return None if found is None else f"[{found.interval[0]:.2f}, {found.interval[1]:.2f}]"
