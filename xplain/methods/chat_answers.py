"""How a method's result reads as a chat answer: the words its `ChatForm.answer` is written with. A number enters an
answer only as the result holds it, so an answer is grounded by construction."""

from __future__ import annotations

from string import Template
from typing import Any

MAX_LISTED = 5

VERDICT_WORDS = {
    "faithful": "holds up",
    "not faithful": "is not borne out",
    "inconclusive": "is not decided either way by the draws made",
}


def subject(result: dict[str, Any]) -> str:
    """What the result is about, as the answer names it: "row 3", a quoted text, or "this input"."""
    if result.get("row") is not None:
        return f"row {result['row']}"
    if result.get("text"):
        text = str(result["text"])
        return f'the text "{text[:80]}{"…" if len(text) > 80 else ""}"'
    return "this input"


def signed_list(effects: dict[str, float]) -> str:
    listed = list(effects.items())[:MAX_LISTED]
    return ", ".join(f"{name} {'+' if value > 0 else ''}{value}" for name, value in listed)


def check_words(check: dict[str, Any] | None) -> str:
    """A PGI / PGU check in a sentence, with its interval and its verdict (" inconclusive" said as such)."""
    if not check or check.get("pgi") is None or check.get("pgu") is None:
        return ""
    verdict = VERDICT_WORDS.get(check.get("verdict") or "", "holds up" if check["pgi"] > check["pgu"] else "is doubtful")
    interval = check.get("interval")
    sure = f" (interval of the difference {interval[0]} to {interval[1]})" if interval else ""
    return (
        f" Check: perturbing the top {check['top_k']} moves the prediction by {check['pgi']} (PGI) against "
        f"{check['pgu']} for the others (PGU){sure}, so this ranking {verdict}."
    )


def said(value: Any) -> str:
    """A result's value in words: floats as shown to the model, lists and mappings by their first items."""
    if isinstance(value, float):
        return str(round(value, 4))
    if isinstance(value, list):
        return ", ".join(said(item) for item in value[:MAX_LISTED]) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {said(v)}" for k, v in list(value.items())[:MAX_LISTED])
    return str(value)


def fill(template: str, result: dict[str, Any]) -> str:
    """A `string.Template` answer over the result's top-level values and `$subject`; KeyError where it names a
    value the result lacks."""
    values = {key: said(value) for key, value in result.items()}
    return Template(template).substitute({**values, "subject": subject(result)})
