"""Batched SASC and iPrompt against the same steps sent one request at a time, on a delayed local server.

A local OpenAI-compatible stub (its own process) answers each request after DELAY seconds, at most C at a time.
Both runs use the same method code and the `openai` backend; the baseline wraps the backend so that every batch
goes out one request after another -- what the reference implementations do. Printed: wall time, LLM requests,
peak requests in flight at the server, and the speed-up of batched over one at a time.

    python bench/sasc_iprompt.py [--concurrency 16] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from llm_concurrency import (
    stub_in_another_process,  # bench/ is on sys.path when this file runs
)
from rich.console import Console
from rich.table import Table

from xplain.blackbox import from_callable
from xplain.evals.synthetic_modules import keyword_modules, rule_tasks
from xplain.llm import LLM, GenerationRequest, ScoreRequest, make_llm
from xplain.llm.backends.base import Backend, RawCompletion, RawScores
from xplain.methods.iprompt import IPromptOptions, explain_dataset
from xplain.methods.ngrams import default_corpus
from xplain.methods.sasc import SASCOptions, explain_module
from xplain.settings import Settings
from xplain.testing.openai_stub import StubConfig

STUB_REPLY = "A first sentence here.\nA second sentence here.\nA third sentence here."


class OneAtATime(Backend):
    """The baseline: forwards each request of a batch alone, waiting for its answer before the next."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    async def generate(self, requests: list[GenerationRequest]) -> list[RawCompletion]:
        return [(await self.inner.generate([r]))[0] for r in requests]

    async def score(self, requests: list[ScoreRequest]) -> list[RawScores]:
        return [(await self.inner.score([r]))[0] for r in requests]

    async def check(self) -> str:
        return await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def run_methods(url: str, concurrency: int, sequential: bool) -> tuple[float, int]:
    llm = make_llm(Settings(llm_backend="openai", llm_base_url=url, llm_max_concurrency=concurrency, cache_enabled=False))
    if sequential:
        llm = LLM(OneAtATime(llm.backend))
    await llm.check()
    module = keyword_modules()[0]
    task = rule_tasks()[0]
    inputs, outputs = zip(*task.pairs)
    started = time.perf_counter()
    await explain_module(
        llm, from_callable(module.function, kind="module"), default_corpus(300), SASCOptions(n_candidates=8, n_texts=3)
    )
    await explain_dataset(
        llm, list(inputs), list(outputs),
        IPromptOptions(n_candidates=8, n_keep=2, n_mutations=4, n_iterations=2, n_score_examples=8, n_heldout=12),
    )
    elapsed = time.perf_counter() - started
    calls = llm.usage.calls
    await llm.aclose()
    return elapsed, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    config = StubConfig(delay_s=args.delay, max_in_flight=args.concurrency, reply=STUB_REPLY)
    rows = {}
    for label, sequential in (("xplain batched", False), ("one at a time", True)):
        with stub_in_another_process(config) as (url, stats):
            rows[label] = asyncio.run(run_methods(url, args.concurrency, sequential))
        rows[label] += (stats["peak_in_flight"],)
    table = Table("SASC + iPrompt", "LLM requests", "wall s", "peak in flight", title=f"delay {args.delay} s, {args.concurrency} server slots")
    for label, (seconds, calls, peak) in rows.items():
        table.add_row(label, str(calls), f"{seconds:.2f}", str(peak))
    console = Console()
    console.print(table)
    console.print(f"speed-up of batched over one at a time: {rows['one at a time'][0] / rows['xplain batched'][0]:.1f}x")


if __name__ == "__main__":
    main()
