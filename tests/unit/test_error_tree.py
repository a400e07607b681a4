"""The one exception tree: an error that is also one of the request-shaped kinds answers with that kind's status."""

from __future__ import annotations

import importlib
import pkgutil

import xplain
from xplain.errors import Conflict, Forbidden, InvalidInput, NotFound, OverBudget, TooLarge, Unavailable, XplainError

SHAPES = (InvalidInput, NotFound, Forbidden, Conflict, TooLarge, OverBudget, Unavailable)


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def test_an_error_of_two_families_takes_the_status_of_the_request_shaped_one():
    for module in pkgutil.walk_packages(xplain.__path__, "xplain."):
        if not module.name.startswith(("xplain.cli", "xplain.mcp")):
            importlib.import_module(module.name)
    mixed = [c for c in all_subclasses(XplainError) if sum(issubclass(c, s) for s in SHAPES) == 1 and c not in SHAPES]
    shaped = [(c, next(s for s in SHAPES if issubclass(c, s))) for c in mixed]
    wrong = [f"{c.__name__}: {c.status}, its kind {s.__name__} says {s.status}" for c, s in shaped if c.status != s.status]
    assert not wrong, wrong
    assert any(c.__name__ == "ContextOverflow" for c, _ in shaped), "the walk reaches the LLM layer's errors"
