"""Errors raised by the black-box layer; one base class so callers can catch them all."""

from __future__ import annotations

from xplain.errors import InvalidInput, XplainError


class BlackBoxError(XplainError):
    """Anything that went wrong loading or querying a black-box model."""

    status = 422


class BlackBoxLoadError(BlackBoxError, ValueError):
    """A model source could not be turned into a black box (bad spec, missing object, unusable estimator)."""


class UntrustedModelFileError(BlackBoxError):
    """A model file was refused because loading it could run code the operator has not vouched for."""

    status = 403


class BlackBoxInputError(BlackBoxError, ValueError):
    """The inputs given to a black box have the wrong type or shape."""


class BlackBoxRowRejected(BlackBoxInputError, InvalidInput):
    """The model cannot take one of the rows (an LLM classifier's prompt longer than its LLM's context): that row
    fails alone when the rows are run one by one."""


class BlackBoxOutputError(BlackBoxError):
    """The model answered with something that is not a valid prediction (shape, NaN, probabilities)."""


class BlackBoxUnavailableError(BlackBoxError):
    """The model could not be reached (e.g. an HTTP endpoint that refuses connections or fails)."""

    status = 502


class BlackBoxFailedError(BlackBoxError):
    """The model itself raised an error on inputs that passed its checks (its own bug, or inputs it rejects)."""

    status = 502


class QueryBudgetExceeded(BlackBoxError):
    """A request would evaluate more rows than the query budget allows; nothing was evaluated."""

    status = 429

    def __init__(self, *, budget: int, used: int, needed: int) -> None:
        self.budget = budget
        self.used = used
        self.needed = needed
        super().__init__(
            f"query budget exceeded: budget {budget}, used {used}, this request needs {needed} more "
            f"model evaluations ({budget - used} left)"
        )
