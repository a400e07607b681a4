"""One-token labels scored by the next token's top log-probabilities on a real OpenAI-compatible server
(llama-cpp-python's, which has no /tokenize, so the evidence is a top token's exact text) agree with the same
server's echo, the exact reading; a label outside the top 20 is read by echo instead, never guessed."""

from __future__ import annotations

import httpx
import pytest

from xplain.llm import ScoreRequest, make_llm
from xplain.settings import Settings

pytestmark = pytest.mark.integration

PROMPTS = ["Review: a warm, wise and funny film\nSentiment:", "Review: dull, long and badly acted\nSentiment:"]


def top_words(url: str, prompt: str) -> list[str]:
    """Three words the server itself ranks among the top 20 after `prompt`, each a word-starting token."""
    body = {"prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": 20}
    top = httpx.post(f"{url}/completions", json=body, timeout=60).json()["choices"][0]["logprobs"]["top_logprobs"][0]
    words = [t for t in top if t.startswith(" ") and t[1:].isalpha()]
    assert len(words) >= 3, top
    return words[:3]


async def test_labels_read_from_the_next_token_equal_the_servers_own_echo(llama_server_url):
    llm = make_llm(Settings(llm_backend="openai", llm_base_url=llama_server_url, cache_enabled=False))
    for prompt in PROMPTS:
        labels = top_words(llama_server_url, prompt)
        with_zebra = [*labels, " zebra"]
        [by_next_token, by_echo] = await llm.score(
            [ScoreRequest(prompt=prompt, continuations=labels), ScoreRequest(prompt=prompt, continuations=with_zebra)]
        )
        assert by_next_token.scoring == "next_token_text" and by_echo.scoring == "echo"  # " zebra" is not in the top
        assert by_next_token.logprobs == pytest.approx(by_echo.logprobs[:3], abs=1e-4)
        assert by_next_token.usage.prompt_tokens < by_echo.usage.prompt_tokens  # one request, not one per label
    await llm.aclose()
