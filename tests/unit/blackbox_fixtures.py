"""Objects for the black-box loader tests to find by import path, by pickle and inside skops files."""

from __future__ import annotations

import threading

import numpy as np
from sklearn.linear_model import LogisticRegression

TRAINING_ROWS = np.array([[0.0, 0.0], [0.2, 0.1], [1.0, 0.9], [0.9, 1.0], [0.1, 0.3], [0.8, 0.7]])
TRAINING_LABELS = np.array([0, 0, 1, 1, 0, 1])

fitted_classifier = LogisticRegression().fit(TRAINING_ROWS, TRAINING_LABELS)


def row_sum_classifier(rows: np.ndarray) -> np.ndarray:
    """A batch function: P(class 1) is the logistic of the row sum."""
    positive = 1.0 / (1.0 + np.exp(-np.asarray(rows).sum(axis=1)))
    return np.column_stack([1.0 - positive, positive])


#: Held closed, `gated_classifier` blocks its caller's thread, as a model waiting on a slow LLM does.
gate = threading.Event()


def gated_classifier(rows: np.ndarray) -> np.ndarray:
    gate.wait(30)
    return row_sum_classifier(rows)


def double(values: np.ndarray) -> np.ndarray:
    """A custom transformer function; skops cannot vouch for it, so files holding it are untrusted."""
    return values * 2


not_a_model = 42


def animal_words(texts: list[str]) -> list[float]:
    """A text module: how many animal words a text holds (the SASC route's test subject)."""
    animals = {"dog", "cat", "horse", "bird", "fish"}
    return [float(sum(word.strip(".,") in animals for word in text.lower().split())) for text in texts]


def logistic(rows: np.ndarray) -> np.ndarray:
    """P(yes) rises with column 0 and falls with column 1; any further columns do nothing."""
    p = 1 / (1 + np.exp(-(3 * rows[:, 0] - 2 * rows[:, 1])))
    return np.column_stack([1 - p, p])


def keyword_model(texts: list[str]) -> np.ndarray:
    """P(positive) is 0.9 with 'great', 0.1 with 'awful', else 0.5."""
    p = np.array([0.9 if "great" in t else 0.1 if "awful" in t else 0.5 for t in texts])
    return np.column_stack([1 - p, p])


def one_text_length(text: str) -> float:
    """A module written for one text at a time: given a batch (a list), it fails inside itself."""
    return float(len(text.split()))
