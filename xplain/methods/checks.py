"""The checks methods report beside their claims: FA / RA against a known truth, PGI / PGU by re-querying the black box,
and the uncertainty of every such figure.

They sit beside the methods (not in evals/) so that a method's result can carry its check without reaching up.
A `Check` is one estimate with its confidence interval and a verdict that is decisive only when the interval
excludes zero; PGI / PGU sample perturbations sequentially until that happens or a stated budget is spent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from math import comb, sqrt
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats

from xplain.blackbox import BlackBox
from xplain.blackbox.schema import numeric_schema
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


Verdict = Literal["faithful", "not faithful", "inconclusive"]
#: PGI / PGU: the chance that a named categorical, boolean or ordinal column is redrawn in one perturbed copy.
DISCRETE_RESAMPLE = 0.5
CONFIDENCE = 0.95


class Check(BaseModel):
    """One verification figure with its uncertainty: what was estimated, from how many draws, and what it says."""

    estimate: float
    interval: tuple[float, float] = Field(description="Confidence interval of the estimate.")
    confidence: float = Field(description="Overall coverage of the interval, e.g. 0.95.")
    n: int = Field(description="Draws (perturbations, texts, held-out pairs) the estimate rests on.")
    verdict: Verdict | None = Field(
        None,
        description="For a difference that should be positive: decisive only when the interval excludes zero.",
    )
    budget_exhausted: bool = Field(
        False, description="True when sampling stopped at its budget rather than at a decided verdict."
    )
    method: str = Field(description="How the interval was computed.")


def difference_verdict(interval: tuple[float, float]) -> Verdict:
    """faithful above zero, not faithful below, inconclusive when the interval straddles it."""
    low, high = interval
    return "faithful" if low > 0 else "not faithful" if high < 0 else "inconclusive"


def mean_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """Student-t interval of a mean (a paired test when the values are paired differences)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return (-np.inf, np.inf)
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / sqrt(len(values))
    return (mean - float(half), mean + float(half))


def paired_difference_check(
    differences: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    looks: int = 1,
    budget_exhausted: bool = False,
) -> Check:
    """Mean of paired differences with a t interval; `looks` > 1 widens it (Bonferroni) so that peeking after
    every round of sequential sampling keeps the overall error at 1 - confidence."""
    interval = mean_interval(differences, 1 - (1 - confidence) / looks)
    return Check(
        estimate=float(np.mean(differences)),
        interval=interval,
        confidence=confidence,
        n=len(differences),
        verdict=difference_verdict(interval),
        budget_exhausted=budget_exhausted and difference_verdict(interval) == "inconclusive",
        method=f"paired t over {len(differences)} draws" + (f", {looks} sequential looks" if looks > 1 else ""),
    )


def two_sample_check(
    first: Sequence[float], second: Sequence[float], *, scale: float = 1.0, confidence: float = CONFIDENCE
) -> Check | None:
    """(mean first - mean second) / scale with a Welch interval: a gap judged by the spread of both groups."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return None
    gap = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        interval = (-np.inf, np.inf)
    else:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = sqrt(va + vb)
        if se == 0:
            interval = (gap, gap)
        else:
            dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
            half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
            interval = (gap - half, gap + half)
    interval = (interval[0] / scale, interval[1] / scale)
    return Check(
        estimate=gap / scale,
        interval=interval,
        confidence=confidence,
        n=len(a) + len(b),
        verdict=difference_verdict(interval),
        method=f"Welch t over {len(a)} + {len(b)} values",
    )


def proportion_check(successes: int, n: int, *, confidence: float = CONFIDENCE) -> Check | None:
    """A rate (accuracy, flip rate) with its Wilson score interval, which stays inside [0, 1] at small n."""
    if n <= 0:
        return None
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Check(
        estimate=p,
        # exact ends at 0 / n successes (the formula lands there up to rounding)
        interval=(0.0 if successes == 0 else centre - half, 1.0 if successes == n else centre + half),
        confidence=confidence,
        n=n,
        method=f"Wilson score interval over {n}",
    )


@dataclass
class Gaps:
    """PGI, PGU (means over the draws) and the check on PGI - PGU for one explained instance."""

    pgi: float
    pgu: float
    check: Check


def sample_schedule(n_samples: int, max_samples: int | None) -> list[int]:
    """Cumulative draws after each look: n, 2n, 4n, … up to the budget (at least one look)."""
    budget = max(n_samples, max_samples or n_samples)
    schedule = [n_samples]
    while schedule[-1] < budget:
        schedule.append(min(2 * schedule[-1], budget))
    return schedule


def _gaps(named: list[float], other: list[float], looks: int, exhausted: bool, confidence: float) -> Gaps:
    differences = np.asarray(named) - np.asarray(other)
    return Gaps(
        pgi=float(np.mean(named)),
        pgu=float(np.mean(other)),
        check=paired_difference_check(differences, confidence=confidence, looks=looks, budget_exhausted=exhausted),
    )


async def prediction_gaps(
    blackbox: BlackBox,
    instances: np.ndarray,
    top_features: Sequence[Sequence[int]],
    *,
    scale: np.ndarray,
    sigma: float,
    n_samples: int,
    max_samples: int | None = None,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    background: np.ndarray | None = None,
    resample_probability: float = DISCRETE_RESAMPLE,
) -> list[Gaps | None]:
    """PGI, PGU and the check on PGI - PGU per instance; None where an instance has no named features.

    PGI: mean |p(x) - p(x')| of the originally predicted class when only the named features are perturbed as the
    black box's schema allows (numbers: Gaussian noise of sigma x scale; categories, booleans, ordinals: redrawn
    from the `background`'s seen values with `resample_probability`; immutable columns kept); PGU: the same when
    every other feature is. Each draw perturbs both ways with the SAME perturbed row, so PGI - PGU is a paired
    difference. Draws start at `n_samples` and double (one black-box query per
    round, for every still-undecided instance) until the interval excludes zero or `max_samples` is reached.
    """
    instances = np.atleast_2d(np.asarray(instances, dtype=float))
    if len(top_features) != len(instances):
        raise ValueError(f"{len(top_features)} feature lists for {len(instances)} instances")
    rng = np.random.default_rng(seed)
    n_rows, n_features = instances.shape
    schedule = sample_schedule(n_samples, max_samples)
    masks = []
    for top in top_features:
        mask = np.zeros(n_features, dtype=bool)
        mask[list(top)] = True
        masks.append(mask)
    named: list[list[float]] = [[] for _ in range(n_rows)]
    other: list[list[float]] = [[] for _ in range(n_rows)]
    active = [i for i, top in enumerate(top_features) if len(top)]
    base = predicted = None
    results: list[Gaps | None] = [None] * n_rows
    if not active:
        return results
    schema = blackbox.schema or numeric_schema([f"x{j}" for j in range(n_features)])
    for look, target in enumerate(schedule, 1):
        blocks = []
        for i in active:
            moved = schema.perturb(
                instances[i], target - len(named[i]), sigma=sigma, scale=scale, background=background, rng=rng,
                resample_probability=resample_probability,
            )  # fmt: skip
            blocks += [np.where(masks[i], moved, instances[i]), np.where(masks[i], instances[i], moved)]
        first = base is None
        rows = [instances, *blocks] if first else blocks
        probabilities = await blackbox.apredict_proba(np.vstack(rows)) if rows else np.empty((0, 0))
        if first:
            base, probabilities = probabilities[:n_rows], probabilities[n_rows:]
            predicted = base.argmax(axis=1)
        start = 0
        for i in active:
            size = target - len(named[i])
            column = probabilities[:, predicted[i]]
            named[i] += np.abs(column[start : start + size] - base[i, predicted[i]]).tolist()
            other[i] += np.abs(column[start + size : start + 2 * size] - base[i, predicted[i]]).tolist()
            start += 2 * size
        last = look == len(schedule)
        still = []
        for i in active:
            results[i] = _gaps(named[i], other[i], len(schedule), last, confidence)
            if results[i].check.verdict == "inconclusive":
                still.append(i)
        active = still
        if not active:
            break
    return results


def _other_word_sets(others: list[str], size: int, n_samples: int, rng: np.random.Generator) -> list[list[str]]:
    """Every `size`-subset of `others` (shuffled) when there are at most `n_samples` of them, else `n_samples`
    random ones."""
    size = min(size, len(others))
    if comb(len(others), size) <= n_samples:
        every = [list(chosen) for chosen in combinations(others, size)]
        return [every[i] for i in rng.permutation(len(every))]
    return [list(rng.choice(others, size, replace=False)) for _ in range(n_samples)]


async def text_prediction_gaps(
    blackbox: BlackBox,
    texts: Sequence[str],
    top_words: Sequence[Sequence[str]],
    *,
    n_samples: int,
    max_samples: int | None = None,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> list[Gaps | None]:
    """PGI, PGU and the check on PGI - PGU per text; None where a text has no named words.

    PGI: |p(x) - p(x')| of the originally predicted class when the named words are removed; PGU: the mean of the
    same when as many of the text's other words are removed instead. Each other-word set is one paired draw
    against the named removal; sets are drawn in rounds (n_samples, doubling to max_samples, one black-box query
    per round) until the interval excludes zero, the budget is spent, or every such set has been tried.
    """
    if len(top_words) != len(texts):
        raise ValueError(f"{len(top_words)} word lists for {len(texts)} texts")
    rng = np.random.default_rng(seed)
    schedule = sample_schedule(n_samples, max_samples)
    pools = []
    for text, named in zip(texts, top_words):
        others = [w for w in distinct_words(text) if w not in set(named)]
        pools.append(_other_word_sets(others, len(named), schedule[-1], rng) if named else [])
    active = [i for i, named in enumerate(top_words) if named and pools[i]]
    results: list[Gaps | None] = [None] * len(texts)
    if not active:
        return results
    other: dict[int, list[float]] = {i: [] for i in active}
    named_gap: dict[int, float] = {}
    base: list[float] = []
    predicted = None
    for look, target in enumerate(schedule, 1):
        sets = {i: pools[i][len(other[i]) : target] for i in active}
        variants = [remove_words(texts[i], chosen) for i in active for chosen in sets[i]]
        if predicted is None:  # the first round also asks for the originals and the named removals
            heads = list(texts) + [remove_words(texts[i], top_words[i]) for i in active]
            probabilities = await blackbox.apredict_proba(heads + variants)
            predicted = probabilities[: len(texts)].argmax(axis=1)
            base = [float(probabilities[i, predicted[i]]) for i in range(len(texts))]
            named_gap = {
                i: abs(float(probabilities[len(texts) + j, predicted[i]]) - base[i]) for j, i in enumerate(active)
            }
            column = probabilities[len(heads) :]
        else:
            column = await blackbox.apredict_proba(variants)
        start = 0
        still = []
        for i in active:
            size = len(sets[i])
            other[i] += np.abs(column[start : start + size, predicted[i]] - base[i]).tolist()
            start += size
            spent = look == len(schedule) or len(other[i]) == len(pools[i])
            results[i] = _gaps([named_gap[i]] * len(other[i]), other[i], len(schedule), spent, confidence)
            if results[i].check.verdict == "inconclusive" and not spent:
                still.append(i)
        active = still
        if not active:
            break
    return results
