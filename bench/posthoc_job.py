"""A posthoc job on the embedded model: rows/s of the old path, today's generated proposal and the choice, in one
process.

Black box: TF-IDF + logistic regression fitted on Rotten Tomatoes snippets (`xplain.data.datasets.text_dataset`, the
texts the integration tests use, not the demo model); the job explains held-out snippets through the same runner a
job and `xplain batch` use (`xplain.batch.runner.run_rows`), default posthoc options, the packaged SmolLM2-135M.

- before: the path as it was, selected in-process: 8 chunks of 4 rows in flight, a rationale per feature (120
  characters), 300 tokens per answer, the engine applying the JSON grammar to the whole vocabulary every step and
  admitting as many generations as it has sequences, decoding them together
  (`LlamaCppBackend(grammar_first=True, generation_cells=0, batch_generation=True)`).
  It uses today's prompts and today's re-ask with the evidence.
- generate: `proposal: generate`, chunks sized to the backend (`job_shape`: two chunks of as many rows as the
  engine decodes at once), no rationales (no check reads them), answers bounded by their schema, the grammar asked
  about the chosen token only, and generations admitted while their cells stay within `GENERATION_CELLS` a worker.
- choice: `proposal: choose` (the default on the embedded model): the LLM scores the candidate words in one
  prefix-shared scoring round per chunk, nothing generated; then the same check and repair.

Prints rows/s, LLM calls, tokens generated and tokens decoded per row, and what the rows returned (exactly k,
faithful, proposals kept, the LLM's added value), for each path, then the ratios against before.

    PYTHONPATH=. python bench/posthoc_job.py [--rows 200] [--generate-rows 24] [--before-rows 12]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from math import nan
from statistics import mean

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from xplain.batch.runner import RowOutcome, job_shape, run_rows
from xplain.blackbox import from_estimator
from xplain.data.datasets import text_dataset
from xplain.llm import LLM
from xplain.llm.backends.llamacpp import LlamaCppBackend
from xplain.methods.catalog import MethodContext, get_method


class Kept:
    def __init__(self) -> None:
        self.outcomes: list[RowOutcome] = []

    async def record(self, outcomes: list[RowOutcome]) -> None:
        self.outcomes += outcomes


async def run_path(name: str, texts: list[str], model, *, k: int) -> dict:
    before = name == "before"
    backend = LlamaCppBackend(grammar_first=True, generation_cells=0, batch_generation=True) if before else LlamaCppBackend()
    llm = LLM(backend)
    await llm.check()  # load outside the timing
    method = get_method("posthoc")
    proposal = "choose" if name == "choice" else "generate"
    options = method.parse_options(
        {"k": k, "proposal": proposal, **({"rationales": True, "max_tokens": 300} if before else {})}
    )
    context = MethodContext(llm=llm, blackbox=from_estimator(model, kind="text"))
    shape = (8, 4) if before else job_shape(method, llm, None, None)
    kept = Kept()
    decoded = backend._started().decoded_tokens
    started = time.perf_counter()
    await run_rows(method, context, list(enumerate(texts)), options, sink=kept, concurrency=shape[0], chunk_size=shape[1])
    seconds = time.perf_counter() - started
    decoded = backend._started().decoded_tokens - decoded
    usage = llm.usage
    await llm.aclose()
    results = [o.result for o in kept.outcomes if o.ok]
    n = len(texts)
    return {
        "path": name,
        "shape": f"{shape[0]} x {shape[1]}",
        "rows": n,
        "failed": n - len(results),
        "seconds": seconds,
        "rows_per_s": n / seconds,
        "llm_calls_per_row": usage.calls / n,
        "generated_per_row": usage.completion_tokens / n,
        "prompt_per_row": usage.prompt_tokens / n,
        "decoded_per_row": decoded / n,
        "exactly_k": sum(len(r["features"]) == k for r in results) / max(len(results), 1),
        "faithful": sum((r["faithfulness"] or {}).get("verdict") == "faithful" for r in results) / max(len(results), 1),
        "proposal_kept": sum(r["repair"].startswith("none") for r in results) / max(len(results), 1),
        "reasked_kept": sum(r["repair"].startswith("re-asked") for r in results) / max(len(results), 1),
        "llm_added": mean([r["llm_added_value"] for r in results if r["llm_added_value"] is not None] or [nan]),
    }


def show(row: dict) -> None:
    print(
        f"{row['path']:8} {row['shape']:>6} chunks | {row['rows']:3d} rows ({row['failed']} failed) in "
        f"{row['seconds']:6.1f} s = {row['rows_per_s']:.3f} rows/s | per row: {row['llm_calls_per_row']:.2f} LLM "
        f"calls, {row['generated_per_row']:.0f} tokens generated, {row['prompt_per_row']:.0f} prompt tokens, "
        f"{row['decoded_per_row']:.0f} decoded | exactly k {row['exactly_k']:.0%}, faithful {row['faithful']:.0%}, "
        f"LLM proposal kept {row['proposal_kept']:.0%}, re-asked kept {row['reasked_kept']:.0%}, LLM added "
        f"{row['llm_added']:+.3f}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200, help="rows the choice explains")
    parser.add_argument("--generate-rows", type=int, default=24, help="rows the generated proposal explains")
    parser.add_argument("--before-rows", type=int, default=12, help="rows the old path explains (it is slow)")
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    data = text_dataset(n=2000)
    model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(max_iter=1000))
    model.fit(data.texts_train, data.y_train)
    texts = data.texts_test[: max(args.rows, args.generate_rows, args.before_rows)]
    paths = {}
    for name, n in (("choice", args.rows), ("generate", args.generate_rows), ("before", args.before_rows)):
        paths[name] = await run_path(name, texts[:n], model, k=args.k)
        show(paths[name])
    before = paths["before"]
    print(
        f"rows/s against before: choice {paths['choice']['rows_per_s'] / before['rows_per_s']:.2f}x, generate "
        f"{paths['generate']['rows_per_s'] / before['rows_per_s']:.2f}x (target >= 3x); tokens generated per row "
        f"{before['generated_per_row']:.0f} -> {paths['generate']['generated_per_row']:.0f} (generate) -> "
        f"{paths['choice']['generated_per_row']:.0f} (choice)"
    )


if __name__ == "__main__":
    asyncio.run(main())
