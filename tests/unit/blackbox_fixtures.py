"""Objects for the black-box loader tests to find by import path, by pickle and inside skops files."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

TRAINING_ROWS = np.array([[0.0, 0.0], [0.2, 0.1], [1.0, 0.9], [0.9, 1.0], [0.1, 0.3], [0.8, 0.7]])
TRAINING_LABELS = np.array([0, 0, 1, 1, 0, 1])

fitted_classifier = LogisticRegression().fit(TRAINING_ROWS, TRAINING_LABELS)


def row_sum_classifier(rows: np.ndarray) -> np.ndarray:
    """A batch function: P(class 1) is the logistic of the row sum."""
    positive = 1.0 / (1.0 + np.exp(-np.asarray(rows).sum(axis=1)))
    return np.column_stack([1.0 - positive, positive])


def double(values: np.ndarray) -> np.ndarray:
    """A custom transformer function; skops cannot vouch for it, so files holding it are untrusted."""
    return values * 2


not_a_model = 42


def animal_words(texts: list[str]) -> list[float]:
    """A text module: how many animal words a text holds (the SASC route's test subject)."""
    animals = {"dog", "cat", "horse", "bird", "fish"}
    return [float(sum(word.strip(".,") in animals for word in text.lower().split())) for text in texts]
