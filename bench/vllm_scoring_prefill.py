"""What scoring costs on a vLLM server: prefill tokens sent with `prompt_logprobs` against the tokens a prefix cache
would leave to compute.

vLLM does not read its prefix cache for a request that asks for `prompt_logprobs` (the KV-cache manager skips the
lookup for such requests, vllm/v1/core/kv_cache_manager.py), so `--enable-prefix-caching` saves nothing on scoring:
every continuation's sequence is prefilled from its first token, shared prompt included. This runs the SASC and
iPrompt steps of bench/sasc_iprompt.py against the local stub playing vLLM and counts, over every scoring request,
the tokens prefilled (what vLLM computes) and the distinct prefixes among them (what it would compute if cached
prefixes were read). The ratio is the price of prompt log-probabilities on that workload. No timing: the stub's
tokens are words, so the counts are in words; the ratio carries over.

    python bench/vllm_scoring_prefill.py
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from xplain.blackbox import from_callable
from xplain.evals.synthetic_modules import keyword_modules, rule_tasks
from xplain.llm import make_llm
from xplain.methods.iprompt import IPromptOptions, explain_dataset
from xplain.methods.ngrams import default_corpus
from xplain.methods.sasc import SASCOptions, explain_module
from xplain.settings import Settings
from xplain.testing.openai_stub import StubConfig, run_stub

STUB_REPLY = "A first sentence here.\nA second sentence here.\nA third sentence here."


async def run_methods(url: str) -> None:
    llm = make_llm(Settings(llm_backend="openai", llm_base_url=url, cache_enabled=False))
    module = keyword_modules()[0]
    inputs, outputs = zip(*rule_tasks()[0].pairs)
    await explain_module(
        llm, from_callable(module.function, kind="module"), default_corpus(300), SASCOptions(n_candidates=8, n_texts=3)
    )
    await explain_dataset(
        llm, list(inputs), list(outputs),
        IPromptOptions(n_candidates=8, n_keep=2, n_mutations=4, n_iterations=2, n_score_examples=8, n_heldout=12),
    )
    await llm.aclose()


def distinct_prefixes(sequences: list[list[int]]) -> int:
    """Tokens left to compute if every shared prefix were computed once: the size of the sequences' trie."""
    root: dict = {}
    size = 0
    for sequence in sequences:
        node = root
        for token in sequence:
            if token not in node:
                node[token] = {}
                size += 1
            node = node[token]
    return size


def main() -> None:
    with run_stub(StubConfig(owned_by="vllm", enable_auto_tool_choice=True, reply=STUB_REPLY)) as (url, stub):
        asyncio.run(run_methods(url))
    scoring = [r.body for r in stub.generation_requests if r.body.get("prompt_logprobs") is not None]
    sequences = [ids for body in scoring for ids in body["prompt"]]
    prefilled = sum(len(ids) for ids in sequences)
    cached = distinct_prefixes(sequences)
    table = Table("scoring requests", "sequences", "tokens prefilled", "distinct prefixes", "prefilled / distinct",
                  title="SASC + iPrompt scoring on vLLM (prompt_logprobs: no prefix-cache reads)")
    ratio = f"{prefilled / max(cached, 1):.1f}x"
    table.add_row(str(len(scoring)), str(len(sequences)), str(prefilled), str(cached), ratio)
    Console().print(table)


if __name__ == "__main__":
    main()
