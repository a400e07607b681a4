"""Small models trained on the spot from bundled data, so every command and the server have something to explain
on a fresh machine, with reference rows (held-out data and true labels) to question them about.

It sits beside the bundled datasets and above `blackbox/`; evals, tools and the server import it, never the reverse."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from xplain.blackbox.loaders import from_estimator, load_blackbox
from xplain.blackbox.model import BlackBox
from xplain.llm import LLM
from xplain.settings import Settings, get_settings

DEMO_MODELS = {
    "breast_cancer": "a random forest on scikit-learn's breast cancer table (malignant / benign)",
    "wine": "a random forest on the wine table (cultivar 0 / other)",
    "diabetes": "a random forest on the diabetes table (progression low / high)",
    "synthetic": "a random forest on a synthetic table whose label follows x0, x1, x2",
    "reviews": "TF-IDF + logistic regression on Rotten Tomatoes snippets (negative / positive)",
}


@dataclass
class DemoReference:
    """Held-out rows the model was not trained on, their true labels, and a sentence about the model."""

    rows: np.ndarray | list[str]
    labels: np.ndarray
    description: str


@lru_cache
def _fitted(name: str) -> tuple[Any, list[str] | None, DemoReference]:
    from xplain.data.datasets import tabular_dataset, text_dataset

    if name not in DEMO_MODELS:
        raise ValueError(f"unknown demo model {name!r}; choose from {', '.join(DEMO_MODELS)}")
    if name == "reviews":
        text = text_dataset(n=2000)
        classes = np.array(text.class_names)
        model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(max_iter=1000))
        model.fit(text.texts_train, classes[text.y_train])
        return model, None, DemoReference(text.texts_test, classes[text.y_test], DEMO_MODELS[name])
    table = tabular_dataset(name)
    classes = np.array(table.class_names)
    model = RandomForestClassifier(n_estimators=100, max_depth=6, random_state=0)
    model.fit(table.X_train, classes[table.y_train])
    return model, table.feature_names, DemoReference(table.X_test, classes[table.y_test], DEMO_MODELS[name])


def demo_blackbox(name: str, *, query_budget: int | None = None) -> BlackBox:
    """A fresh wrapper (own counters and cache) around the demo model `name`."""
    model, feature_names, _ = _fitted(name)
    kind = "text" if feature_names is None else "tabular"
    return from_estimator(model, kind=kind, feature_names=feature_names, name=f"demo:{name}", query_budget=query_budget)


def demo_reference(name: str) -> DemoReference:
    return _fitted(name)[2]


def open_model(
    spec: str,
    *,
    trusted_dir: Path | None,
    kind: str | None = None,
    query_budget: int | None = None,
    llm: LLM | None = None,
    settings: Settings | None = None,
) -> BlackBox:
    """`demo:NAME` for a built-in model, else anything `load_blackbox` takes (pickles only from `trusted_dir`; an
    LLM classifier's file runs on `llm`, so that a command loads one model for the box and its explainer)."""
    if spec.startswith("demo:"):
        return demo_blackbox(spec.removeprefix("demo:"), query_budget=query_budget)
    return load_blackbox(
        spec,
        kind=kind,
        trusted_dir=trusted_dir,
        trusted_types=(settings or get_settings()).trusted_skops_types,
        query_budget=query_budget,
        llm=llm,
        settings=settings,
    )


def reference_for_spec(spec: str) -> DemoReference | None:
    """The reference rows and labels of a `demo:NAME` spec; other models bring none."""
    return demo_reference(spec.removeprefix("demo:")) if spec.startswith("demo:") else None
