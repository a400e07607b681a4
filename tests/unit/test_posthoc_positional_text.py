"""Positional answers on texts: an LLM that names the first words it was shown, whatever the text, is flagged and
its answer repaired; a reader whose first words are also the evidence's best is not flagged."""

from __future__ import annotations

from xplain.methods.posthoc import PosthocOptions, explain_text, positional_words
from tests.unit.test_posthoc import answer, text_setup


def first_words(request):
    """A positional reader: the first two words of its own schema (the text's words in order), whatever they are."""
    allowed = request.json_schema["$defs"]["RankedFeature"]["properties"]["feature"]["enum"]
    return answer((allowed[0], "+"), (allowed[1], "+"))


def test_positional_words_needs_two_first_words_that_the_evidence_does_not_lead_with():
    shown = ["the", "plot", "was", "good", "and", "fine"]
    assert positional_words(["plot", "the"], shown, ["good", "fine", "the"]) is True
    assert positional_words(["the", "plot"], shown, ["plot", "the", "good"]) is False  # the evidence agrees
    assert positional_words(["good", "fine"], shown, ["good", "fine"]) is False  # not the first words
    assert positional_words(["the"], shown, ["good"]) is None  # one word can be first by chance


async def test_a_text_answer_naming_the_first_words_is_flagged_and_repaired():
    backend, llm, bb = text_setup([(r".", first_words)])
    texts = ["the plot was good and fine", "good fine movie overall"]
    results = await explain_text(llm, bb, texts, PosthocOptions(k=2, n_samples=24, n_examples=4))
    moved, leading = results
    # "the plot" say nothing of the model; "good" and "fine" drive it
    assert moved.positional_answer is True
    assert "positional" in moved.repair and [f.feature for f in moved.proposed.features] == ["the", "plot"]
    # the positional set itself may not be returned; the repair swaps in what the evidence ranks first
    assert "good" in {f.feature for f in moved.features} and {f.feature for f in moved.features} != {"the", "plot"}
    assert moved.faithfulness.verdict == "faithful"
    # here the first words are the ones that matter: a reading, not a position
    assert leading.positional_answer is False and {f.feature for f in leading.features} == {"good", "fine"}
