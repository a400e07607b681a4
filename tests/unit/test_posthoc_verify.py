"""Propose, verify, repair: the LLM's proposal is checked on the black box, a failing or short one is repaired from
the neighbourhood's evidence, and a row's answer depends on the row alone (not its batch or position)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xplain.blackbox import from_callable
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.posthoc import (
    PosthocOptions,
    explain_tabular,
    explain_text,
    grounded_rationale,
    positional_answer,
    repair_chain,
)
from tests.unit.test_posthoc import NAMES, answer, debt_model, first_allowed_words, reading_answer, word_model


def junk(*features):
    """A bad reader: the given features, each with a rationale that names nothing ("1.1.1.1…")."""
    return json.dumps({"features": [{"feature": f, "direction": "+", "rationale": "1.1.1.1.1.1"} for f in features]})


def tabular(rules, n_background=50):
    backend = FakeBackend(rules=rules)
    bb = from_callable(debt_model, kind="tabular", feature_names=NAMES)
    background = np.random.default_rng(1).normal(size=(n_background, 3))
    return backend, LLM(backend), bb, background


def text_box(rules):
    backend = FakeBackend(rules=rules)
    return backend, LLM(backend), from_callable(word_model, kind="text", classes=["negative", "positive"])


def test_repair_chain_fills_then_swaps_the_weakest_first_and_ends_at_the_evidence():
    evidence = ["debt", "income", "age", "rent"]
    assert repair_chain(["age"], evidence, 2) == [["debt", "age"], ["debt", "income"]]
    # two LLM features: 'rent' is the weakest by the evidence, so it goes first
    assert repair_chain(["rent", "income"], evidence, 2) == [["income", "rent"], ["debt", "income"]]
    assert repair_chain([], evidence, 3) == [["debt", "income", "age"]]


def test_rationales_are_kept_only_where_they_name_their_feature():
    shown = {"A": "age", "B": "income", "C": "debt"}
    assert grounded_rationale("C rises, so B matters less", "C", shown) == "debt rises, so income matters less"
    assert grounded_rationale("1.1.1.1.1.1", "C", shown) == ""
    assert grounded_rationale("the word Good lifts it", "good") == "the word Good lifts it"
    assert grounded_rationale("...", "good") == ""
    assert len(grounded_rationale("good " * 80, "good")) == 120


def test_positional_needs_two_usable_answers_all_on_the_first_letters():
    letters = ["A", "B", "C", "D"]
    assert positional_answer([["A", "B"], ["B", "A"]], letters) is True
    assert positional_answer([["A", "B"], ["C", "A"]], letters) is False
    assert positional_answer([["A", "B"], []], letters) is None


async def test_a_bad_reader_is_repaired_into_k_features_that_pass_their_check():
    """Wrong features (age, income: debt alone drives the model) with junk rationales: the proposal fails, the
    returned explanation swaps in debt, passes, keeps what it could, and says what it did."""
    backend, llm, bb, background = tabular([(r".", junk("A", "B"))])
    options = PosthocOptions(k=2, n_samples=40, n_examples=16, sigma=1.0, letter_order="columns")  # A age, B income
    results = await explain_tabular(llm, bb, background[:4], background, options)
    for result in results:
        assert {f.feature for f in result.proposed.features} == {"age", "income"}
        assert result.proposed.faithfulness.verdict != "faithful"
        assert len(result.features) == 2 and "debt" in {f.feature for f in result.features}
        assert result.faithfulness.verdict == "faithful" and result.verified.faithfulness.verdict == "faithful"
        assert result.repair.startswith("repaired") and result.llm_features_kept == 1
        assert all("1.1.1" not in f.rationale and f.rationale for f in result.features)
        debt = next(f for f in result.features if f.feature == "debt")
        assert debt.source == "evidence" and "P('" in debt.rationale
        # the returned explanation is no better than the evidence alone: the LLM added nothing
        assert result.llm_added_value <= 1e-9


async def test_a_capable_reader_is_kept_as_it_is():
    backend, llm, bb, background = tabular([(r".", reading_answer)])
    results = await explain_tabular(
        llm, bb, background[:4], background, PosthocOptions(k=2, n_samples=40, n_examples=16, sigma=1.5)
    )
    for result in results:
        assert result.features[0].feature == "debt" and result.faithfulness.verdict == "faithful"
        assert result.repair.startswith("none") and result.llm_features_kept == 2
        assert [f.feature for f in result.features] == [f.feature for f in result.proposed.features]
        assert result.evidence_only is not None and len(result.evidence_only.features) == 2


async def test_a_short_answer_is_filled_to_exactly_k_and_repair_off_returns_it_as_it_is():
    backend, llm, bb, background = tabular([(r".", answer(("A", "+")))])
    [result] = await explain_tabular(llm, bb, background[:1], background, PosthocOptions(k=3, n_samples=30))
    assert len(result.proposed.features) == 1 and len(result.features) == 3
    assert "1 usable features of k=3" in result.repair
    [raw] = await explain_tabular(llm, bb, background[:1], background, PosthocOptions(k=3, n_samples=30, repair=False))
    assert len(raw.features) == 1 and "repair is off" in raw.repair


async def test_no_usable_answer_still_returns_k_evidence_features_and_says_why():
    backend, llm, bb, background = tabular([(r".", answer(("A", "+"), ("A", "+")))])
    [result] = await explain_tabular(llm, bb, background[:1], background, PosthocOptions(k=2, n_samples=30))
    assert result.proposed.features == [] and "unknown or repeated" in result.error
    assert len(result.features) == 2 and all(f.source == "evidence" for f in result.features)
    assert "no usable feature" in result.repair and result.llm_features_kept == 0


async def test_a_positional_answer_across_shuffles_is_flagged_and_repaired():
    """Always 'A, B' under three shuffles: flagged positional, and not returned even where it happens to pass."""
    backend, llm, bb, background = tabular([(r".", answer(("A", "+"), ("B", "+")))])
    results = await explain_tabular(
        llm, bb, background[:4], background, PosthocOptions(k=2, n_samples=40, n_shuffles=3, sigma=1.0)
    )
    for result in results:
        assert result.positional_answer is True and "positional" in result.repair
        assert "debt" in {f.feature for f in result.features}
    reading = await explain_tabular(
        LLM(FakeBackend(rules=[(r".", reading_answer)])), bb, background[:2], background,
        PosthocOptions(k=2, n_samples=40, n_examples=16, n_shuffles=3, sigma=1.5),
    )  # fmt: skip
    assert all(r.positional_answer is False for r in reading)


async def test_a_single_shuffle_on_the_first_letters_gets_a_note():
    backend, llm, bb, background = tabular([(r".", answer(("A", "+"), ("B", "+")))])
    [result] = await explain_tabular(llm, bb, background[:1], background, PosthocOptions(k=2, n_samples=20))
    assert result.positional_answer is None and any("first letters" in n for n in result.notes)


@pytest.mark.parametrize("strategy", ["perturbation", "explanation"])
async def test_a_row_alone_and_inside_a_batch_of_17_gets_the_same_answer(strategy):
    rows_rng = np.random.default_rng(5)
    backend, llm, bb, background = tabular([(r".", reading_answer)])
    batch = rows_rng.normal(size=(17, 3))
    options = PosthocOptions(strategy=strategy, k=2, n_samples=24, n_examples=8, sigma=1.0)
    together = await explain_tabular(llm, bb, batch, background, options)
    for position in (0, 9, 16):
        [alone] = await explain_tabular(llm, bb, batch[position : position + 1], background, options)
        inside = together[position]
        assert alone.letters == inside.letters
        assert alone.features == inside.features and alone.proposed == inside.proposed
        assert alone.pgi == inside.pgi and alone.faithfulness == inside.faithfulness
    # and the same content at another position of another batch
    [moved] = (await explain_tabular(llm, bb, np.vstack([batch[3], batch[9]]), background, options))[1:]
    assert moved.features == together[9].features and moved.pgi == together[9].pgi


async def test_a_text_alone_and_inside_a_batch_gets_the_same_answer():
    backend, llm, bb = text_box([(r".", first_allowed_words)])
    texts = [f"movie {i} was good and fine for {i % 3} reasons" for i in range(17)]
    options = PosthocOptions(k=2, n_samples=12, n_examples=4)
    together = await explain_text(llm, bb, texts, options)
    [alone] = await explain_text(llm, bb, [texts[11]], options)
    assert alone.features == together[11].features and alone.faithfulness == together[11].faithfulness
    assert alone.evidence_only == together[11].evidence_only


async def test_text_bad_reader_is_repaired_with_occlusion_evidence():
    """The LLM names filler words with junk reasons; the text's own removals show 'good' moves it."""
    backend, llm, bb = text_box([(r".", junk("a", "movie"))])
    [result] = await explain_text(llm, bb, ["a good fine movie tonight here"], PosthocOptions(k=2, n_samples=40))
    assert {f.feature for f in result.proposed.features} == {"a", "movie"}
    assert result.proposed.faithfulness.verdict != "faithful"
    assert "good" in [f.feature for f in result.features] and len(result.features) == 2
    assert result.evidence_only.features[0].feature == "good"
    good = next(f for f in result.features if f.feature == "good")
    assert good.direction == "+" and good.source == "evidence"
