"""One exception tree for the whole project, and one edge where errors leave it: `describe(error)` gives the status
and the message that every front (HTTP body, CLI line, MCP and agent tool error, job and row failure) shows.

Lower floors raise these (or the LLM / black-box errors, which are part of the tree); fronts never guess a status
from a built-in exception such as FileNotFoundError, which a missing prompt file would also raise.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ValidationError


class XplainError(Exception):
    """Base of every error a user can cause or act on. `status` is the HTTP form of the error."""

    status = 500


class InvalidInput(XplainError, ValueError):
    """The request, a row or an option is wrong; the message says what to fix."""

    status = 422


class NotFound(XplainError, LookupError):
    """A named thing (model, method, job, classifier, data file) does not exist."""

    status = 404


class Forbidden(XplainError, PermissionError):
    """The operator's settings do not allow this (a file outside its directory, a host not allowed)."""

    status = 403


class Conflict(XplainError):
    """The name is taken (registering over an existing model without `replace`)."""

    status = 409


class TooLarge(XplainError):
    """More rows, bytes or work than a limit allows; the message names the limit and its setting."""

    status = 413


class OverBudget(XplainError):
    """A query or time budget would be exceeded; nothing more was spent."""

    status = 429


class Unavailable(XplainError):
    """A backend the request needs cannot be reached or is not installed."""

    status = 503


class Busy(Unavailable):
    """At capacity: the request was not started; `retry_after_s` says when to send it again."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


#: The built-in errors the fronts still meet (a bad value a library refused, a file the OS would not open).
BUILT_IN_STATUS: tuple[tuple[type[BaseException], int], ...] = ((PermissionError, 403), (ValueError, 422))


def describe(error: BaseException) -> tuple[int, str]:
    """The HTTP status of `error` and the message a person sees. Anything outside the tree and the few built-ins
    is a bug: 500, with its type only (the details belong in the log, not in front of a user)."""
    if isinstance(error, ValidationError):
        return 422, f"invalid {error.title}: {plain_validation_error(error)}"
    if isinstance(error, XplainError):
        return error.status, str(error)
    status = next((code for kind, code in BUILT_IN_STATUS if isinstance(error, kind)), 500)
    if status == 500:
        return 500, f"internal error ({type(error).__name__}); the log has the details"
    return status, str(error)


def describe_validation_error(error: Any, model: type[BaseModel] | None = None) -> list[dict[str, str]]:
    """A pydantic ValidationError (or FastAPI's RequestValidationError) as plain problems for people:
    `[{"where": "options.labelnames", "problem": "unknown key 'labelnames'; allowed keys: ..."}]`.

    No documentation URLs and no internal type names. An unknown key names the keys allowed at that place, read
    from `model` (the class that was validated; found by the error's title when not given).
    """
    title = getattr(error, "title", None)
    model = model or (_model_named(title) if title else None)
    problems = []
    for item in error.errors():
        location = list(item.get("loc", ()))
        if location and location[0] in ("body", "query", "path", "header"):  # FastAPI's part of the request
            location = location[1:]
        where = ".".join(str(part) for part in location) or "(the whole input)"
        if item.get("type") == "json_invalid":
            detail = (item.get("ctx") or {}).get("error", "decode error")
            problems.append({"where": "(the body)", "problem": f"the body is not valid JSON: {detail}"})
            continue
        if item.get("type") == "extra_forbidden":
            allowed = _allowed_keys(model, location[:-1]) if model else None
            problem = f"unknown key {str(location[-1])!r}" if location else "unknown key"
            if allowed:
                problem += f"; allowed keys: {', '.join(allowed)}"
        elif _not_finite(item.get("input")):
            problem = f"must be a finite number, not {json.dumps(item['input'])}"
        else:
            problem = str(item.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        problems.append({"where": where, "problem": problem})
    return problems


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def plain_validation_error(error: Any, model: type[BaseModel] | None = None, *, most: int = 10) -> str:
    """The same problems as one line, `where: problem; ...`, for fronts that answer in a sentence (CLI, tools)."""
    return "; ".join(f"{p['where']}: {p['problem']}" for p in describe_validation_error(error, model)[:most])


def _allowed_keys(model: type[BaseModel], path: list[Any]) -> list[str] | None:
    """The field names of the model reached by following `path` (field names; list indexes are skipped)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None
        current = _inner_model(fields[part].annotation)
        if current is None:
            return None
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields is not None else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `Options`, `Options | None` or `list[Options]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _inner_model(argument)
        if found is not None:
            return found
    return None


def _model_named(title: str) -> type[BaseModel] | None:
    """The one loaded pydantic model class with this name, if exactly one has it."""
    found, seen, pending = [], set(), list(BaseModel.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        if cls.__name__ == title:
            found.append(cls)
    return found[0] if len(found) == 1 else None
