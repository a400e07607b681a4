"""The checks methods report beside their claims: FA / RA against a known truth, PGI / PGU by re-querying the black box.

They sit beside the methods (not in evals/) so that a method's result can carry its check without reaching up."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from math import comb

import numpy as np

from xplain.blackbox import BlackBox
from xplain.methods.words import distinct_words, remove_words


def linear_ground_truth(coef: np.ndarray, x: np.ndarray, mean: np.ndarray) -> list[int]:
    """Feature indices of a linear / logistic model ranked by |coef * (x - mean)|, largest first."""
    contribution = np.abs(
        np.asarray(coef, dtype=float)
        * (np.asarray(x, dtype=float) - np.asarray(mean, dtype=float))
    )
    return [int(i) for i in np.argsort(-contribution, kind="stable")]


def feature_agreement(truth: Sequence, predicted: Sequence, k: int) -> float:
    """FA: share of the true top-k features that the explanation's top-k contains (order ignored)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return len(set(truth[:k]) & set(predicted[:k])) / k


def rank_agreement(truth: Sequence, predicted: Sequence, k: int) -> float:
    """RA: share of the top-k positions where the explanation names the same feature as the truth."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    predicted = list(predicted[:k])
    return (
        sum(
            1
            for i, feature in enumerate(truth[:k])
            if i < len(predicted) and predicted[i] == feature
        )
        / k
    )


async def prediction_gaps(
    blackbox: BlackBox,
    instances: np.ndarray,
    top_features: Sequence[Sequence[int]],
    *,
    scale: np.ndarray,
    sigma: float,
    n_samples: int,
    seed: int = 0,
) -> tuple[list[float | None], list[float | None]]:
    """PGI and PGU per instance from ONE black-box query.

    PGI: mean |p(x) - p(x')| of the originally predicted class when only the named features get Gaussian noise
    (sigma x scale); PGU: the same when every other feature does. None where an instance has no named features.
    """
    instances = np.atleast_2d(np.asarray(instances, dtype=float))
    if len(top_features) != len(instances):
        raise ValueError(
            f"{len(top_features)} feature lists for {len(instances)} instances"
        )
    rng = np.random.default_rng(seed)
    n_rows, n_features = instances.shape
    blocks = []
    for x, top in zip(instances, top_features):
        mask = np.zeros(n_features, dtype=bool)
        mask[list(top)] = True
        for chosen in (mask, ~mask):
            noise = (
                rng.normal(0.0, sigma, size=(n_samples, n_features)) * scale * chosen
            )
            blocks.append(x + noise)
    probabilities = await blackbox.apredict_proba(np.vstack([instances, *blocks]))
    base = probabilities[:n_rows]
    predicted = base.argmax(axis=1)
    pgi: list[float | None] = []
    pgu: list[float | None] = []
    for i, top in enumerate(top_features):
        start = n_rows + 2 * i * n_samples
        gaps = [
            float(
                np.mean(
                    np.abs(
                        probabilities[s : s + n_samples, predicted[i]]
                        - base[i, predicted[i]]
                    )
                )
            )
            for s in (start, start + n_samples)
        ]
        pgi.append(gaps[0] if len(top) else None)
        pgu.append(gaps[1] if len(top) else None)
    return pgi, pgu


def _other_word_sets(
    others: list[str], size: int, n_samples: int, rng: np.random.Generator
) -> list[list[str]]:
    """Every `size`-subset of `others` when there are at most `n_samples` of them, else `n_samples` random ones."""
    size = min(size, len(others))
    if comb(len(others), size) <= n_samples:
        return [list(chosen) for chosen in combinations(others, size)]
    return [list(rng.choice(others, size, replace=False)) for _ in range(n_samples)]


async def text_prediction_gaps(
    blackbox: BlackBox,
    texts: Sequence[str],
    top_words: Sequence[Sequence[str]],
    *,
    n_samples: int,
    seed: int = 0,
) -> tuple[list[float | None], list[float | None]]:
    """PGI and PGU per text from ONE black-box query.

    PGI: |p(x) - p(x')| of the originally predicted class when the named words are removed; PGU: the mean of the
    same when as many of the text's other words are removed instead (every such set when few, else `n_samples`
    random ones). None where a text has no named words.
    """
    if len(top_words) != len(texts):
        raise ValueError(f"{len(top_words)} word lists for {len(texts)} texts")
    rng = np.random.default_rng(seed)
    variants: list[str] = []
    # per text: index of its "named removed" copy, number of "others removed" copies after it
    spans: list[tuple[int, int]] = []
    for text, named in zip(texts, top_words):
        others = [w for w in distinct_words(text) if w not in set(named)]
        removals = _other_word_sets(others, len(named), n_samples, rng)
        spans.append((len(texts) + len(variants), len(removals)))
        variants.append(remove_words(text, named))
        variants.extend(remove_words(text, chosen) for chosen in removals)
    probabilities = await blackbox.apredict_proba(list(texts) + variants)
    predicted = probabilities[: len(texts)].argmax(axis=1)
    pgi: list[float | None] = []
    pgu: list[float | None] = []
    for i, (named, (start, n_others)) in enumerate(zip(top_words, spans)):
        column = probabilities[:, predicted[i]]
        base = column[i]
        pgi.append(float(abs(column[start] - base)) if named else None)
        pgu.append(
            float(np.mean(np.abs(column[start + 1 : start + 1 + n_others] - base)))
            if named
            else None
        )
    return pgi, pgu
