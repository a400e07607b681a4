"""One exception tree for the whole project; each front maps it to its own form once, at its edge (HTTP status,
CLI message and exit code, tool error text).

Lower floors raise these (or the LLM / black-box errors, which are part of the tree); fronts never guess a status
from a built-in exception such as FileNotFoundError, which a missing prompt file would also raise.
"""

from __future__ import annotations


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
