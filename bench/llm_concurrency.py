"""How well the `openai` backend keeps a server busy, and how fast the embedded model is on this machine.

Part 1: a local OpenAI-compatible stub answers each request after DELAY seconds, at most C at a time. N requests go
through xplain's `openai` backend as one batch; the ideal time is N / C x DELAY, and the printed ratio is
ideal / measured (1.0 = the server never idles; target >= 0.8 at N=200, C=16). The same N requests sent one at a
time — what the reference implementations do — are the baseline, run in the same process.

Part 2: the embedded llama.cpp model's generated tokens per second and scored tokens per second.

    python bench/llm_concurrency.py [--n 200] [--concurrency 16] [--delay 0.05] [--skip-embedded]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from rich.console import Console
from rich.table import Table

from xplain.llm import GenerationRequest, ScoreRequest, make_llm
from xplain.settings import Settings
from xplain.testing.openai_stub import StubConfig
from xplain.testing.stub_process import stub_in_another_process


def requests(n: int) -> list[GenerationRequest]:
    # Distinct prompts, so neither the client's de-duplication nor its cache can shortcut the work.
    return [GenerationRequest.user(f"request number {i}", max_tokens=8) for i in range(n)]


async def timed_batch(url: str, n: int, concurrency: int) -> float:
    llm = make_llm(Settings(llm_backend="openai", llm_base_url=url, llm_max_concurrency=concurrency, cache_enabled=False))
    await llm.check()  # resolve the model once, outside the timing
    started = time.perf_counter()
    replies = await llm.generate(requests(n))
    elapsed = time.perf_counter() - started
    assert len(replies) == n
    await llm.aclose()
    return elapsed


async def timed_one_at_a_time(url: str, n: int) -> float:
    llm = make_llm(Settings(llm_backend="openai", llm_base_url=url, cache_enabled=False))
    await llm.check()
    started = time.perf_counter()
    for request in requests(n):
        await llm.generate([request])
    elapsed = time.perf_counter() - started
    await llm.aclose()
    return elapsed


def concurrency_part(n: int, concurrency: int, delay: float, console: Console) -> None:
    ideal = n / concurrency * delay
    table = Table("client", "requests", "server slots", "delay s", "ideal s", "measured s", "ideal / measured")
    with stub_in_another_process(StubConfig(delay_s=delay, max_in_flight=concurrency)) as (url, stats):
        batched = asyncio.run(timed_batch(url, n, concurrency))
    peak = stats["peak_in_flight"]
    with stub_in_another_process(StubConfig(delay_s=delay, max_in_flight=concurrency)) as (url, _):
        sequential = asyncio.run(timed_one_at_a_time(url, n))
    table.add_row("xplain batch", str(n), str(concurrency), f"{delay}", f"{ideal:.3f}", f"{batched:.3f}", f"{ideal / batched:.2f}")
    table.add_row("one at a time", str(n), str(concurrency), f"{delay}", f"{ideal:.3f}", f"{sequential:.3f}", f"{ideal / sequential:.2f}")
    console.print(table)
    console.print(f"peak requests in flight at the server during the batch: {peak} (of {concurrency} slots)")
    console.print(f"speed-up of the batch over one at a time: {sequential / batched:.1f}x")


async def embedded_rates() -> tuple[float, float, float]:
    llm = make_llm(Settings(llm_backend="llamacpp", cache_enabled=False))
    await llm.check()  # load the model outside the timing
    prompts = [GenerationRequest.user(f"Write a short story about a robot named R{i}.", max_tokens=64) for i in range(4)]
    started = time.perf_counter()
    replies = await llm.generate(prompts)
    generation_seconds = time.perf_counter() - started
    generated = sum(r.usage.completion_tokens for r in replies)
    prompt_tokens = sum(r.usage.prompt_tokens for r in replies)

    score_requests = [
        ScoreRequest(
            prompt=f"Review {i}: the film was long, but the acting was",
            continuations=[" wonderful and moving.", " terrible and flat.", " fine.", " a purple banana."],
        )
        for i in range(10)
    ]
    started = time.perf_counter()
    scores = await llm.score(score_requests)
    score_seconds = time.perf_counter() - started
    scored = sum(sum(s.token_counts) + s.usage.prompt_tokens for s in scores)
    await llm.aclose()
    return generated / generation_seconds, (generated + prompt_tokens) / generation_seconds, scored / score_seconds


def embedded_part(console: Console) -> None:
    generated_rate, total_rate, scored_rate = asyncio.run(embedded_rates())
    table = Table("embedded model (SmolLM2-135M, llama.cpp, CPU)", "tokens / s")
    table.add_row("generated tokens (chat, 64 max)", f"{generated_rate:.0f}")
    table.add_row("prompt + generated tokens", f"{total_rate:.0f}")
    table.add_row("scored tokens (prompt + continuation, prefix reused)", f"{scored_rate:.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()
    console = Console(width=140)
    concurrency_part(args.n, args.concurrency, args.delay, console)
    if not args.skip_embedded:
        embedded_part(console)


if __name__ == "__main__":
    main()
