"""Scoring one-token labels on a vLLM server by the next token's top log-probabilities (a request its prefix cache
serves), against the stub over a real socket: the request shape, the equality with the prompt-log-probability and
echo paths, and the fallbacks when a label is longer than a token, not among the top ones, or refused."""

from __future__ import annotations

import pytest

from xplain.llm import ScoreRequest, make_llm
from xplain.settings import Settings
from xplain.testing.openai_stub import (
    StubConfig,
    StubTokenizer,
    run_stub,
    stub_encode,
    stub_token_logprob,
    stub_tokenize,
)

TEMPLATE = "Review: {text}\nSentiment:"
LABELS = [" negative", " positive", " mixed"]
VARIANTS = ["a good film", "a bad film", "good acting, bad plot", "film"]
VOCABULARY = [*LABELS, " the", " film", " and", " neutral"]


def client(url: str):
    return make_llm(Settings(llm_backend="openai", llm_base_url=url, cache_enabled=False, llm_retry_base_delay_s=0.01))


def requests(labels=LABELS) -> list[ScoreRequest]:
    return [ScoreRequest(prompt=TEMPLATE.replace("{text}", v), continuations=list(labels)) for v in VARIANTS]


async def score(config: StubConfig, asked: list[ScoreRequest]):
    with run_stub(config) as (url, stub):
        llm = client(url)
        scored = await llm.score(asked)
        await llm.aclose()
    completions = [r.body for r in stub.generation_requests]
    return scored, completions


def expected(prompt: str, continuation: str) -> float:
    tokens = stub_tokenize(prompt + continuation)
    n_prompt = len(stub_tokenize(prompt))
    return sum(stub_token_logprob(tokens[i - 1], tokens[i]) for i in range(n_prompt, len(tokens)))


async def test_one_token_labels_are_read_from_one_next_token_request_per_variant_equal_to_the_echo_path():
    asked = requests()
    scored, sent = await score(StubConfig(owned_by="vllm", vocabulary=VOCABULARY), asked)
    assert [s.scoring for s in scored] == ["next_token"] * len(VARIANTS)
    assert len(sent) == len(VARIANTS)  # one request per variant, every label read from it
    for body, request in zip(sent, asked):
        assert body["prompt"] == stub_encode(request.prompt) and body["max_tokens"] == 1
        assert body["logprobs"] >= len(LABELS) and body["return_tokens_as_token_ids"] is True
        assert "prompt_logprobs" not in body and not body.get("echo")
    echoed, echo_sent = await score(StubConfig(owned_by="stub"), asked)  # a plain server: echo + logprobs
    assert all(b["echo"] for b in echo_sent) and [s.scoring for s in echoed] == ["echo"] * len(VARIANTS)
    for by_next_token, by_echo, request in zip(scored, echoed, asked):
        assert by_next_token.logprobs == pytest.approx(by_echo.logprobs, abs=1e-12)
        assert by_next_token.logprobs == pytest.approx([expected(request.prompt, c) for c in LABELS], abs=1e-12)
        assert by_next_token.token_counts == [1, 1, 1]


async def test_a_label_of_two_tokens_is_read_from_prompt_logprobs():
    labels = [" negative", " very positive"]
    asked = requests(labels)
    scored, sent = await score(StubConfig(owned_by="vllm", vocabulary=VOCABULARY), asked)
    assert [s.scoring for s in scored] == ["prompt_logprobs"] * len(VARIANTS)
    assert all(b["prompt_logprobs"] == 0 and "logprobs" not in b for b in sent)
    for scores, request in zip(scored, asked):
        assert scores.logprobs == pytest.approx([expected(request.prompt, c) for c in labels], abs=1e-12)


async def test_a_label_outside_the_top_log_probabilities_is_read_from_prompt_logprobs_exactly():
    asked = requests()
    vocabulary = [" negative", " positive", *(f" word{i}" for i in range(40))]  # " mixed" is never ranked
    scored, sent = await score(StubConfig(owned_by="vllm", vocabulary=vocabulary), asked)
    assert [s.scoring for s in scored] == ["prompt_logprobs"] * len(VARIANTS)
    assert sum("prompt_logprobs" in b for b in sent) == len(VARIANTS)
    for scores, request in zip(scored, asked):
        assert scores.logprobs == pytest.approx([expected(request.prompt, c) for c in LABELS], abs=1e-12)


async def test_a_server_that_refuses_top_log_probabilities_is_asked_for_prompt_logprobs_from_then_on():
    asked = requests()
    scored, sent = await score(StubConfig(owned_by="vllm", vocabulary=VOCABULARY, max_logprobs=5), asked[:1])
    assert scored[0].scoring == "prompt_logprobs"
    assert scored[0].logprobs == pytest.approx([expected(asked[0].prompt, c) for c in LABELS], abs=1e-12)
    with run_stub(StubConfig(owned_by="vllm", vocabulary=VOCABULARY, max_logprobs=5)) as (url, stub):
        llm = client(url)
        await llm.score(asked[:1])
        refused = len(stub.generation_requests)
        await llm.score(asked[1:])
        await llm.aclose()
    later = [r.body for r in stub.generation_requests[refused:]]
    assert later and all("prompt_logprobs" in b for b in later)  # it remembered the refusal


async def test_a_label_that_merges_with_the_prompt_is_scored_after_the_prompt_tokens_it_leaves():
    """SentencePiece: "Answer: " + "yes" is "▁Answer:" "▁yes"; the next token is read after "<s> ▁Answer:"."""
    tokenizer = StubTokenizer("sentencepiece")
    asked = [ScoreRequest(prompt="Answer: ", continuations=["yes", "no"])]
    config = StubConfig(owned_by="vllm", tokenizer="sentencepiece", vocabulary=["\u2581yes", "\u2581no", "\u2581x"])
    [scores], [body] = await score(config, asked)
    assert scores.scoring == "next_token"
    assert body["prompt"] == tokenizer.encode("Answer:", add_special_tokens=True)
    assert scores.logprobs == pytest.approx(
        [stub_token_logprob("\u2581Answer:", "\u2581yes"), stub_token_logprob("\u2581Answer:", "\u2581no")]
    )
