"""Random generators seeded by what a row IS, never by where it sits (DESIGN.md rule 8).

A batch of 17 rows and the same row alone must draw the same neighbourhood, letters and check samples, so every
per-row generator is seeded by the user's seed, the row's content and the options that shape its draws."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from pydantic import BaseModel


def _content_bytes(item: Any) -> bytes:
    if isinstance(item, str):
        return b"s" + item.encode("utf-8")
    if isinstance(item, BaseModel):
        return b"o" + item.model_dump_json(exclude={"background"}).encode("utf-8")
    return b"a" + np.ascontiguousarray(np.asarray(item, dtype=float)).tobytes()


def row_seed(seed: int, *content: Any) -> list[int]:
    """Entropy for `np.random.default_rng`: the seed, then a digest of each piece of content (a text, a row of
    numbers, an options model without its background rows)."""
    digest = hashlib.sha256()
    for item in content:
        piece = _content_bytes(item)
        digest.update(len(piece).to_bytes(8, "little") + piece)
    return [int(seed) % 2**64, *np.frombuffer(digest.digest()[:16], dtype=np.uint32).tolist()]


def row_rng(seed: int, *content: Any) -> np.random.Generator:
    """A generator that depends on the seed and the content alone."""
    return np.random.default_rng(row_seed(seed, *content))
