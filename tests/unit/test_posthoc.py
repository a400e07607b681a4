"""LLM post-hoc explainer on the fake LLM: neighbourhood, prompt content per strategy, one batch, re-asks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from xplain.blackbox import from_callable
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.posthoc import (
    PosthocOptions,
    explain_tabular,
    sample_neighbourhood,
    select_examples,
)

NAMES = ["age", "income", "debt"]


def debt_model(rows):
    """Only 'debt' (letter C) matters; more debt -> class 1 less likely."""
    p = 1 / (1 + np.exp(2 * rows[:, 2]))
    return np.column_stack([1 - p, p])


def answer(*features):
    return json.dumps(
        {
            "features": [
                {"feature": f, "direction": d, "rationale": "moves it"}
                for f, d in features
            ]
        }
    )


def setup(rules=None, queue=None):
    backend = FakeBackend(rules=rules or [], queue=queue or [])
    bb = from_callable(debt_model, kind="tabular", feature_names=NAMES)
    background = np.random.default_rng(1).normal(size=(50, 3))
    return backend, LLM(backend), bb, background


def test_neighbourhood_is_gaussian_on_numeric_and_resamples_categories():
    rng = np.random.default_rng(0)
    background = np.array([[0.0, 7.0, 0.0], [1.0, 9.0, 2.0]])
    opts = PosthocOptions(
        n_samples=400, sigma=0.5, categorical=[1], resample_probability=0.5
    )
    rows = sample_neighbourhood(
        np.array([0.5, 7.0, 1.0]), np.array([1.0, 1.0, 2.0]), background, opts, rng
    )
    assert set(np.unique(rows[:, 1])) == {7.0, 9.0}
    assert rows[:, 2].std() == pytest.approx(1.0, rel=0.15)  # sigma 0.5 x scale 2
    assert rows[:, 0].mean() == pytest.approx(0.5, abs=0.1)


def test_examples_are_confident_and_class_balanced():
    chosen = select_examples(np.array([0.9, 0.55, 0.1, 0.45, 0.99, 0.02]), 4)
    assert set(chosen) == {4, 0, 5, 2}


@pytest.mark.parametrize(
    "strategy", ["perturbation", "prediction", "instruction", "explanation"]
)
async def test_all_instances_go_in_one_batch_and_letters_map_back(strategy):
    backend, llm, bb, background = setup(rules=[(r".", answer(("C", "-"), ("A", "+")))])
    results = await explain_tabular(
        llm,
        bb,
        background[:3],
        background,
        PosthocOptions(strategy=strategy, k=2, n_samples=10),
    )
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 3
    assert bb.stats().model_calls == 2  # neighbourhoods once, PGI/PGU once
    text = " ".join(m.content for m in backend.batches[0][0].messages)
    assert (
        "debt" not in text and "income" not in text
    )  # features are renamed in the prompt
    if strategy == "prediction":
        assert re.search(r"-> (not )?\d", text) and not re.search(r"-> 0\.\d\d", text)
    else:
        assert re.search(r"-> \d\.\d\d", text)
    assert ("explainer found" in text) == (strategy == "explanation")
    for result in results:
        assert [f.feature for f in result.features] == ["debt", "age"]
        assert result.pgi is not None and result.pgu is not None
        assert (
            result.pgi > result.pgu
        )  # debt really matters; the check is the black box's, not the LLM's
        assert result.prompt_versions == [f"posthoc/{strategy}@1"]
        assert result.cost.blackbox_queries > 0


async def test_repeated_features_are_rejected_and_reasked_in_one_follow_up_batch():
    backend, llm, bb, background = setup(
        rules=[
            (r"not usable", answer(("C", "-"), ("B", "+"))),
            (r".", answer(("C", "-"), ("C", "-"))),
        ]
    )
    results = await explain_tabular(
        llm, bb, background[:2], background, PosthocOptions(k=2, n_samples=8)
    )
    assert len(backend.batches) == 2 and len(backend.batches[1]) == 2
    for result in results:
        assert result.rejected == ["C"]
        assert [f.feature for f in result.features] == ["debt", "income"]
        assert "posthoc/retry@1" in result.prompt_versions
        assert result.llm_attempts == 2


async def test_answer_never_usable_gives_empty_features_and_an_error():
    backend, llm, bb, background = setup(rules=[(r".", answer(("A", "+"), ("A", "+")))])
    [result] = await explain_tabular(
        llm, bb, background[:1], background, PosthocOptions(k=2, n_samples=8)
    )
    assert (
        result.features == []
        and result.pgi is None
        and "unknown or repeated" in result.error
    )
    assert len(backend.batches) == 2  # asked, re-asked once in one follow-up round, then given up


async def test_bad_input_is_refused_with_a_specific_message():
    _, llm, bb, background = setup()
    with pytest.raises(ValueError, match="k=5 exceeds"):
        await explain_tabular(llm, bb, background[:1], background, PosthocOptions(k=5))
    with pytest.raises(ValueError, match="background must be"):
        await explain_tabular(llm, bb, background[:1], background[:, :2])


@pytest.mark.parametrize("method", ["lime", "kernelshap"])
async def test_baselines_find_the_only_feature_that_matters_and_count_queries(method):
    from xplain.methods.baselines import explain_baseline

    _, _, bb, background = setup()
    [result] = await explain_baseline(
        method, bb, background[:1], background, n_samples=60, k=1
    )
    assert result.ranking[0] == "debt"
    assert (
        result.cost.blackbox_queries >= 30
    )  # the library's samples went through the counted wrapper
    assert result.pgi > result.pgu
