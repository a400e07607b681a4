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


def reading_answer(request, k=2):
    """A fake that reads the data it is shown: names the k letters whose changes move the output most, so an
    answer is right only if the letters map back through the prompt's shuffle."""
    prompt = request.messages[-1].content
    changes, outputs = [], []
    for line in re.findall(r"changes: (.*) -> (.*)", prompt):
        values = dict(re.findall(r"([A-Z]+) ([+-]\d+\.\d+)", line[0]))
        changes.append(values)
        out = line[1].strip()
        outputs.append(0.0 if out.startswith("not ") else 1.0 if not re.match(r"\d\.\d", out) else float(out))
    letters = sorted({letter for row in changes for letter in row})
    X = np.array([[float(row.get(letter, 0.0)) for letter in letters] for row in changes])
    y = np.array(outputs)
    effect = [abs(np.corrcoef(X[:, j], y)[0, 1]) if X[:, j].std() > 0 else 0.0 for j in range(len(letters))]
    top = [letters[j] for j in np.argsort(effect)[::-1][:k]]
    return answer(*[(t, "-") for t in top])


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
async def test_all_instances_go_in_one_batch_and_shuffled_letters_map_back(strategy):
    backend, llm, bb, background = setup(rules=[(r".", reading_answer)])
    results = await explain_tabular(
        llm,
        bb,
        background[:6],
        background,
        PosthocOptions(strategy=strategy, k=2, n_samples=30, n_examples=16, sigma=1.5),
    )
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 6
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
        [mapping] = result.letters
        assert sorted(mapping) == ["A", "B", "C"] and sorted(mapping.values()) == sorted(NAMES)
        assert result.features[0].feature == "debt"  # read from the data, whatever letter debt got
        assert result.pgi > result.pgu and result.faithfulness.verdict == "faithful"
        assert result.faithfulness.interval[0] > 0
        assert result.prompt_versions == [f"posthoc/{strategy}@2"]
    # the letters really were shuffled: debt was not the same letter for every instance
    assert len({next(k for k, v in r.letters[0].items() if v == "debt") for r in results}) > 1


async def test_a_position_biased_llm_no_longer_looks_consistent():
    """An LLM that always names A and B: in column order it would always name age and income (and look stable);
    shuffled, its picks scatter over the features and its agreement across shuffles shows it."""
    backend, llm, bb, background = setup(rules=[(r".", answer(("A", "+"), ("B", "+")))])
    rows = background[:6]
    ordered = await explain_tabular(
        llm, bb, rows, background, PosthocOptions(k=2, n_samples=8, letter_order="columns")
    )
    assert all([f.feature for f in r.proposed.features] == ["age", "income"] for r in ordered)
    asked = len(backend.batches)
    shuffled = await explain_tabular(llm, bb, rows, background, PosthocOptions(k=2, n_samples=8, n_shuffles=3))
    assert len({tuple(f.feature for f in r.proposed.features) for r in shuffled}) > 1
    assert all(r.shuffle_agreement is not None and r.shuffle_agreement < 1 for r in shuffled)
    assert all(len(r.letters) == 3 for r in shuffled)
    assert len(backend.batches[asked]) == 6 * 3  # every instance x shuffle in one round
    assert len(backend.batches) == asked + 2 and len(backend.batches[-1]) == 6  # re-asked once per row, together


async def test_shuffles_of_a_reading_llm_agree_and_ranks_aggregate():
    backend, llm, bb, background = setup(rules=[(r".", reading_answer)])
    [result] = await explain_tabular(
        llm, bb, background[:1], background, PosthocOptions(k=2, n_samples=40, n_examples=16, n_shuffles=3)
    )
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 3
    assert result.features[0].feature == "debt" and result.shuffle_agreement >= 0.5
    assert result.llm_attempts == 3


def test_borda_aggregation_hand_case():
    from xplain.methods.posthoc import FeatureAttribution, aggregate_rankings

    def ranking(*names):
        return [FeatureAttribution(feature=n, direction="+", rationale="") for n in names]

    # points (k=2): a 2+1+0=3, b 1+2+2=5, c 0+0+1=1
    assert [f.feature for f in aggregate_rankings([ranking("a", "b"), ranking("b", "a"), ranking("b", "c")], 2)] == [
        "b",
        "a",
    ]


@pytest.mark.parametrize(("repair", "follow_up"), [(True, "posthoc/reask@1"), (False, "posthoc/retry@2")])
async def test_repeated_features_are_rejected_and_reasked_in_one_follow_up_batch(repair, follow_up):
    """Repair on: the re-ask with the evidence names the problem; off: a plain format retry does."""
    backend, llm, bb, background = setup(
        rules=[
            (r"not usable|not kept", answer(("C", "-"), ("B", "+"))),
            (r".", answer(("C", "-"), ("C", "-"))),
        ]
    )
    results = await explain_tabular(
        llm, bb, background[:2], background, PosthocOptions(k=2, n_samples=8, letter_order="columns", repair=repair)
    )
    assert len(backend.batches) == 2 and len(backend.batches[1]) == 2
    assert ("named more than once" in backend.batches[1][0].messages[-1].content)
    for result in results:
        [mapping] = result.letters
        assert result.rejected == [mapping["C"]]  # refused letters are reported as the features they stood for
        assert {f.feature for f in result.features} == {"debt", "income"}
        assert follow_up in result.prompt_versions
        assert result.llm_attempts == 2


async def test_answer_never_usable_gives_empty_features_and_an_error():
    backend, llm, bb, background = setup(rules=[(r".", answer(("A", "+"), ("A", "+")))])
    [result] = await explain_tabular(
        llm, bb, background[:1], background, PosthocOptions(k=2, n_samples=8)
    )
    assert (
        result.proposed.features == []
        and result.proposed.pgi is None
        and result.proposed.faithfulness is None
        and "unknown or repeated" in result.error
    )
    assert len(result.features) == 2 and "no usable feature" in result.repair  # the evidence filled in
    assert len(backend.batches) == 2  # asked, re-asked once in one follow-up round, then given up


async def test_per_instance_query_counts_add_up_exactly():
    """Three instances that sent different numbers of rows: each one's count is its own, and they sum to the
    measured total (floor division reported 130 rows as 4 x 32)."""
    backend, llm, bb, background = setup(rules=[(r".", reading_answer)])
    rows = background[:3]
    results = await explain_tabular(llm, bb, rows, background, PosthocOptions(k=1, n_samples=9, n_examples=8))
    assert sum(r.cost.blackbox_queries for r in results) == bb.stats().evaluated


async def test_bad_input_is_refused_with_a_specific_message():
    _, llm, bb, background = setup()
    with pytest.raises(ValueError, match="no rows to explain"):
        await explain_tabular(llm, bb, np.empty((0, 3)), background)
    with pytest.raises(ValueError, match=r"rows \[1\] contain NaN"):
        await explain_tabular(llm, bb, np.array([[0, 0, 0], [np.nan, 1, 1]]), background)
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
    assert result.pgi > result.pgu and result.faithfulness.verdict == "faithful"
    assert result.warnings == []  # 60 rows: 15 coalitions for 3 features, 20 LIME samples per feature


@pytest.mark.parametrize("method", ["lime", "kernelshap"])
async def test_baselines_refuse_zero_and_nan_rows(method):
    from xplain.methods.baselines import explain_baseline

    _, _, bb, background = setup()
    with pytest.raises(ValueError, match="no rows to explain"):
        await explain_baseline(method, bb, np.empty((0, 3)), background)
    with pytest.raises(ValueError, match="NaN"):
        await explain_baseline(method, bb, np.array([[np.nan, 0, 0]]), background)


async def test_under_determined_baselines_say_so_and_surface_library_warnings():
    from xplain.methods.baselines import explain_baseline

    names = [f"f{i}" for i in range(11)]
    bb = from_callable(lambda rows: debt_model(rows[:, [0, 1, 2]]), kind="tabular", feature_names=names)
    background = np.random.default_rng(1).normal(size=(50, 11))
    # 24 rows over a 4-row summary: 6 coalitions for 11 features, as in the issue
    [shap_result] = await explain_baseline("kernelshap", bb, background[:1], background, n_samples=24, k=3)
    assert any("6 coalitions for 11 features" in w for w in shap_result.warnings)
    assert any("singular" in w.lower() for w in shap_result.warnings)  # shap's own warning, not swallowed
    [lime_result] = await explain_baseline("lime", bb, background[:1], background, n_samples=24, k=3)
    assert any("below the stated minimum" in w for w in lime_result.warnings)


# --- text -------------------------------------------------------------------------------------------------------


def word_model(texts):
    """P(positive) = 0.2 + 0.6 [good] + 0.1 [fine]: hand-checkable removals."""
    words = [set(t.lower().split()) for t in texts]
    p = np.array([0.2 + 0.6 * ("good" in w) + 0.1 * ("fine" in w) for w in words])
    return np.column_stack([1 - p, p])


def text_setup(rules):
    backend = FakeBackend(rules=rules)
    bb = from_callable(word_model, kind="text", classes=["negative", "positive"])
    return backend, LLM(backend), bb


def first_allowed_words(request):
    """Answers with the first two words its own schema allows, so it never invents one."""
    allowed = request.json_schema["$defs"]["RankedFeature"]["properties"]["feature"][
        "enum"
    ]
    return answer((allowed[1], "+"), (allowed[0], "-"))


def test_word_neighbourhood_drops_each_word_at_the_rate_and_everywhere():
    from xplain.methods.posthoc import word_removal_masks
    from xplain.methods.words import distinct_words, remove_words

    masks = word_removal_masks(
        5, PosthocOptions(n_samples=2000, drop_probability=0.25), np.random.default_rng(0)
    )
    assert masks.shape == (2000, 5)
    assert masks.mean(axis=0) == pytest.approx([0.25] * 5, abs=0.04)
    text = "Good, good film. Not bad at ALL!"
    assert distinct_words(text) == ["good", "film", "not", "bad", "at", "all"]
    assert distinct_words(text, 2) == ["good", "film"]
    assert remove_words(text, ["good", "all"]) == ", film. Not bad at !"


async def test_many_texts_share_one_llm_batch_and_one_neighbourhood_query():
    from xplain.methods.posthoc import explain_text

    backend, llm, bb = text_setup([(r".", first_allowed_words)])
    texts = ["a good fine movie", "good stuff here", "not fine at all really"]
    results = await explain_text(
        llm, bb, texts, PosthocOptions(k=2, n_samples=10, n_examples=4, repair=False)
    )
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 3
    assert bb.stats().model_calls == 2  # neighbourhoods once, PGI / PGU once
    for text, request, result in zip(texts, backend.batches[0], results):
        allowed = request.json_schema["$defs"]["RankedFeature"]["properties"][
            "feature"
        ]["enum"]
        assert allowed == text.split()  # each text's schema admits its own words only
        assert "<text>" in request.messages[-1].content and "removed:" in request.messages[-1].content
        assert [f.feature for f in result.proposed.features] == [allowed[1], allowed[0]]
        assert len(result.features) == 2
        assert result.instance == text and result.pgi is not None
        assert result.prompt_versions == ["posthoc/text_perturbation@2"]
    assert results[0].predicted_label == "positive"


async def test_prediction_strategy_shows_labels_not_probabilities():
    from xplain.methods.posthoc import explain_text

    backend, llm, bb = text_setup([(r".", first_allowed_words)])
    await explain_text(
        llm, bb, ["a good fine movie"], PosthocOptions(strategy="prediction", k=2, n_samples=12)
    )
    prompt = backend.batches[0][0].messages[-1].content
    assert re.search(r"-> (not )?positive", prompt) and not re.search(r"-> 0\.\d\d", prompt)


async def test_invented_words_fail_the_schema_are_reasked_and_recorded():
    from xplain.methods.posthoc import _answer_schema, explain_text

    schema = _answer_schema(["a", "good", "movie"], 2)
    with pytest.raises(ValueError):
        schema.model_validate_json(answer(("brilliant", "+")))
    backend, llm, bb = text_setup(
        [
            (r"not kept", answer(("good", "+"), ("fine", "+"))),
            (r".", answer(("brilliant", "+"), ("good", "+"))),
        ]
    )
    [result] = await explain_text(
        llm, bb, ["a good fine movie"], PosthocOptions(k=2, n_samples=8)
    )
    assert len(backend.batches) == 2  # asked once, re-asked once in one follow-up round
    assert result.rejected == ["brilliant"]
    assert [f.feature for f in result.features] == ["good", "fine"]
    assert "posthoc/reask@1" in result.prompt_versions and result.llm_attempts == 2


async def test_text_prediction_gaps_match_a_hand_computed_case():
    from xplain.methods.checks import text_prediction_gaps

    bb = from_callable(word_model, kind="text", classes=["negative", "positive"])
    text = "a good fine movie"  # p(positive) = 0.9
    one, two = await text_prediction_gaps(
        bb, [text, text], [["good"], ["good", "fine"]], n_samples=8
    )
    # one word: without 'good' 0.3 -> PGI 0.6; the other single words a / fine / movie -> 0.9, 0.8, 0.9
    assert one.pgi == pytest.approx(0.6) and one.pgu == pytest.approx(0.1 / 3)
    assert one.check.n == 3 and one.check.verdict == "faithful"
    # two words: without good and fine 0.2 -> 0.7; the only other pair {a, movie} -> 0.9 -> 0
    assert two.pgi == pytest.approx(0.7) and two.pgu == pytest.approx(0.0)
    # one draw cannot decide anything: every set was tried, and the check says so
    assert two.check.verdict == "inconclusive" and two.check.budget_exhausted
    assert bb.stats().model_calls == 1


async def test_text_bad_input_is_refused_with_a_specific_message():
    from xplain.methods.posthoc import explain_text

    _, llm, bb = text_setup([])
    with pytest.raises(ValueError, match="fewer than k=3"):
        await explain_text(llm, bb, ["good film"], PosthocOptions(k=3))
    with pytest.raises(ValueError, match="strategies perturbation, prediction"):
        await explain_text(llm, bb, ["good film"], PosthocOptions(k=1, strategy="instruction"))
    with pytest.raises(ValueError, match="list of strings"):
        await explain_text(llm, bb, "good film", PosthocOptions(k=1))
    _, _, tabular, _ = setup()
    with pytest.raises(ValueError, match="needs a text black box"):
        await explain_text(llm, tabular, ["good film"], PosthocOptions(k=1))


async def test_lime_text_finds_the_word_that_matters_through_the_counted_wrapper():
    from xplain.methods.baselines import explain_text_baseline

    bb = from_callable(word_model, kind="text", classes=["negative", "positive"])
    [result] = await explain_text_baseline(
        bb, ["a good fine movie tonight"], n_samples=60, k=1
    )
    assert result.ranking[0] == "good" and result.weights["good"] > 0
    assert result.cost.blackbox_queries >= 20
    assert result.pgi > result.pgu


async def test_a_repeated_word_is_reasked_not_cut_to_one():
    from xplain.methods.posthoc import explain_text

    backend, llm, bb = text_setup(
        [
            (r"not usable", answer(("good", "+"), ("fine", "+"), ("movie", "+"))),
            (r".", answer(("good", "+"), ("good", "+"), ("good", "+"))),
        ]
    )
    [result] = await explain_text(
        llm, bb, ["a good fine movie"], PosthocOptions(k=3, n_samples=8)
    )
    assert len(backend.batches) == 2  # "good, good, good" was re-asked
    assert "more than once" in backend.batches[1][0].messages[-1].content
    named = [f.feature for f in result.features]
    assert named[:2] == ["good", "fine"] and len(named) == 3  # "a" and "movie" do nothing: the draw orders them
    assert result.rejected == ["good"] and result.error is None


async def test_a_word_still_repeated_after_the_reask_keeps_its_first_rank():
    from xplain.methods.posthoc import explain_text

    backend, llm, bb = text_setup([(r".", answer(("good", "+"), ("good", "+"), ("fine", "+")))])
    [result] = await explain_text(llm, bb, ["a good fine movie"], PosthocOptions(k=3, n_samples=8))
    assert len(backend.batches) == 2
    assert [f.feature for f in result.proposed.features] == ["good", "fine"]
    assert len(result.features) == 3 and "2 usable features of k=3" in result.repair


def test_split_exact_hand_case():
    from xplain.methods.posthoc import split_exact

    # 130 rows over four instances that sent alike: 33, 33, 32, 32 (floor division said 4 x 32 = 128)
    assert split_exact(130, [1, 1, 1, 1]) == [33, 33, 32, 32]
    assert split_exact(10, [1, 3]) == [3, 7] and sum(split_exact(7, [0.2, 0.3, 0.5])) == 7
