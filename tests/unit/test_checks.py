"""FA, RA, the linear ground truth and PGI / PGU on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from xplain.blackbox import from_callable
from xplain.methods.checks import (
    feature_agreement,
    linear_ground_truth,
    prediction_gaps,
    rank_agreement,
)


def test_linear_ground_truth_ranks_by_contribution_not_coefficient():
    # contributions |coef * (x - mean)| = 1*3, 5*0.1, 2*1 -> 3, 0.5, 2
    assert linear_ground_truth(
        np.array([1.0, 5.0, 2.0]), np.array([3.0, 0.1, 1.0]), np.zeros(3)
    ) == [0, 2, 1]


def test_feature_and_rank_agreement_hand_cases():
    truth = ["a", "b", "c", "d"]
    assert feature_agreement(truth, ["b", "a", "x"], k=3) == pytest.approx(2 / 3)
    assert rank_agreement(truth, ["b", "a", "c"], k=3) == pytest.approx(1 / 3)
    assert rank_agreement(truth, ["a"], k=2) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="k must be"):
        feature_agreement(truth, truth, k=0)


async def test_pgi_is_large_and_pgu_zero_when_only_named_feature_matters():
    def only_first(rows):
        p = 1 / (1 + np.exp(-5 * rows[:, 0]))
        return np.column_stack([1 - p, p])

    bb = from_callable(only_first, kind="tabular", feature_names=["a", "b", "c"])
    pgi, pgu = await prediction_gaps(
        bb,
        np.array([[0.2, 1.0, -1.0], [0.0, 0.0, 0.0]]),
        [[0], []],
        scale=np.ones(3),
        sigma=0.5,
        n_samples=6,
    )
    assert pgi[0] > 0.05 and pgu[0] == pytest.approx(0.0)
    assert pgi[1] is None and pgu[1] is None
    assert bb.stats().model_calls == 1  # one batched query for both instances
