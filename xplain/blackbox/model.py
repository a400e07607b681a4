"""`BlackBox`: one interface over the models xplain explains.

Explanation methods query a model many times with overlapping inputs, so the wrapper de-duplicates rows, caches
answers, counts every query and enforces a budget; methods can then report and bound what an explanation cost.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal, TypedDict, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel

from xplain.blackbox.errors import (
    BlackBoxError,
    BlackBoxFailedError,
    BlackBoxInputError,
    BlackBoxOutputError,
    QueryBudgetExceeded,
)
from xplain.blackbox.schema import ColumnOverrides, TableSchema, infer_schema, numeric_schema

Kind = Literal["tabular", "text", "module"]

BatchFunction = Callable[[Any], Any]
"""Evaluates one batch — what the model takes (a DataFrame with its original columns if it was fitted on one, else
a 2-D float64 array), or a list of texts — into probability rows or floats."""

PROBABILITY_SUM_TOLERANCE = 1e-3
PROBABILITY_RANGE_TOLERANCE = 1e-6

_row_meters: ContextVar[tuple[Counter[int], ...]] = ContextVar("xplain_blackbox_row_meters", default=())


@contextmanager
def count_evaluated() -> Iterator[Counter[int]]:
    """`with count_evaluated() as rows:` — afterwards `rows[id(box)]` is how many rows `box` evaluated for this
    context alone (threads started by `asyncio.to_thread` included), not for other requests on the same box."""
    meter: Counter[int] = Counter()
    token = _row_meters.set(_row_meters.get() + (meter,))
    try:
        yield meter
    finally:
        _row_meters.reset(token)


class WrapperOptions(TypedDict, total=False):
    """Wrapper settings every loader passes through to `BlackBox`."""

    batch_size: int
    cache_size: int
    query_budget: int | None


class QueryStats(BaseModel):
    """What querying the black box has cost so far."""

    queries: int = 0
    """Rows asked of the wrapper, duplicates and cache hits included."""
    evaluated: int = 0
    """Unique, uncached rows actually sent to the model; the query budget counts these."""
    model_calls: int = 0
    """Invocations of the underlying model (one per chunk of at most `batch_size` rows)."""
    cache_hits: int = 0
    """Rows answered from the cache."""
    query_budget: int | None = None


class BlackBox:
    """A tabular classifier, text classifier or text module (text -> float) behind one batched interface."""

    def __init__(
        self,
        model: BatchFunction,
        *,
        kind: Kind,
        classes: Sequence[Any] | np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
        schema: TableSchema | None = None,
        name: str = "callable",
        batch_size: int = 256,
        cache_size: int = 100_000,
        query_budget: int | None = None,
    ) -> None:
        if kind not in get_args(Kind):
            raise BlackBoxError(f"unknown black-box kind {kind!r}; expected one of {get_args(Kind)}")
        if kind == "module" and classes is not None:
            raise BlackBoxError("a 'module' black box returns floats and has no classes")
        if kind != "tabular" and (feature_names is not None or schema is not None):
            raise BlackBoxError("feature_names and a schema apply to tabular black boxes only")
        if schema is not None and feature_names is not None and list(feature_names) != schema.names:
            raise BlackBoxError("feature_names differ from the schema's column names")
        if batch_size < 1:
            raise BlackBoxError(f"batch_size must be at least 1, got {batch_size}")
        if cache_size < 0:
            raise BlackBoxError(f"cache_size must not be negative, got {cache_size}")
        if query_budget is not None and query_budget < 0:
            raise BlackBoxError(f"query_budget must not be negative, got {query_budget}")
        self.kind: Kind = kind
        self.classes_: np.ndarray | None = None if classes is None else np.asarray(classes)
        if schema is None and feature_names is not None:
            schema = numeric_schema(feature_names)
        self.schema: TableSchema | None = schema
        self.feature_names: list[str] | None = None if schema is None else schema.names
        self.name = name
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.query_budget = query_budget
        self._model = model
        self._lock = threading.Lock()
        self._cache: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._stats = QueryStats(query_budget=query_budget)

    def __repr__(self) -> str:
        return f"BlackBox(kind={self.kind!r}, name={self.name!r})"

    @property
    def function(self) -> BatchFunction:
        """What answers the rows: an estimator's bound method, an LLM classifier or a plain callable."""
        return self._model

    @property
    def estimator(self) -> Any:
        """The scikit-learn estimator behind this black box, when it wraps one (a known truth for linear models)."""
        owner = getattr(self._model, "__self__", None)
        return owner if hasattr(owner, "fit") else None

    def infer_schema(self, reference: Any = None, columns: ColumnOverrides | None = None) -> TableSchema:
        """Learn the columns from the estimator and `reference` rows (a DataFrame, records or lists), with
        `columns` overriding what was inferred (column -> `Column` fields); answers cached before are dropped."""
        if self.kind != "tabular":
            raise BlackBoxError(f"{self.name} is a {self.kind} model; only tabular models have columns")
        schema = infer_schema(self.estimator, reference=reference, feature_names=self.feature_names, overrides=columns)
        if schema is None:
            raise BlackBoxError(f"{self.name} does not say how many columns it takes; pass feature_names")
        with self._lock:
            self.schema = schema
            self.feature_names = schema.names
            self._cache.clear()
        return schema

    @property
    def llm(self) -> Any:
        """The LLM behind an LLM classifier (None for other models), for fronts that would otherwise load another."""
        return getattr(self._model, "llm", None)

    @property
    def llm_scoring(self) -> dict[str, int] | None:
        """An LLM classifier's rows scored so far, by how its LLM scored them (`Scores.scoring`); None otherwise."""
        counts = getattr(self._model, "scoring", None)
        return None if counts is None else dict(counts)

    @property
    def llm_prompt(self) -> str | None:
        """An LLM classifier's prompt as its LLM reads it, once it has scored a row; None otherwise."""
        return getattr(self._model, "rendered_prompt", None)

    @property
    def is_classifier(self) -> bool:
        return self.kind != "module"

    # -- public queries ---------------------------------------------------------------------------------------

    def predict_proba(self, inputs: Any) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), columns ordered as `classes_`."""
        if not self.is_classifier:
            raise BlackBoxError(f"{self.name} is a 'module' black box (one float per text); use predict()")
        return self._answer(inputs)

    def predict(self, inputs: Any) -> np.ndarray:
        """Labels (`classes_[argmax]`) for classifiers; the float outputs for a module."""
        if not self.is_classifier:
            return self._answer(inputs)
        probabilities = self._answer(inputs)
        if self.classes_ is None:  # only when nothing was ever evaluated, i.e. an empty request
            return np.empty(0)
        return self.classes_[np.argmax(probabilities, axis=1)]

    async def apredict_proba(self, inputs: Any) -> np.ndarray:
        return await asyncio.to_thread(self.predict_proba, inputs)

    async def apredict(self, inputs: Any) -> np.ndarray:
        return await asyncio.to_thread(self.predict, inputs)

    def stats(self) -> QueryStats:
        with self._lock:
            return self._stats.model_copy()

    def reset_stats(self) -> None:
        """Start a fresh accounting period; the budget counts `evaluated`, so it starts afresh too."""
        with self._lock:
            self._stats = QueryStats(query_budget=self.query_budget)

    def close(self) -> None:
        """Release what the underlying model holds open (an HTTP connection pool)."""
        close_model = getattr(self._model, "close", None)
        if callable(close_model):
            close_model()

    # -- the query path ---------------------------------------------------------------------------------------

    def _answer(self, inputs: Any) -> np.ndarray:
        """Evaluate each unique uncached row once, in chunks, and scatter the answers back to every row."""
        batch, keys = self._prepare(inputs)
        answers: dict[Hashable, np.ndarray] = {}
        first_row_of_pending: dict[Hashable, int] = {}
        with self._lock:
            hit_keys: list[Hashable] = []
            for row, key in enumerate(keys):
                if key in first_row_of_pending:
                    continue
                if key in answers:
                    hit_keys.append(key)
                    continue
                cached = self._cache.get(key)
                if cached is None:
                    first_row_of_pending[key] = row
                else:
                    answers[key] = cached
                    hit_keys.append(key)
            self._check_budget(len(first_row_of_pending))
            for key in hit_keys:
                self._cache.move_to_end(key)
            self._stats.queries += len(keys)
            self._stats.cache_hits += len(hit_keys)
            self._stats.evaluated += len(first_row_of_pending)
        for meter in _row_meters.get():
            meter[id(self)] += len(first_row_of_pending)
        if first_row_of_pending:
            pending_rows = list(first_row_of_pending.values())
            fresh = self._evaluate(self._select(batch, pending_rows))
            with self._lock:
                for key, value in zip(first_row_of_pending, fresh):
                    answer = np.array(value)
                    answer.flags.writeable = False
                    answers[key] = answer
                    self._remember(key, answer)
        if not keys:
            return self._empty_answer()
        return np.stack([answers[key] for key in keys])

    def _check_budget(self, needed: int) -> None:
        """Refuse (before anything is evaluated) a request that would take `evaluated` past the budget."""
        budget = self.query_budget
        if budget is not None and needed and self._stats.evaluated + needed > budget:
            raise QueryBudgetExceeded(budget=budget, used=self._stats.evaluated, needed=needed)

    def _remember(self, key: Hashable, answer: np.ndarray) -> None:
        if self.cache_size == 0:
            return
        self._cache[key] = answer
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _evaluate(self, batch: np.ndarray | list[str]) -> np.ndarray:
        """Send `batch` to the model in chunks of at most `batch_size` rows, validating each answer."""
        answers = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            with self._lock:
                self._stats.model_calls += 1
            answers.append(self._validate(self._call_model(chunk), len(chunk)))
        return np.concatenate(answers)

    def _call_model(self, chunk: np.ndarray | list[str]) -> Any:
        """The model's answer to `chunk` (encoded rows decoded into what it takes: a DataFrame with its original
        columns and dtypes when it was fitted on one); whatever else the model raises becomes a
        BlackBoxFailedError that names it."""
        try:
            return self._model(self.schema.model_input(chunk) if self.schema is not None else chunk)
        except BlackBoxError:
            raise
        except Exception as exc:
            detail = str(exc)[:300]
            raise BlackBoxFailedError(
                f"the model {self.name} raised {type(exc).__name__} on a batch of {len(chunk)} input(s)"
                + (f": {detail}" if detail else "")
            ) from exc

    # -- inputs and outputs -----------------------------------------------------------------------------------

    def _prepare(self, inputs: Any) -> tuple[np.ndarray | list[str], list[Hashable]]:
        """Normalise inputs to what the model takes, with one cache key per row."""
        if self.kind == "tabular":
            rows = self._tabular_rows(inputs)
            return rows, [row.tobytes() for row in rows]
        texts = self._texts(inputs)
        return texts, list(texts)

    def _tabular_rows(self, inputs: Any) -> np.ndarray:
        """Encoded rows (one float per column, see `xplain.blackbox.schema`): numbers are taken as encoded
        already; a DataFrame, records or rows holding strings go through the schema."""
        if self.schema is not None and (isinstance(inputs, pd.DataFrame) or _holds_records(inputs)):
            return np.ascontiguousarray(self.schema.encode(inputs))
        try:
            rows = np.asarray(inputs, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            if self.schema is None:
                raise BlackBoxInputError(f"tabular inputs must be numbers: {exc}") from exc
            rows = self.schema.encode(inputs)
        if rows.ndim == 1 and rows.size == 0:
            rows = rows.reshape(0, len(self.feature_names or ()))
        if rows.ndim != 2:
            raise BlackBoxInputError(
                f"tabular inputs must be 2-D (rows x features), got shape {rows.shape}; wrap a single row in a list"
            )
        if self.feature_names is not None and rows.shape[1] != len(self.feature_names):
            raise BlackBoxInputError(
                f"{self.name} expects {len(self.feature_names)} features per row, got {rows.shape[1]}"
            )
        return np.ascontiguousarray(rows)

    @staticmethod
    def _texts(inputs: Any) -> list[str]:
        if isinstance(inputs, str | bytes):
            raise BlackBoxInputError("text inputs must be a list of strings, not a single string")
        try:
            texts = list(inputs)
        except TypeError as exc:
            raise BlackBoxInputError(f"text inputs must be a list of strings, got {type(inputs).__name__}") from exc
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise BlackBoxInputError(f"text inputs must be strings; item {position} is {type(text).__name__}")
        return [str(text) for text in texts]

    @staticmethod
    def _select(batch: np.ndarray | list[str], rows: list[int]) -> np.ndarray | list[str]:
        if isinstance(batch, np.ndarray):
            return batch[rows]
        return [batch[row] for row in rows]

    def _empty_answer(self) -> np.ndarray:
        if not self.is_classifier:
            return np.empty(0)
        return np.empty((0, 0 if self.classes_ is None else len(self.classes_)))

    def _validate(self, raw: Any, n_rows: int) -> np.ndarray:
        """Check one chunk's answer; a model that returns garbage must fail loudly, not skew an explanation."""
        try:
            output = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BlackBoxOutputError(f"{self.name} returned something that is not numeric: {exc}") from exc
        output = self._check_shape(output, n_rows)
        non_finite_rows = ~np.isfinite(output.reshape(n_rows, -1)).all(axis=1)
        if non_finite_rows.any():
            raise BlackBoxOutputError(
                f"{self.name} returned NaN or infinite values in {int(non_finite_rows.sum())} of {n_rows} rows"
            )
        if self.is_classifier:
            self._check_probabilities(output, n_rows)
        return output

    def _check_shape(self, output: np.ndarray, n_rows: int) -> np.ndarray:
        if not self.is_classifier:
            if output.ndim == 2 and output.shape[1] == 1:
                output = output[:, 0]
            if output.shape != (n_rows,):
                raise BlackBoxOutputError(
                    f"{self.name} should return one float per text ({n_rows}), got shape {output.shape}"
                )
            return output
        n_classes = None if self.classes_ is None else len(self.classes_)
        if output.ndim != 2 or output.shape[0] != n_rows or (n_classes is not None and output.shape[1] != n_classes):
            expected = f"({n_rows}, {n_classes if n_classes is not None else 'n_classes'})"
            raise BlackBoxOutputError(
                f"{self.name} should return probabilities of shape {expected}, got shape {output.shape}"
            )
        return output

    def _check_probabilities(self, output: np.ndarray, n_rows: int) -> None:
        too_low = output.min(initial=0.0) < -PROBABILITY_RANGE_TOLERANCE
        too_high = output.max(initial=1.0) > 1 + PROBABILITY_RANGE_TOLERANCE
        if too_low or too_high:
            raise BlackBoxOutputError(f"{self.name} returned probabilities outside [0, 1]")
        sums = output.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1) > PROBABILITY_SUM_TOLERANCE)
        if off.size:
            raise BlackBoxOutputError(
                f"{self.name} returned probability rows that do not sum to 1 ({off.size} of {n_rows} rows; "
                f"e.g. one sums to {sums[off[0]]:.4g})"
            )
        if self.classes_ is None:
            with self._lock:
                if self.classes_ is None:
                    self.classes_ = np.arange(output.shape[1])


def _holds_records(inputs: Any) -> bool:
    return isinstance(inputs, list | tuple) and bool(inputs) and isinstance(inputs[0], dict)
