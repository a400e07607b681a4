"""`xplain eval posthoc`: LLM post-hoc strategies beside LIME and KernelSHAP at equal black-box query budgets,
on tables and on a TF-IDF text classifier.

Each row carries the checks' verdicts (faithful / inconclusive shares) and FA's interval over instances. The
"stability" block (in the JSON notes) asks whether those verdicts can be trusted: for the SAME named features,
the PGI/PGU check is re-run under 10 seeds, once as the old point comparison of 8 perturbations and once as the
sequential check with its interval; and the table's columns are reversed to see whether FA depends on which
feature got letter A (column-order letters vs the seeded shuffle)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from xplain.blackbox import BlackBox, from_callable, from_estimator
from xplain.data.datasets import tabular_dataset, text_dataset
from xplain.methods.checks import (
    feature_agreement,
    linear_ground_truth,
    mean_interval,
    prediction_gaps,
    rank_agreement,
    text_prediction_gaps,
)
from xplain.evals.report import EvalTable, Size, suite
from xplain.llm import LLM
from xplain.methods.baselines import explain_baseline, explain_text_baseline
from xplain.methods.posthoc import (
    STRATEGIES,
    TEXT_STRATEGIES,
    PosthocExplanation,
    PosthocOptions,
    explain_tabular,
    explain_text,
)
from xplain.methods.words import distinct_words

COLUMNS = [
    "method",
    "dataset",
    "model",
    "FA",
    "RA",
    "FA_ci",
    "PGI",
    "PGU",
    "faithful",
    "inconclusive",
    "exactly_k",
    "llm_kept",
    "llm_added",
    "bb_queries",
    "llm_calls",
    "seconds",
]
MODELS = {
    "logistic_regression": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=1000)
    ),
    "random_forest": lambda: RandomForestClassifier(n_estimators=100, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(random_state=0),
}
PLAN = {
    "small": {
        "datasets": ["synthetic"],
        "models": ["logistic_regression"],
        "strategies": ["perturbation"],
        "instances": 2,
        "n_samples": 16,
        "text": {
            "texts": 2,
            "strategies": ["perturbation"],
            "n_samples": 16,
            "train_texts": 2000,
        },
        "stability_seeds": 10,
    },
    "full": {
        "datasets": ["synthetic", "diabetes", "wine", "breast_cancer"],
        "models": list(MODELS),
        "strategies": list(STRATEGIES),
        "instances": 8,
        "n_samples": 32,
        "text": {
            "texts": 8,
            "strategies": list(TEXT_STRATEGIES),
            "n_samples": 32,
            "train_texts": 2000,
        },
        "stability_seeds": 10,
    },
}
#: the check's first round and budget (the old check was 8 perturbations, decided by a point comparison)
N_GAP_SAMPLES = 8
MAX_GAP_SAMPLES = 64


def ground_truth(model, dataset, x: np.ndarray) -> list[str] | None:
    """Per-instance truth for a scaled logistic regression; the synthetic set's known features otherwise; else none."""
    names = dataset.feature_names
    if isinstance(model, Pipeline) and isinstance(model[-1], LogisticRegression):
        scaler = model[0]
        return [
            names[i]
            for i in linear_ground_truth(
                model[-1].coef_[0] / scaler.scale_, x, scaler.mean_
            )
        ]
    return list(dataset.true_features) or None


def _add_rows(
    table, method, dataset_name, model_name, truths, k_truth, rankings, results, seconds, k=None
) -> None:
    """One table row: FA / RA over the instances with a truth and an answer (FA with its t interval over them),
    PGI / PGU and the verdict shares over those with a check. LLM explanations also give the share with exactly
    k features, how many of the returned features the LLM proposed and its added PGI - PGU over the evidence."""
    n = len(results)
    explained = [r for r in results if isinstance(r, PosthocExplanation)]
    added = [r.llm_added_value for r in explained if r.llm_added_value is not None]
    scored = [(t, r) for t, r in zip(truths, rankings) if t is not None and r]
    agreements = [feature_agreement(t, r, k_truth) for t, r in scored]
    checked = [r for r in results if r.faithfulness is not None]
    table.add(
        method=method,
        dataset=dataset_name,
        model=model_name,
        FA=float(np.mean(agreements)) if scored else None,
        FA_ci=_interval_text(agreements),
        RA=float(np.mean([rank_agreement(t, r, k_truth) for t, r in scored]))
        if scored
        else None,
        PGI=float(np.mean([r.pgi for r in checked])) if checked else None,
        PGU=float(np.mean([r.pgu for r in checked])) if checked else None,
        faithful=_share(checked, "faithful"),
        inconclusive=_share(checked, "inconclusive"),
        exactly_k=sum(len(r) == k for r in rankings) / n if k else None,
        llm_kept=float(np.mean([r.llm_features_kept for r in explained])) if explained else None,
        llm_added=float(np.mean(added)) if added else None,
        bb_queries=sum(r.cost.blackbox_queries for r in results) / n if hasattr(results[0], "cost") else None,
        llm_calls=sum(r.cost.llm.calls for r in results) / n if hasattr(results[0], "cost") else None,
        seconds=seconds / n if seconds is not None else None,
    )


def _add_stages(table, method, dataset_name, model_name, truths, k_truth, results, k) -> None:
    """Rows for what the verified explanation was made from, on the same draws: the LLM's own proposal and the
    evidence-only top-k (no LLM), so the LLM's share is visible beside LIME and KernelSHAP."""
    for stage in ("proposed", "evidence_only"):
        parts = [getattr(r, stage) for r in results]
        rankings = [[f.feature for f in p.features] for p in parts]
        _add_rows(table, f"{method}:{stage}", dataset_name, model_name, truths, k_truth, rankings, parts, None, k)


def _share(checked: list, verdict: str) -> float | None:
    return sum(r.faithfulness.verdict == verdict for r in checked) / len(checked) if checked else None


def _interval_text(values: list[float]) -> str | None:
    if len(values) < 2:
        return None
    low, high = mean_interval(values, 0.95)
    return f"[{max(low, 0.0):.2f}, {min(high, 1.0):.2f}]"


def _modal_agreement(verdicts: list[list[str]]) -> tuple[list[float], list[str]]:
    """Per instance (columns of `verdicts`, one row per seed): share of seeds giving its most common verdict."""
    shares, modes = [], []
    for column in zip(*verdicts):
        values, counts = np.unique(column, return_counts=True)
        shares.append(float(counts.max() / len(column)))
        modes.append(str(values[counts.argmax()]))
    return shares, modes


async def verdict_stability(make_blackbox, inputs, named: list, seeds: int, **check_options) -> dict | None:
    """The same named features checked under `seeds` seeds: how often each instance's verdict agrees with its
    most common one, for the old point comparison (PGI > PGU from 8 perturbations) and for the sequential check
    with its interval (decisive only when the interval excludes zero)."""
    rows = [i for i, features in enumerate(named) if features]
    if not rows:
        return None
    point, checked, draws = [], [], []
    for seed in range(seeds):
        blackbox = make_blackbox()
        if blackbox.kind == "text":
            texts = [inputs[i] for i in rows]
            words = [named[i] for i in rows]
            once = await text_prediction_gaps(blackbox, texts, words, n_samples=N_GAP_SAMPLES, seed=seed)
            sequential = await text_prediction_gaps(
                blackbox, texts, words, n_samples=N_GAP_SAMPLES, max_samples=MAX_GAP_SAMPLES, seed=seed
            )
        else:
            chosen = np.asarray(inputs)[rows]
            columns = [named[i] for i in rows]
            once = await prediction_gaps(blackbox, chosen, columns, n_samples=N_GAP_SAMPLES, seed=seed, **check_options)
            sequential = await prediction_gaps(
                blackbox, chosen, columns, n_samples=N_GAP_SAMPLES, max_samples=MAX_GAP_SAMPLES, seed=seed,
                **check_options,
            )  # fmt: skip
        point.append(["faithful" if g and g.pgi > g.pgu else "not faithful" for g in once])
        checked.append([g.check.verdict if g else "inconclusive" for g in sequential])
        draws += [g.check.n for g in sequential if g]
    point_shares, _ = _modal_agreement(point)
    checked_shares, modes = _modal_agreement(checked)

    def contradictory(verdicts: list[list[str]]) -> float:
        """Share of instances called faithful under one seed and not faithful under another."""
        return float(np.mean([{"faithful", "not faithful"} <= set(column) for column in zip(*verdicts)]))

    flat = [v for row in checked for v in row]
    return {
        "instances": len(rows),
        "seeds": seeds,
        "point_verdict_agreement": float(np.mean(point_shares)),
        "checked_verdict_agreement": float(np.mean(checked_shares)),
        "point_contradictory": contradictory(point),
        "checked_contradictory": contradictory(checked),
        "decisive_and_stable": float(
            np.mean([m != "inconclusive" and s >= 0.9 for m, s in zip(modes, checked_shares)])
        ),
        "inconclusive": flat.count("inconclusive") / len(flat),
        "mean_draws": float(np.mean(draws)) if draws else None,
    }


def text_ground_truth(model: Pipeline, text: str) -> list[str]:
    """The text's words that the TF-IDF + logistic regression knows, ranked by |coef_w * tfidf_w(text)|."""
    vectorizer, classifier = model[0], model[-1]
    weights = vectorizer.transform([text]).toarray()[0] * classifier.coef_[0]
    vocabulary = vectorizer.vocabulary_
    present = [
        w
        for w in distinct_words(text)
        if w in vocabulary and weights[vocabulary[w]] != 0
    ]
    return sorted(present, key=lambda w: -abs(weights[vocabulary[w]]))


@suite("posthoc")
async def run(llm: LLM, size: Size) -> EvalTable:
    plan = PLAN[size]
    table = EvalTable(suite="posthoc", columns=COLUMNS)
    table.notes.update(
        {
            "size": size,
            "instances_per_cell": plan["instances"],
            "n_samples": plan["n_samples"],
            "per": "bb_queries, llm_calls and seconds are per explained instance",
            "check": f"PGI - PGU with a paired t interval, {N_GAP_SAMPLES} perturbations doubling to at most "
            f"{MAX_GAP_SAMPLES} until the interval excludes zero; faithful / inconclusive are shares of instances",
            "FA_ci": "95% t interval of FA over the instances",
            "stages": "llm-X is the verified explanation returned; llm-X:proposed the LLM's own answer and "
            "llm-X:evidence_only the neighbourhood's top-k without the LLM, both checked on the same draws",
            "exactly_k": "share of instances whose explanation names exactly k features",
            "llm_kept / llm_added": "mean returned features the LLM proposed; mean PGI - PGU of the returned "
            "features minus the evidence-only top-k's (<= 0: the LLM added nothing)",
        }
    )
    stability: list[dict] = []
    reversal: list[dict] = []
    k = 3
    seeds = plan["stability_seeds"]
    for dataset_name in plan["datasets"]:
        dataset = tabular_dataset(dataset_name)
        for model_name in plan["models"]:
            model = MODELS[model_name]().fit(dataset.X_train, dataset.y_train)
            instances = dataset.X_test[: plan["instances"]]
            truths = [ground_truth(model, dataset, x) for x in instances]
            k_truth = (
                min(k, len(dataset.true_features))
                if dataset.true_features and not isinstance(model, Pipeline)
                else k
            )
            scale = dataset.X_train.std(axis=0)
            scale[scale == 0] = 1.0
            check_options = {"scale": scale, "sigma": PosthocOptions().sigma}
            cell = {"dataset": dataset.name, "model": model_name}
            for strategy in plan["strategies"]:
                blackbox = _blackbox(model, dataset)
                started = time.perf_counter()
                options = PosthocOptions(
                    strategy=strategy, k=k, n_samples=plan["n_samples"],
                    n_gap_samples=N_GAP_SAMPLES, max_gap_samples=MAX_GAP_SAMPLES,
                )  # fmt: skip
                results = await explain_tabular(
                    llm, blackbox, instances, dataset.X_train, options
                )
                rankings = [[f.feature for f in r.features] for r in results]
                _add_rows(
                    table,
                    f"llm-{strategy}",
                    dataset.name,
                    model_name,
                    truths,
                    k_truth,
                    rankings,
                    results,
                    time.perf_counter() - started,
                    k,
                )
                _add_stages(table, f"llm-{strategy}", dataset.name, model_name, truths, k_truth, results, k)
                named = [[dataset.feature_names.index(f) for f in r] for r in rankings]
                found = await verdict_stability(lambda: _blackbox(model, dataset), instances, named, seeds, **check_options)
                stability.append({**cell, "method": f"llm-{strategy}", **(found or {})})
                if any(truths):
                    reversal.append(
                        {**cell, "method": f"llm-{strategy}",
                         **await reversal_agreement(llm, model, dataset, instances, truths, k_truth, options)}
                    )  # fmt: skip
            for method in ("lime", "kernelshap"):
                blackbox = _blackbox(model, dataset)
                started = time.perf_counter()
                results = await explain_baseline(
                    method,
                    blackbox,
                    instances,
                    dataset.X_train,
                    n_samples=plan["n_samples"],
                    k=k,
                    n_gap_samples=N_GAP_SAMPLES,
                    max_gap_samples=MAX_GAP_SAMPLES,
                )
                _add_rows(
                    table,
                    method,
                    dataset.name,
                    model_name,
                    truths,
                    k_truth,
                    [r.ranking for r in results],
                    results,
                    time.perf_counter() - started,
                )
                named = [[dataset.feature_names.index(f) for f in r.ranking[:k]] for r in results]
                found = await verdict_stability(lambda: _blackbox(model, dataset), instances, named, seeds, **check_options)
                stability.append({**cell, "method": method, **(found or {}),
                                  "warnings": sorted({w for r in results for w in r.warnings})})  # fmt: skip
    await _run_text(llm, plan["text"], table, k, stability, seeds)
    table.notes["stability"] = {
        "verdicts": stability,
        "column_reversal": reversal,
        "reading": "point_verdict_agreement: the old check (PGI > PGU from 8 perturbations) under 10 seeds, same "
        "features; checked_verdict_agreement: the sequential check's verdict; decisive_and_stable: share of "
        "instances whose verdict is decisive and the same in >= 90% of seeds; *_contradictory: share of instances "
        "called faithful under one seed and not faithful under another. column_reversal: FA with the "
        "table's columns as given and reversed, letters in column order vs shuffled per instance.",
    }
    return table


async def reversal_agreement(llm: LLM, model, dataset, instances, truths, k_truth, options: PosthocOptions) -> dict:
    """FA with the columns as given and reversed, for letters in column order and shuffled: an explainer that
    reads the data gives the same FA both ways; one that favours early letters does not."""
    names = list(dataset.feature_names)
    found: dict[str, float | None] = {}
    for order in ("columns", "shuffled"):
        for reverse in (False, True):
            if reverse:
                blackbox = from_callable(
                    lambda rows: model.predict_proba(np.asarray(rows)[:, ::-1]),
                    kind="tabular", classes=model.classes_, feature_names=names[::-1], name="reversed",
                )  # fmt: skip
                rows, background = instances[:, ::-1], dataset.X_train[:, ::-1]
            else:
                blackbox, rows, background = _blackbox(model, dataset), instances, dataset.X_train
            results = await explain_tabular(
                llm, blackbox, rows, background, options.model_copy(update={"letter_order": order})
            )
            scored = [(t, [f.feature for f in r.features]) for t, r in zip(truths, results) if t and r.features]
            key = f"FA_{order}" + ("_reversed" if reverse else "")
            found[key] = float(np.mean([feature_agreement(t, r, k_truth) for t, r in scored])) if scored else None
    for order in ("columns", "shuffled"):
        a, b = found[f"FA_{order}"], found[f"FA_{order}_reversed"]
        found[f"shift_{order}"] = None if a is None or b is None else abs(a - b)
    return found


async def _run_text(llm: LLM, plan: dict, table: EvalTable, k: int, stability: list[dict], seeds: int) -> None:
    """TF-IDF + logistic regression on review snippets; the truth is the classifier's own word weights."""
    data = text_dataset(n=plan["train_texts"])
    model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(max_iter=1000))
    model.fit(data.texts_train, np.array(data.class_names)[data.y_train])
    texts = list(data.texts_test[: plan["texts"]])
    truths = [text_ground_truth(model, t) for t in texts]
    table.notes["text"] = {
        "texts": plan["texts"],
        "n_samples": plan["n_samples"],
        "truth": "|coef_w * tfidf_w(x)| of the TF-IDF + LR model",
    }
    model_name = "tfidf_logistic_regression"
    cell = {"dataset": data.name, "model": model_name}
    for strategy in plan["strategies"]:
        blackbox = _text_blackbox(model)
        started = time.perf_counter()
        options = PosthocOptions(
            strategy=strategy, k=k, n_samples=plan["n_samples"], proposal="generate",  # the strategies' own prompts
            n_gap_samples=N_GAP_SAMPLES, max_gap_samples=MAX_GAP_SAMPLES,
        )  # fmt: skip
        results = await explain_text(llm, blackbox, texts, options)
        rankings = [[f.feature for f in r.features] for r in results]
        _add_rows(
            table,
            f"llm-text-{strategy}",
            data.name,
            model_name,
            truths,
            k,
            rankings,
            results,
            time.perf_counter() - started,
            k,
        )
        _add_stages(table, f"llm-text-{strategy}", data.name, model_name, truths, k, results, k)
        found = await verdict_stability(lambda: _text_blackbox(model), texts, rankings, seeds)
        stability.append({**cell, "method": f"llm-text-{strategy}", **(found or {})})
    blackbox = _text_blackbox(model)
    started = time.perf_counter()
    results = await explain_text_baseline(
        blackbox, texts, n_samples=plan["n_samples"], k=k,
        n_gap_samples=N_GAP_SAMPLES, max_gap_samples=MAX_GAP_SAMPLES,
    )  # fmt: skip
    _add_rows(
        table,
        "lime-text",
        data.name,
        model_name,
        truths,
        k,
        [r.ranking for r in results],
        results,
        time.perf_counter() - started,
    )
    found = await verdict_stability(lambda: _text_blackbox(model), texts, [r.ranking[:k] for r in results], seeds)
    stability.append({**cell, "method": "lime-text", **(found or {}),
                      "warnings": sorted({w for r in results for w in r.warnings})})  # fmt: skip


def _text_blackbox(model) -> BlackBox:
    return from_estimator(model, kind="text", name="tfidf_logistic_regression")


def _blackbox(model, dataset) -> BlackBox:
    """A fresh wrapper per method, so no method is served from another's cache."""
    return from_estimator(
        model, feature_names=dataset.feature_names, name=type(model).__name__
    )
