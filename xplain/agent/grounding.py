"""Grounding: every number in an answer should be one a tool returned (or the user wrote) in the same turn.

A number counts as grounded when some source number rounds to it at the precision it is written with, or reads as
that source in percent (0.873 -> "87.3%" or "87%"). Whole numbers must match exactly (a "1" is not a rounded 0.6).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:\s?%)?(?![\w])")


def numbers_in_text(text: str) -> list[str]:
    return [match.group(0) for match in NUMBER.finditer(text)]


def source_numbers(values: Iterable[Any]) -> list[float]:
    """Every number inside tool outputs (JSON strings or objects), tool arguments and user text."""
    found: list[float] = []

    def walk(value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            found.append(float(value))
        elif isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict | list):
                walk(parsed)
            else:
                found.extend(_value(token) for token in numbers_in_text(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for value in values:
        walk(value)
    return found


def ungrounded_numbers(answer: str, sources: list[float]) -> list[str]:
    """The numbers written in `answer` that no source backs, in order, each once."""
    flagged = [token for token in numbers_in_text(answer) if not _grounded(token, sources)]
    return list(dict.fromkeys(flagged))


def _value(token: str) -> float:
    return float(token.replace(",", "").replace("%", "").strip())


def _grounded(token: str, sources: list[float]) -> bool:
    written = _value(token)
    digits = len(token.split(".")[1].rstrip("% ")) if "." in token else 0
    tolerance = 0.5 * 10**-digits + 1e-9
    for source in sources:
        if digits == 0 and source == written:
            return True
        if digits > 0 and abs(source - written) <= tolerance:
            return True
        if abs(source * 100 - written) <= tolerance:
            return True
    return False
