"""What reading one-token labels from the next token saves on a real OpenAI-compatible server, against echo.

Starts llama-cpp-python's server on the embedded SmolLM2 GGUF (as tests/integration do: `--logits_all` and BOS
forced on, so its echo reads the right positions), then scores word-deletion perturbations of reviews (LIME's
kind of variants) twice in this process: as xplain does by default (the next token's top 20 log-probabilities,
one request a row, `next_token_text` since this server has no /tokenize; a row whose labels are not all in the
top 20 falls back to echo), and with echo only (one request a label, the prompt prefilled each time). Prints
HTTP scoring requests (from the paths taken: a next-token row is one; a row that falls back costs that one plus
one a label), prompt tokens and seconds of each, and their ratios. The labels are the two word tokens found in the
most rows' top 20 (asked before the timed runs), so that most rows take the next-token path.

    PYTHONPATH=. python bench/server_next_token.py [ROWS]
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter

import httpx

from xplain.llm import ScoreRequest, make_llm, track_usage
from xplain.llm.backends.llamacpp import packaged_model_path
from xplain.settings import Settings
from xplain.testing.serve import free_port

TEMPLATE = "Review: {text}\nSentiment:"
REVIEWS = [
    "a warm, wise and funny film about two sisters who stop talking for a decade and start again",
    "dull, long and badly acted; the plot goes nowhere and the jokes land nowhere either",
    "the cast shines even when the script runs thin, and the last act earns its tears",
]


def perturbations(rows: int) -> list[str]:
    rng = random.Random(0)
    out = []
    for n in range(rows):
        words = REVIEWS[n % len(REVIEWS)].split()
        kept = [w for w in words if rng.random() > 0.3] or words[:1]
        out.append(" ".join(kept))
    return out


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_model_path()), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--logits_all", "true",
        "--kv_overrides", "tokenizer.ggml.add_bos_token=bool:true",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("llama-cpp-python's server did not start")


def top_words(url: str, text: str) -> set[str]:
    body = {"prompt": TEMPLATE.replace("{text}", text), "max_tokens": 1, "temperature": 0, "logprobs": 20}
    top = httpx.post(f"{url}/completions", json=body, timeout=120).json()["choices"][0]["logprobs"]["top_logprobs"][0]
    return {t for t in top if t.startswith(" ") and t[1:].isalpha()}


async def run(url: str, labels: list[str], texts: list[str], *, echo_only: bool) -> tuple[Counter, int, int, float]:
    llm = make_llm(Settings(llm_backend="openai", llm_base_url=url, cache_enabled=False, llm_max_concurrency=1))
    if echo_only:  # what xplain did before: a bench-only switch, as if the server had refused top log-probabilities
        llm.backend._next_token_logprobs = False  # type: ignore[attr-defined]
    asked = [ScoreRequest(prompt=TEMPLATE.replace("{text}", t), continuations=labels) for t in texts]
    started = time.perf_counter()
    with track_usage() as meter:
        scored = await llm.score(asked)
    seconds = time.perf_counter() - started
    await llm.aclose()
    paths = Counter(s.scoring for s in scored)
    requests = len(texts) * len(labels) if echo_only else len(texts) + paths["echo"] * len(labels)
    return paths, requests, meter.usage.prompt_tokens, seconds


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    process, url = start_server()
    try:
        texts = perturbations(rows)
        found = Counter(word for text in texts for word in top_words(url, text))
        labels = [word for word, _ in found.most_common(2)]
        fast = asyncio.run(run(url, labels, texts, echo_only=False))
        slow = asyncio.run(run(url, labels, texts, echo_only=True))
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(f"{rows} rows, labels {labels}, llama-cpp-python server on SmolLM2-135M, one request at a time")
    for name, (paths, calls, tokens, seconds) in (("next token (default)", fast), ("echo only", slow)):
        print(f"  {name:22s} paths {dict(paths)}  requests {calls}  prompt tokens {tokens}  {seconds:.2f} s")
    print(
        f"  ratio echo / next token: requests {slow[1] / fast[1]:.2f}x, prompt tokens {slow[2] / fast[2]:.2f}x, "
        f"seconds {slow[3] / fast[3]:.2f}x"
    )


if __name__ == "__main__":
    main()
