"""FA, RA, the linear ground truth and PGI / PGU on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from xplain.blackbox import from_callable
from xplain.methods.checks import (
    feature_agreement,
    linear_ground_truth,
    paired_difference_check,
    prediction_gaps,
    proportion_check,
    rank_agreement,
    sample_schedule,
    two_sample_check,
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


def only_first(rows):
    p = 1 / (1 + np.exp(-5 * rows[:, 0]))
    return np.column_stack([1 - p, p])


def first_two_alike(rows):
    """x0 and x1 matter exactly alike: naming one of them is neither better nor worse than the other."""
    p = 1 / (1 + np.exp(-2 * (rows[:, 0] + rows[:, 1])))
    return np.column_stack([1 - p, p])


async def test_pgi_is_large_and_pgu_zero_when_only_named_feature_matters():
    bb = from_callable(only_first, kind="tabular", feature_names=["a", "b", "c"])
    first, empty = await prediction_gaps(
        bb,
        np.array([[0.2, 1.0, -1.0], [0.0, 0.0, 0.0]]),
        [[0], []],
        scale=np.ones(3),
        sigma=0.5,
        n_samples=6,
        max_samples=48,
    )
    assert first.pgi > 0.05 and first.pgu == pytest.approx(0.0)
    assert first.check.verdict == "faithful" and first.check.interval[0] > 0
    assert first.check.n < 48 and not first.check.budget_exhausted  # decided before the budget
    assert empty is None
    # one batched query per look (the first one for both instances and their originals)
    assert bb.stats().model_calls == len(sample_schedule(6, first.check.n))


async def test_undecided_checks_sample_more_until_the_budget_and_say_so():
    """PGI vs PGU of two equally important features: 8 draws decide by a coin's margin; the sequential check
    keeps drawing to its budget and then reports "inconclusive" with budget_exhausted instead of a verdict."""
    bb = from_callable(first_two_alike, kind="tabular", feature_names=["a", "b", "c"])
    [gaps] = await prediction_gaps(
        bb, np.array([[0.1, -0.1, 0.0]]), [[0, 2]], scale=np.ones(3), sigma=0.5, n_samples=8, max_samples=64
    )
    assert gaps.check.n == 64 and bb.stats().model_calls == 4  # 8, 16, 32, 64 draws, one query per look
    assert gaps.check.verdict == "inconclusive" and gaps.check.budget_exhausted
    low, high = gaps.check.interval
    assert low < 0 < high and low < gaps.check.estimate < high


async def test_verdicts_are_stable_across_seeds_where_the_old_eight_sample_check_flipped():
    verdicts = []
    for seed in range(10):
        bb = from_callable(first_two_alike, kind="tabular", feature_names=["a", "b", "c"])
        [gaps] = await prediction_gaps(
            bb, np.array([[0.1, -0.1, 0.0]]), [[0, 2]], scale=np.ones(3), sigma=0.5, n_samples=8,
            max_samples=64, seed=seed,
        )
        verdicts.append(gaps.check.verdict)
    # an honest "inconclusive" in every seed, not faithful in some and not faithful in others
    assert verdicts.count("inconclusive") >= 9


def test_sample_schedule_doubles_up_to_the_budget():
    assert sample_schedule(8, 64) == [8, 16, 32, 64]
    assert sample_schedule(8, 50) == [8, 16, 32, 50]
    assert sample_schedule(8, None) == [8] and sample_schedule(8, 4) == [8]


def test_paired_check_hand_case_and_bonferroni_widening():
    # differences 2, 3, 4: mean 3, sd 1, se 1/sqrt(3); t(0.975, 2) = 4.303 -> (0.516, 5.484)
    check = paired_difference_check([2.0, 3.0, 4.0])
    assert check.estimate == pytest.approx(3.0)
    assert check.interval == pytest.approx((3 - 4.3027 / np.sqrt(3), 3 + 4.3027 / np.sqrt(3)), abs=1e-3)
    assert check.verdict == "faithful"
    # four looks at the same data: each at 1 - 0.05/4, so the same draws no longer decide
    wider = paired_difference_check([2.0, 3.0, 4.0], looks=4)
    assert wider.interval[0] < 0 and wider.verdict == "inconclusive"
    assert paired_difference_check([-2.0, -3.0, -4.0]).verdict == "not faithful"
    assert paired_difference_check([1.0]).verdict == "inconclusive"  # one draw says nothing


def test_wilson_interval_hand_case():
    check = proportion_check(8, 10)
    assert check.estimate == pytest.approx(0.8)
    assert check.interval == pytest.approx((0.4902, 0.9433), abs=1e-3)
    assert proportion_check(0, 5).interval[0] == 0.0 and proportion_check(0, 0) is None


def test_two_sample_check_scales_and_needs_both_sides():
    check = two_sample_check([3.0, 4.0, 5.0], [0.0, 1.0, 2.0], scale=2.0)
    assert check.estimate == pytest.approx(1.5) and check.verdict == "faithful"
    assert two_sample_check([1.0], []) is None
    assert two_sample_check([1.0, 1.1], [1.0, 1.05]).verdict == "inconclusive"
