"""SASC on the fake LLM: n-grams, top-k, the score arithmetic, ranking, and one backend batch per round."""

import numpy as np
import pytest

from xplain.blackbox import from_callable
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.ngrams import top_k, unique_ngrams
from xplain.methods.sasc import (
    ExplanationCandidate,
    SASCOptions,
    explain_module,
    explanation_score,
    rank,
)

ANIMALS = {"dog", "cat", "horse"}


def animal_module(texts):
    return [float(sum(w in ANIMALS for w in t.lower().split())) for t in texts]


def animal_score(text: str) -> float:
    """The README's "any text -> number function": one text at a time."""
    return float(sum(w in ANIMALS for w in text.lower().split()))


def wordy_score(text: str) -> str:
    return "high"


def test_unique_ngrams_lists_each_once_in_order():
    assert unique_ngrams(["The dog ran.", "the dog sat"], max_n=2) == [
        "the", "dog", "ran", "the dog", "dog ran", "sat", "dog sat",
    ]
    assert "the dog ran" in unique_ngrams(["The dog ran."], max_n=3)


def test_top_k_orders_by_score_and_keeps_ties_stable():
    assert top_k(["a", "b", "c", "d"], [1.0, 3.0, 3.0, 0.0], 3) == [("b", 3.0), ("c", 3.0), ("a", 1.0)]
    with pytest.raises(ValueError):
        top_k(["a"], [1.0, 2.0], 1)


def test_score_is_gap_in_module_standard_deviations():
    assert explanation_score([3.0, 5.0], [1.0, 1.0], std=2.0) == pytest.approx(1.5)
    assert explanation_score([], [1.0], std=2.0) is None


async def test_each_candidate_carries_its_score_with_an_interval_from_the_per_text_spread():
    module = from_callable(animal_module, kind="module")
    result = await explain_module(
        LLM(scripted_backend()), module, CORPUS,
        SASCOptions(top_ngrams=len(unique_ngrams(CORPUS)), n_candidates=6, subset_size=3, n_texts=3, seed=1),
    )
    animals = next(c for c in result.candidates if c.explanation == "animals")
    # three related texts each naming one animal (1.0), two unrelated (0.0): no spread, a decided gap
    assert animals.check.estimate == pytest.approx(animals.score) and animals.check.n == 5
    assert animals.check.verdict == "faithful" and animals.check.interval[0] > 0
    weather = next(c for c in result.candidates if c.explanation == "weather")
    # no animal in either set: a zero gap with no spread is no evidence either way
    assert weather.check.estimate == 0.0 and weather.check.verdict == "inconclusive"


def test_rank_puts_best_first_and_unscored_last():
    def c(name, score):
        return ExplanationCandidate(explanation=name, score=score, mean_related=None, mean_unrelated=None,
                                    related_texts=[], unrelated_texts=[], shown_ngrams=[])
    assert [x.explanation for x in rank([c("a", None), c("b", 0.1), c("c", 2.0)])] == ["c", "b", "a"]


CORPUS = ["the dog chased a cat", "a horse in the field", "stocks fell on monday", "rain fell all day"]


def scripted_backend():
    return FakeBackend(rules=[
        (r"common theme", lambda r: "animals" if "dog" in r.messages[-1].content else "weather"),
        (r"clearly about.*\n?", lambda r: "A dog barked.\nThe cat slept.\nA horse ran." if "animals" in r.messages[-1].content else "It rained today.\nClouds came."),
        (r"nothing to do", "The bus was late.\nShe paid the bill."),
    ])


async def test_explain_module_ranks_the_true_concept_first_with_one_batch_per_round():
    backend = scripted_backend()
    module = from_callable(animal_module, kind="module")
    options = SASCOptions(top_ngrams=6, n_candidates=4, subset_size=3, n_texts=3, seed=1)
    result = await explain_module(LLM(backend), module, CORPUS, options)

    assert len(backend.batches) == 2  # summarize round, then score round
    assert len(backend.batches[0]) == 4
    assert len(backend.batches[1]) == 2 * len(result.candidates)
    ngrams = unique_ngrams(CORPUS)
    values = np.array(animal_module(ngrams))
    assert result.n_ngrams == len(ngrams)
    assert result.module_std == pytest.approx(values.std())
    assert result.top_ngrams[0].activation == values.max()
    best = result.best
    assert best.explanation == "animals"
    assert best.score == pytest.approx((1.0 - 0.0) / values.std())
    assert best.related_texts == ["A dog barked.", "The cat slept.", "A horse ran."]
    assert result.prompt_versions == ["sasc/summarize@1", "sasc/related@1", "sasc/unrelated@1", "sasc/judge@1"]
    assert result.cost.llm.calls == len(backend.requests) + len(backend.score_batches[0])
    synthetic = {t for c in result.candidates for t in c.related_texts + c.unrelated_texts}
    # the n-grams and the corpus's own texts (for the near misses) in one pass, then the written texts
    assert result.cost.blackbox_queries == len(set(ngrams) | set(CORPUS) | synthetic)


async def test_module_calls_are_batched():
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return animal_module(texts)

    module = from_callable(counting, kind="module", batch_size=100_000)
    await explain_module(LLM(scripted_backend()), module, CORPUS, SASCOptions(top_ngrams=6, n_candidates=2, subset_size=3))
    assert len(calls) == 2  # all n-grams at once, then all synthetic texts at once


async def test_rejects_classifiers_and_constant_modules():
    with pytest.raises(ValueError, match="module"):
        await explain_module(LLM(FakeBackend()), from_callable(lambda t: [[0.5, 0.5]] * len(t), kind="text"), CORPUS)
    with pytest.raises(ValueError, match="same value"):
        await explain_module(LLM(FakeBackend()), from_callable(lambda t: [1.0] * len(t), kind="module"), CORPUS)


@pytest.mark.parametrize(
    ("spec", "exit_code", "expected"),
    [
        ("tests.unit.test_sasc:animal_score", 0, None),
        ("tests.unit.test_sasc:wordy_score", 2, "must be a text -> number function"),
    ],
)
def test_cli_explain_module_wraps_a_per_text_function_or_says_what_to_fix(monkeypatch, tmp_path, spec, exit_code, expected):
    import json

    from typer.testing import CliRunner

    from xplain.cli import app
    from xplain.cli.common import console
    from xplain.settings import get_settings

    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "fake")
    monkeypatch.setattr("xplain.cli.common.make_llm", lambda settings: LLM(scripted_backend()))
    monkeypatch.setattr(console, "width", 300)
    get_settings.cache_clear()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    result = CliRunner().invoke(app, ["explain-module", spec, "--corpus", str(corpus), "--json"])
    get_settings.cache_clear()
    assert result.exit_code == exit_code, result.output
    if expected:
        assert expected in result.output and "returned str" in result.output
    else:
        found = json.loads(result.output)
        assert found["top_ngrams"][0]["activation"] >= 1.0 and found["candidates"][0]["explanation"] == "animals"


NEAR_CORPUS = [
    "the dog chased a cat", "a horse in the field", "the car chased a bus", "a tractor in the field",
    "stocks fell on monday", "rain fell all day",
]


def topic_ignoring_backend():
    """A weak LLM: it names 'animals' or the vague 'text' by turns, and writes animal sentences whatever the topic
    (more of them for 'text'), so the related / unrelated score favours the vague explanation. As a judge it is
    sound: 'animals' fits a text with an animal in it, 'text' fits every text."""
    themes = iter(["animals", "text"] * 4)
    backend = FakeBackend(rules=[
        (r"common theme", lambda r: next(themes)),
        (r"clearly about", lambda r: (
            "A dog and a cat ran.\nA horse and a dog sat.\nA cat and a horse ate." if "\ntext\n" in r.messages[-1].content
            else "A dog barked.\nThe cat slept.\nA horse ran."
        )),
        (r"nothing to do", "The bus was late.\nShe paid the bill."),
    ])  # fmt: skip
    original = backend.score

    async def judge(requests):
        raws = await original(requests)
        for request, raw in zip(requests, raws):
            explanation = request.prompt.split("<description>\n")[1].split("\n</description>")[0]
            text = request.prompt.split("<text>")[1].split("</text>")[0]
            fits = explanation == "text" or any(w in ANIMALS for w in text.split())
            raw.logprobs = [-0.1, -3.0] if fits else [-3.0, -0.1]
        return raws

    backend.score = judge
    return backend


async def test_a_vague_explanation_that_wins_the_plain_score_loses_once_near_misses_are_judged():
    module = from_callable(animal_module, kind="module")
    common = dict(top_ngrams=len(unique_ngrams(NEAR_CORPUS)), n_candidates=2, subset_size=3, n_texts=3, seed=1)
    plain = await explain_module(LLM(topic_ignoring_backend()), module, NEAR_CORPUS, SASCOptions(n_near_misses=0, **common))
    assert [c.explanation for c in plain.candidates] == ["text", "animals"]  # two animals per text beat one
    assert all(c.near_miss_check is None for c in plain.candidates) and not plain.near_misses

    result = await explain_module(LLM(topic_ignoring_backend()), module, NEAR_CORPUS, SASCOptions(n_near_misses=2, **common))
    assert result.top_texts == ["the dog chased a cat", "a horse in the field"]
    # the corpus texts most like the top ones that the module scores low
    assert sorted(result.near_misses) == ["a tractor in the field", "the car chased a bus"]
    specific, vague = result.candidates
    assert specific.explanation == "animals" and vague.explanation == "text"
    assert vague.score > specific.score  # the plain score still favours the vague one...
    assert specific.near_miss_check.verdict == "faithful" and specific.near_miss_check.interval[0] > 0
    assert vague.near_miss_check.estimate == 0.0 and vague.near_miss_check.verdict != "faithful"  # ...the judge not
    assert not result.notes


async def test_when_no_candidate_separates_the_near_misses_the_result_says_so():
    module = from_callable(animal_module, kind="module")
    options = SASCOptions(top_ngrams=6, n_candidates=2, subset_size=3, n_texts=3, seed=1, n_near_misses=2)
    result = await explain_module(LLM(scripted_backend()), module, NEAR_CORPUS, options)
    # the default fake judges every text alike: no candidate separates, and the note says what that means
    assert result.near_misses and all(not c.separates_near_misses for c in result.candidates)
    assert any("near misses" in note for note in result.notes)


def test_near_misses_need_two_texts_on_each_side_of_the_median():
    from xplain.methods.sasc import near_misses

    texts = ["a dog ran", "a cat ran", "a car ran", "rain fell", "stocks fell"]
    top, misses = near_misses(texts, [2.0, 1.0, 0.0, 0.0, 0.0], 2)
    assert top == ["a dog ran", "a cat ran"] and misses == ["a car ran", "rain fell"]
    assert near_misses(texts, [2.0, 0.0, 0.0, 0.0, 0.0], 2) == ([], [])  # one top text: no spread to judge by
    assert near_misses(texts, [2.0, 1.0, 0.0, 0.0, 0.0], 0) == ([], [])
