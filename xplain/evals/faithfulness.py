"""Faithfulness of feature rankings: FA / RA against a known truth, PGI / PGU by re-querying the black box."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xplain.blackbox import BlackBox


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
