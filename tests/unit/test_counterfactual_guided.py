"""Guided counterfactual search on the fake LLM: the black box picks the words, the LLM proposes replacements, the
search keeps the fewest edits that flip, and the result depends on the text alone."""

from __future__ import annotations

import json
import re

from xplain.blackbox import from_callable
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend, request_text
from xplain.methods.counterfactual_guided import replace_words
from xplain.methods.counterfactual_text import text_counterfactuals
from tests.unit.test_counterfactual import SWAPS, sentiment


def words_reply(*words: str) -> str:
    return json.dumps({"words": list(words)})


def antonym_reader(request) -> str:
    """A capable proposer: the antonym of the word it is asked to replace."""
    word = re.search(r'Removing the word "(\w+)"', request_text(request)).group(1)
    return words_reply(SWAPS.get(word, "okay"))


def box():
    return from_callable(sentiment, kind="text", classes=["negative", "positive"])


def test_replace_words_replaces_every_occurrence_and_deletes():
    assert replace_words("Great food, great staff!", {"great": "awful"}) == "awful food, awful staff!"
    assert replace_words("Great food, great staff!", {"great": ""}) == "food, staff!"


async def test_one_word_edit_flips_and_proposals_go_in_one_batch():
    backend = FakeBackend(rules=[(r".", antonym_reader)])
    bb = box()
    texts = ["The great pasta came quickly", "A rude waiter and cold soup"]
    result = await text_counterfactuals(LLM(backend), bb, texts, mode="guided")
    assert len(backend.batches) == 1  # every (text, word) asked in one round
    first, second = result.explanations
    assert first.valid and first.valid[0].text == "The awful pasta came quickly" and first.valid[0].edit_size == 1
    assert list(first.guide_words)[0] == "great" and first.guide_words["great"] > 0
    assert second.valid[0].edit_size == 1 and second.valid[0].prediction == "positive"
    assert first.valid[0].log_likelihood_change is not None  # fluency of the returned edit, from the LM
    assert all(e.blackbox_queries >= 1 + len(e.text.split()) for e in result.explanations)


async def test_the_search_grows_edits_greedily_until_the_black_box_flips():
    """Three positive words: one edit leaves it positive, so the strongest is kept and a second edit added."""
    backend = FakeBackend(rules=[(r".", antonym_reader)])
    result = await text_counterfactuals(
        LLM(backend), box(), ["great food, delicious wine, friendly staff"], mode="guided", max_rounds=3
    )
    [found] = result.explanations
    best = found.valid[0]
    assert best.prediction == "negative" and best.round == 2 and found.rounds_used == 2
    assert sum(w in best.text for w in ("awful", "bland", "rude")) + sum(
        w not in best.text for w in ("great", "delicious", "friendly")
    ) >= 2


async def test_a_weak_proposer_still_flips_with_offered_words_ranked_by_the_lm():
    """The LLM writes junk (refused and recorded); the user's substitutes are ranked by the LM's score, one kept."""
    backend = FakeBackend(rules=[(r".", words_reply("1.1.1", "great"))])
    llm = LLM(backend)
    result = await text_counterfactuals(
        llm, box(), ["a great movie"], mode="guided", candidates_per_round=1,
        substitutes=["awful", "rude", "bland", "nice"],
    )  # fmt: skip
    [found] = result.explanations
    assert any("one-word replacement" in r.reason for r in found.rejected)
    assert backend.score_batches  # candidates ranked by log-likelihood
    assert found.valid and found.valid[0].prediction == "negative"


async def test_no_flip_within_the_budget_says_so():
    backend = FakeBackend(rules=[(r".", words_reply("okay"))])
    result = await text_counterfactuals(
        LLM(backend), box(), ["great great delicious friendly"], mode="guided", max_rounds=1
    )
    [found] = result.explanations
    assert not found.valid and "no flip within 1" in found.stopped_by


async def test_a_text_alone_and_inside_a_batch_gets_the_same_counterfactuals():
    texts = [f"the {w} soup and {i} friendly cooks" for i, w in enumerate(["great", "bland", "hot"] * 3)]
    together = await text_counterfactuals(LLM(FakeBackend(rules=[(r".", antonym_reader)])), box(), texts, mode="guided")
    alone = await text_counterfactuals(LLM(FakeBackend(rules=[(r".", antonym_reader)])), box(), texts[4:5], mode="guided")
    assert alone.explanations[0].counterfactuals == together.explanations[4].counterfactuals
    assert alone.explanations[0].blackbox_queries == together.explanations[4].blackbox_queries


async def test_the_search_strategy_removes_the_supporting_words_strongest_first_without_an_llm():
    """The catalog's `strategy: search` on a text: no LLM call; the fewest removals that flip come first, and
    removing fewer of those words does not flip (each confirmed by the black box)."""
    from xplain.methods.catalog import MethodContext, get_method, run_units

    backend = FakeBackend()  # a scripted reply would be an error: none is asked for
    method = get_method("counterfactual")
    texts = ["great delicious food"]
    results = await run_units(
        method, MethodContext(llm=LLM(backend), blackbox=box()), texts, method.parse_options({"strategy": "search"})
    )
    [first] = results
    assert backend.batches == [] and backend.score_batches == [] and first.cost.llm.calls == 0
    best = first.counterfactuals[0]
    assert best.valid and best.text == "food" and best.edit_size == 2  # both positive words had to go
    assert not any(c.valid for c in first.counterfactuals if c.edit_size < 2)
    assert set(first.guide_words) == {"great", "delicious"}  # only the words that support the prediction


def routed(texts: list[str]) -> "np.ndarray":
    """An LLM-classifier-like router: shipping only when the text says the label's own word."""
    import numpy as np

    p = np.array([0.9 if "shipping" in t.lower().split() else 0.1 for t in texts])
    return np.column_stack([1 - p, p])


async def test_the_goal_class_name_is_tried_at_every_place_when_the_llm_proposes_nothing_usable():
    """A weak LLM writes "..."; a classifier keyed to its labels' words still gets a one-word flip, and the
    candidate is not ranked out by fluency."""
    backend = FakeBackend(rules=[(r".", words_reply("...", "1.1"))])
    router = from_callable(routed, kind="text", classes=["billing", "shipping"])
    result = await text_counterfactuals(
        LLM(backend), router, ["I was charged twice for my order"], mode="guided", candidates_per_round=1,
        substitutes=["refund", "invoice", "card"],
    )  # fmt: skip
    [found] = result.explanations
    assert found.valid and found.valid[0].edit_size == 1 and "shipping" in found.valid[0].text.split()
    assert backend.score_batches, "the offered words were ranked, and the goal's name kept beside them"


REFERENCE = ["the soup was awful and bland", "rude staff and awful wine", "a fine evening", "the bland rice"]


async def test_reference_words_the_black_box_reads_as_the_goal_flip_what_deletions_and_label_names_could_not():
    """The IMDB failure: a weak LLM proposes "..." and the label's name, deleting 2 of 3 positive words leaves the
    text positive. With reference texts, the black box reads each of their words alone; its negative words become
    candidates at every place, and 2 replacements flip. Without them the same search finds no flip."""
    text = ["great food, delicious wine, friendly staff"]
    weak = [(r".", words_reply("...", "positive"))]
    before = await text_counterfactuals(LLM(FakeBackend(rules=weak)), box(), text, mode="guided", max_rounds=2)
    assert not before.explanations[0].valid and "no flip within 2" in before.explanations[0].stopped_by
    backend = FakeBackend(rules=weak)
    after = await text_counterfactuals(
        LLM(backend), box(), text, mode="guided", max_rounds=2, reference=REFERENCE
    )
    [found] = after.explanations
    assert set(list(found.goal_words)[:3]) == {"awful", "bland", "rude"}  # read alone, each gives P(negative) 0.88
    assert all(found.goal_words[w] > 0.85 for w in ("awful", "bland", "rude"))
    best = found.valid[0]
    assert best.prediction == "negative" and best.round == 2
    assert sentiment([best.text])[0][0] > 0.5  # the black box's own answer on the returned text
    assert sum(w in found.goal_words for w in re.findall(r"\w+", best.text)) == 2  # two places, two goal words
    assert best.log_likelihood_change is not None
    assert found.blackbox_queries >= len(guided_vocabulary(REFERENCE))  # the probe's rows are counted


def guided_vocabulary(texts):
    from xplain.methods.counterfactual_guided import reference_vocabulary

    return reference_vocabulary(texts)


def test_the_reference_vocabulary_is_the_commonest_words_first_ties_alphabetical():
    vocabulary = guided_vocabulary(["Awful soup, awful wine", "the awful 2 rice", "The rice"])
    assert vocabulary[:3] == ["awful", "rice", "the"]  # in 3, 2, 2 texts; a count per text, not per occurrence
    assert "2" not in vocabulary and len(guided_vocabulary(REFERENCE * 50)) == len(set(guided_vocabulary(REFERENCE)))


async def test_with_reference_words_a_text_alone_and_inside_a_batch_gets_the_same_answer():
    texts = [f"the {w} soup, {v} wine and {i} friendly cooks" for i, (w, v) in enumerate([("great", "delicious")] * 5)]
    texts[2] = "great soup, delicious wine, friendly cooks"
    weak = [(r".", words_reply("..."))]
    together = await text_counterfactuals(
        LLM(FakeBackend(rules=weak)), box(), texts, mode="guided", max_rounds=2, reference=REFERENCE
    )
    alone = await text_counterfactuals(
        LLM(FakeBackend(rules=weak)), box(), texts[2:3], mode="guided", max_rounds=2, reference=REFERENCE
    )
    assert alone.explanations[0].valid  # the case compared is one the reference words flip
    assert alone.explanations[0].model_dump(exclude={"cost"}) == together.explanations[2].model_dump(exclude={"cost"})


async def test_the_catalog_counterfactual_on_a_text_model_uses_its_reference_texts():
    from xplain.methods.catalog import MethodContext, get_method, run_units

    method = get_method("counterfactual")
    weak = LLM(FakeBackend(rules=[(r".", words_reply("..."))]))
    context = MethodContext(llm=weak, blackbox=box(), reference=REFERENCE)
    [found] = await run_units(
        method, context, ["great food, delicious wine, friendly staff"], method.parse_options({"max_rounds": 2})
    )
    assert found.goal_words and found.counterfactuals[0].valid
    [without] = await run_units(
        method, context, ["great food, delicious wine, friendly staff"],
        method.parse_options({"max_rounds": 2, "reference_words": 0}),
    )  # fmt: skip
    assert not without.goal_words and not without.valid
