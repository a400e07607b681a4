"""What every method result carries besides its answer: what it cost and which prompt versions produced it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel, Field

from xplain.blackbox import BlackBox
from xplain.llm import Usage, track_usage


class Cost(BaseModel):
    """LLM usage, black-box rows actually evaluated (cache hits and duplicates excluded), and wall time."""

    llm: Usage = Field(default_factory=Usage)
    blackbox_queries: int = 0
    seconds: float = 0.0

    def split(self, n: int) -> list[Cost]:
        """The cost of work shared by `n` results, one share each; counts split exactly (the shares add up)."""

        def parts(total: int) -> list[int]:
            base, extra = divmod(total, n)
            return [base + (i < extra) for i in range(n)]

        usage = self.llm
        columns = zip(
            parts(usage.calls), parts(usage.prompt_tokens), parts(usage.completion_tokens), parts(usage.cache_hits),
            parts(self.blackbox_queries),
        )  # fmt: skip
        return [
            Cost(
                llm=Usage(calls=c, prompt_tokens=p, completion_tokens=o, cache_hits=h, seconds=usage.seconds / n),
                blackbox_queries=q,
                seconds=self.seconds / n,
            )
            for c, p, o, h, q in columns
        ]


class MethodResult(BaseModel):
    """Base of every method's result: JSON all the way out."""

    method: str
    prompt_versions: list[str] = Field(default_factory=list, description="`name@version` of each template used.")
    cost: Cost = Field(default_factory=Cost)


class CostMeter:
    def __init__(self) -> None:
        self.cost = Cost()


@contextmanager
def measure_cost(*blackboxes: BlackBox) -> Iterator[CostMeter]:
    """`with measure_cost(bb) as meter:` — afterwards `meter.cost` holds what the block spent."""
    meter = CostMeter()
    before = [bb.stats().evaluated for bb in blackboxes]
    started = time.perf_counter()
    with track_usage() as usage:
        try:
            yield meter
        finally:
            meter.cost = Cost(
                llm=usage.usage,
                blackbox_queries=sum(bb.stats().evaluated - b for bb, b in zip(blackboxes, before)),
                seconds=time.perf_counter() - started,
            )
