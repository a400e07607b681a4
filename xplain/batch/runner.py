"""Run a row method over many rows: chunks in flight up to a bound, each chunk's results stored before it counts.

A chunk that is still running when the process dies was never stored, so it runs again on resume; a stored row is
never run again (DESIGN.md rule 5).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, computed_field

from xplain.batch.methods import MethodContext, RowMethod
from xplain.blackbox import BlackBoxError
from xplain.llm import LLMError


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

    @computed_field
    @property
    def finished(self) -> int:
        return self.done + self.failed

    @computed_field
    @property
    def rate(self) -> float:
        elapsed = time.time() - self.started_at
        return self.run_done / elapsed if elapsed > 0 else 0.0

    @computed_field
    @property
    def eta_s(self) -> float | None:
        remaining = self.total - self.finished
        return remaining / self.rate if self.rate > 0 else None

    def add(self, outcomes: list[RowOutcome]) -> None:
        ok = sum(o.ok for o in outcomes)
        self.done += ok
        self.failed += len(outcomes) - ok
        self.run_done += len(outcomes)


def describe_error(error: BaseException) -> str:
    """A row's failure reason, in words a user can act on."""
    if isinstance(error, LLMError):
        return f"LLM backend: {error}"
    if isinstance(error, BlackBoxError):
        return f"black box: {error}"
    if isinstance(error, ValueError):
        return f"bad input: {error}"
    return f"{type(error).__name__}: {error}"


async def run_rows(
    method: RowMethod,
    context: MethodContext,
    rows: Sequence[tuple[int, Any]],
    options: BaseModel,
    *,
    sink: Sink,
    concurrency: int,
    chunk_size: int,
    on_chunk: Callable[[list[RowOutcome]], None] | None = None,
) -> None:
    """Run `method` over `(index, row)` pairs; each finished chunk goes to `sink` and then to `on_chunk`."""
    slots = asyncio.Semaphore(concurrency)
    chunks = [list(rows[i : i + chunk_size]) for i in range(0, len(rows), chunk_size)]

    async def run_chunk(chunk: list[tuple[int, Any]]) -> None:
        async with slots:
            try:
                results = await method.run(context, [row for _, row in chunk], options)
            except (LLMError, BlackBoxError, ValueError) as error:
                results = [error] * len(chunk)
            outcomes = [
                RowOutcome(index=index, ok=False, error=describe_error(result))
                if isinstance(result, BaseException)
                else RowOutcome(index=index, ok=True, result=result)
                for (index, _), result in zip(chunk, results)
            ]
            await sink.record(outcomes)
            if on_chunk is not None:
                on_chunk(outcomes)

    await asyncio.gather(*(run_chunk(chunk) for chunk in chunks))
