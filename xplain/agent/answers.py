"""Answers written from a method's declared answer filled with its tool's own numbers: the planner's answer, and the
agent's floor when the LLM stops without one. A number enters an answer only as the tool returned it, so grounding
holds by design."""

from __future__ import annotations

import json
import tomllib
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any

from langchain_core.messages import ToolMessage

from xplain.methods.catalog import catalog
from xplain.methods.chat_answers import fill


@lru_cache
def _templates() -> dict[str, str]:
    text = (resources.files("xplain.agent") / "answers.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["templates"]


def templates_ref() -> str:
    text = (resources.files("xplain.agent") / "answers.toml").read_text(encoding="utf-8")
    return f"agent/answers@{tomllib.loads(text)['version']}"


def _fill(name: str, **values: Any) -> str:
    return Template(_templates()[name]).substitute({k: str(v) for k, v in values.items()})


def tool_payload(message: ToolMessage) -> tuple[dict[str, Any] | None, str | None]:
    """(result, error) of a tool message: the artifact when the tool gave one, else its JSON content; a tool that
    failed (status 'error' or an `{"error": ...}` body) gives its message as the error."""
    artifact = getattr(message, "artifact", None)
    data: Any = artifact.model_dump(mode="json") if hasattr(artifact, "model_dump") else artifact
    if data is None:
        try:
            data = json.loads(str(message.text))
        except ValueError:
            data = None
    if isinstance(data, dict) and set(data) == {"error"}:
        return None, str(data["error"])
    if getattr(message, "status", "success") == "error":
        return None, str(message.text)
    if not isinstance(data, dict):
        return None, f"the tool returned no result I can read: {str(message.text)[:200]}"
    return data, None


def answer_for(tool: str, result: dict[str, Any]) -> str:
    """The answer the method behind `tool` declares (`ChatForm.answer`: a template or a function of the result),
    or its values in words where it declares none or its result is shaped otherwise than the answer expects."""
    method = catalog().get(tool)
    answer = method.chat.answer if method is not None and method.chat is not None else None
    try:
        if callable(answer):
            return answer(result)
        if answer is not None:
            return fill(answer, result)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError):
        pass
    return _generic(tool, result)


def render_failure(tool: str, error: str) -> str:
    return _fill("failed", tool=tool, error=error)


def _generic(tool: str, result: dict[str, Any]) -> str:
    """A result with no answer of its own: its top-level scalar fields, as words (never the raw JSON)."""
    scalars = [f"{k.replace('_', ' ')} {v}" for k, v in result.items() if isinstance(v, str | int | float)]
    return f"The {tool} tool reports: {'; '.join(scalars[:8]) or 'a result with no single value to quote'}."
