"""Words of a text as explanation features: the distinct lower-cased words, and the text with some of them removed."""

from __future__ import annotations

import re
from collections.abc import Iterable

WORD = re.compile(r"(\w+)")


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
    pieces = WORD.split(text)
    kept = [p for i, p in enumerate(pieces) if i % 2 == 0 or p.lower() not in dropped]
    return " ".join("".join(kept).split())
