"""`xplain eval posthoc`: LLM post-hoc strategies beside LIME and KernelSHAP at equal black-box query budgets,
on tables and on a TF-IDF text classifier."""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from xplain.blackbox import BlackBox, from_estimator
from xplain.data.datasets import tabular_dataset, text_dataset
from xplain.methods.checks import (
    feature_agreement,
    linear_ground_truth,
    rank_agreement,
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
    "PGI",
    "PGU",
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
    },
}


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
    table, method, dataset_name, model_name, truths, k_truth, rankings, results, seconds
) -> None:
    """One table row: FA / RA over the instances with a truth and an answer, PGI / PGU over those with a check."""
    n = len(results)
    scored = [(t, r) for t, r in zip(truths, rankings) if t is not None and r]
    gaps = [(r.pgi, r.pgu) for r in results if r.pgi is not None]
    table.add(
        method=method,
        dataset=dataset_name,
        model=model_name,
        FA=float(np.mean([feature_agreement(t, r, k_truth) for t, r in scored]))
        if scored
        else None,
        RA=float(np.mean([rank_agreement(t, r, k_truth) for t, r in scored]))
        if scored
        else None,
        PGI=float(np.mean([g[0] for g in gaps])) if gaps else None,
        PGU=float(np.mean([g[1] for g in gaps])) if gaps else None,
        bb_queries=sum(r.cost.blackbox_queries for r in results) / n,
        llm_calls=results[0].cost.llm.calls / n
        if isinstance(results[0], PosthocExplanation)
        else 0,
        seconds=seconds / n,
    )


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
        }
    )
    k = 3
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
            for strategy in plan["strategies"]:
                blackbox = _blackbox(model, dataset)
                started = time.perf_counter()
                options = PosthocOptions(
                    strategy=strategy, k=k, n_samples=plan["n_samples"]
                )
                results = await explain_tabular(
                    llm, blackbox, instances, dataset.X_train, options
                )
                _add_rows(
                    table,
                    f"llm-{strategy}",
                    dataset.name,
                    model_name,
                    truths,
                    k_truth,
                    [[f.feature for f in r.features] for r in results],
                    results,
                    time.perf_counter() - started,
                )
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
    await _run_text(llm, plan["text"], table, k)
    return table


async def _run_text(llm: LLM, plan: dict, table: EvalTable, k: int) -> None:
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
    for strategy in plan["strategies"]:
        blackbox = _text_blackbox(model)
        started = time.perf_counter()
        options = PosthocOptions(strategy=strategy, k=k, n_samples=plan["n_samples"])
        results = await explain_text(llm, blackbox, texts, options)
        _add_rows(
            table,
            f"llm-text-{strategy}",
            data.name,
            model_name,
            truths,
            k,
            [[f.feature for f in r.features] for r in results],
            results,
            time.perf_counter() - started,
        )
    blackbox = _text_blackbox(model)
    started = time.perf_counter()
    results = await explain_text_baseline(
        blackbox, texts, n_samples=plan["n_samples"], k=k
    )
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


def _text_blackbox(model) -> BlackBox:
    return from_estimator(model, kind="text", name="tfidf_logistic_regression")


def _blackbox(model, dataset) -> BlackBox:
    """A fresh wrapper per method, so no method is served from another's cache."""
    return from_estimator(
        model, feature_names=dataset.feature_names, name=type(model).__name__
    )
