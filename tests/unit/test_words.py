"""One word tokenizer: the word a probe or method ranks ("don't") is the word its check removes, and the counterfactual
edit size and SASC's n-grams count it the same way."""

from __future__ import annotations

import json

import numpy as np

from xplain.blackbox import from_callable
from xplain.methods.counterfactual_text import token_edit_distance, tokens
from xplain.methods.ngrams import words as corpus_words
from xplain.methods.words import distinct_words, remove_words, words
from xplain.tools import ProbeContext, build_tools


def test_a_contraction_is_one_word_everywhere():
    assert words("I don't like it.") == ["I", "don't", "like", "it"]
    assert distinct_words("Don't, don't DON'T stop") == ["don't", "stop"]
    assert remove_words("I don't like it, Don't!", ["don't"]) == "I like it, !"
    assert tokens("don't stop.") == ["don't", "stop", "."]
    assert token_edit_distance("I don't like it", "I do like it") == 1
    assert corpus_words("I DON'T <br> like") == ["i", "don't", "like"]


def test_a_typographic_apostrophe_keeps_the_word_whole():
    """News text writes U+2019: "senator’s" is one word, not `senator` and a stray `s` for LIME to rank."""
    assert words("the senator\u2019s vote") == ["the", "senator\u2019s", "vote"]
    assert remove_words("The Senator\u2019s vote", ["senator\u2019s"]) == "The vote"
    assert tokens("rock \u2019n\u2019 roll") == ["rock", "\u2019", "n", "\u2019", "roll"]


def negated(texts: list[str]) -> np.ndarray:
    """P(positive) is 0.1 when a text says "don't", else 0.9; "don" or "t" alone mean nothing."""
    p = np.array([0.1 if "don't" in t.lower().split() else 0.9 for t in texts])
    return np.column_stack([1 - p, p])


async def test_the_word_occlusion_ranks_first_is_the_word_its_check_removes():
    blackbox = from_callable(negated, kind="text", classes=["negative", "positive"])
    context = ProbeContext(blackbox, ["i don't like this film", "a fine film"], np.array(["negative", "positive"]))
    tool = next(t for t in build_tools(context) if t.name == "occlusion")
    result = json.loads(await tool.ainvoke({"row": 0, "top": 3}))
    assert list(result["effects"])[0] == "don't"
    assert result["check"]["pgi"] > 0.5, "removing the ranked word moves the prediction in the check too"
