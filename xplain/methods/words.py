"""The one word tokenizer: every method, probe and check that ranks, removes or counts words reads them here, so
the word an explanation ranks ("don't") is the word its check removes.

A word is a run of letters, digits or `_`, with an inner apostrophe kept ("don't", "it's"), typed or typographic
("senator’s": news text writes U+2019, and splitting there would rank a stray "s")."""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD = re.compile(r"\w+(?:['\u2019\u02bc]\w+)?")
_SPLIT = re.compile(f"({WORD.pattern})")


def words(text: str) -> list[str]:
    """Every word of `text`, in order, as written."""
    return WORD.findall(text)


def distinct_words(text: str, cap: int | None = None) -> list[str]:
    """Lower-cased distinct words in order of first appearance, at most `cap` of them."""
    seen: dict[str, None] = {}
    for word in WORD.findall(text):
        seen.setdefault(word.lower(), None)
    words = list(seen)
    return words if cap is None else words[:cap]


def remove_words(text: str, words: Iterable[str]) -> str:
    """The text with every occurrence of the given (lower-cased) words dropped and spacing tidied."""
    dropped = set(words)
    # odd positions are words, even ones what lies between them
    pieces = _SPLIT.split(text)
    kept = [p for i, p in enumerate(pieces) if i % 2 == 0 or p.lower() not in dropped]
    return " ".join("".join(kept).split())
