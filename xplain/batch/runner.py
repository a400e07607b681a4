"""Run a catalog method over many units (rows, or whole input sets): chunks in flight up to a bound, each chunk's
results stored before it counts.

A chunk that is still running when the process dies was never stored, so it runs again on resume; a stored row is
never run again (DESIGN.md rule 5).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, Field, computed_field

from xplain.errors import XplainError, describe
from xplain.llm import LLM, LLMError
from xplain.blackbox import BlackBox, BlackBoxError
from xplain.blackbox.llm_classifier import LLMClassifier
from xplain.methods.catalog import Method, MethodContext, run_units

log = logging.getLogger(__name__)


class RowOutcome(BaseModel):
    index: int
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = None


class Sink(Protocol):
    """Where finished rows go; `record` must make them durable before returning."""

    async def record(self, outcomes: list[RowOutcome]) -> None: ...


class Progress(BaseModel):
    total: int
    done: int = 0
    failed: int = 0
    started_at: float
    run_done: int = 0  # rows finished in this run (resumed rows excluded), for the rate
    stage: str | None = Field(None, description="What a long method is doing now (set methods report stages).")
    stage_fraction: float | None = Field(None, description="How far that work is, from 0 to 1.")
    ended_at: float | None = Field(None, description="When this run ended; its rate stays what it was then.")

    @computed_field
    @property
    def finished(self) -> int:
        return self.done + self.failed

    @computed_field
    @property
    def rate(self) -> float:
        elapsed = (self.ended_at or time.time()) - self.started_at
        return self.run_done / elapsed if elapsed > 0 else 0.0

    @computed_field
    @property
    def eta_s(self) -> float | None:
        remaining = self.total - self.finished
        return remaining / self.rate if self.rate > 0 else None

    def at_stage(self, fraction: float, stage: str) -> None:
        self.stage, self.stage_fraction = stage, fraction

    def add(self, outcomes: list[RowOutcome]) -> None:
        ok = sum(o.ok for o in outcomes)
        self.done += ok
        self.failed += len(outcomes) - ok
        self.run_done += len(outcomes)


#: Chunks in flight and rows per chunk for methods that use no LLM.
PLAIN_CONCURRENCY, PLAIN_CHUNK = 8, 4
#: Chunks of an LLM method in flight: one in its LLM round while the next prepares (neighbourhoods, black-box
#: checks), so the backend never waits on Python; more only split the backend's sequences between rounds.
LLM_CONCURRENCY = 2


def job_shape(
    method: Method, llm: LLM | None, concurrency: int | None, chunk_size: int | None, blackbox: BlackBox | None = None
) -> tuple[int, int]:
    """(chunks in flight, rows per chunk), each the caller's where set. An LLM method's chunk is one batched LLM
    round, so it carries as many rows as the backend works on at once (`LLM.parallelism`): a fixed 8 chunks of 4
    rows on the embedded model's 16 sequences ran its rounds side by side and made each row wait on all of them.
    On an LLM classifier every black-box row is an LLM request, and one row of LIME or KernelSHAP already fills
    the backend: rows go one at a time, two in flight, so they finish one after another (8 chunks of 4 made a
    48-row LIME job show nothing done for 9 minutes, every row finishing near the end)."""
    if method.uses_llm and llm is not None:
        return concurrency or LLM_CONCURRENCY, chunk_size or llm.parallelism
    if blackbox is not None and isinstance(blackbox.function, LLMClassifier):
        return concurrency or LLM_CONCURRENCY, chunk_size or 1
    return concurrency or PLAIN_CONCURRENCY, chunk_size or PLAIN_CHUNK


BAD_INPUT = "bad input: "


def describe_error(error: BaseException) -> str:
    """A row's failure reason: the message every front shows for `error` (`errors.describe`), prefixed with who
    failed, so a job can tell a row's own fault from a backend that may answer on a rerun. A bug's details go to
    the log, not into a result a client reads."""
    status, message = describe(error)
    if status == 500:
        log.error("a row failed on a bug", exc_info=error)
    if isinstance(error, LLMError):
        return f"LLM backend: {message}"
    if isinstance(error, BlackBoxError):
        return f"black box: {message}"
    if status == 422:
        return f"{BAD_INPUT}{message}"
    return message


def is_bad_input(reason: str) -> bool:
    """Whether a row's failure reason (from `describe_error`) is its input's fault: running it again cannot help."""
    return reason.startswith(BAD_INPUT)


def to_json(result: Any) -> dict[str, Any]:
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else result


def outcomes_of(indices: Sequence[int], results: Sequence[Any]) -> list[RowOutcome]:
    return [
        RowOutcome(index=index, ok=False, error=describe_error(result))
        if isinstance(result, BaseException)
        else RowOutcome(index=index, ok=True, result=to_json(result))
        for index, result in zip(indices, results)
    ]


async def run_rows(
    method: Method,
    context: MethodContext,
    rows: Sequence[tuple[int, Any]],
    options: BaseModel,
    *,
    sink: Sink,
    concurrency: int | None = None,
    chunk_size: int | None = None,
    on_chunk: Callable[[list[RowOutcome]], None] | None = None,
) -> None:
    """Run `method` over `(index, unit)` pairs; each finished chunk goes to `sink` and then to `on_chunk`. Chunks
    are sized by `job_shape` where not given. A set method's unit is a whole input list, so its chunks hold one
    unit each."""
    concurrency, chunk_size = job_shape(method, context.llm, concurrency, chunk_size, context.blackbox)
    if method.unit == "set":
        chunk_size = 1
    slots = asyncio.Semaphore(concurrency)
    chunks = [list(rows[i : i + chunk_size]) for i in range(0, len(rows), chunk_size)]

    async def run_chunk(chunk: list[tuple[int, Any]]) -> None:
        async with slots:
            try:
                results = await run_units(method, context, [row for _, row in chunk], options)
            except (XplainError, ValueError) as error:
                results = [error] * len(chunk)
            outcomes = outcomes_of([index for index, _ in chunk], results)
            await sink.record(outcomes)
            if on_chunk is not None:
                on_chunk(outcomes)

    await asyncio.gather(*(run_chunk(chunk) for chunk in chunks))
