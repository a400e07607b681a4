"""Small models trained on the spot from bundled data, so every command and the server have something to explain
on a fresh machine: a tabular classifier and a text classifier."""

from __future__ import annotations

from functools import lru_cache

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pathlib import Path

from xplain.blackbox.loaders import from_estimator, load_blackbox
from xplain.blackbox.model import BlackBox

DEMO_MODELS = {
    "breast_cancer": "logistic regression on scikit-learn's breast cancer table (0 = malignant, 1 = benign)",
    "reviews": "TF-IDF + logistic regression on Rotten Tomatoes snippets (0 = negative, 1 = positive)",
}


@lru_cache
def _fitted(name: str):
    from xplain.evals.datasets import tabular_dataset, text_dataset

    if name == "breast_cancer":
        data = tabular_dataset("breast_cancer")
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(data.X_train, data.y_train)
        return model, data.feature_names
    if name == "reviews":
        data = text_dataset(n=2000)
        model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(max_iter=1000)).fit(data.texts_train, data.y_train)
        return model, None
    raise ValueError(f"unknown demo model {name!r}; choose from {', '.join(DEMO_MODELS)}")


def demo_blackbox(name: str) -> BlackBox:
    """A fresh wrapper (own counters and cache) around the demo model `name`."""
    model, feature_names = _fitted(name)
    if feature_names is None:
        return from_estimator(model, kind="text", name=f"demo:{name}")
    return from_estimator(model, kind="tabular", feature_names=feature_names, name=f"demo:{name}")


def open_model(spec: str, *, trusted_dir: Path | None) -> BlackBox:
    """`demo:NAME` for a built-in model, else anything `load_blackbox` takes (pickles only from `trusted_dir`)."""
    if spec.startswith("demo:"):
        return demo_blackbox(spec.removeprefix("demo:"))
    return load_blackbox(spec, trusted_dir=trusted_dir)
