"""Scoring one-token labels by the next token's top log-probabilities (a request prefix caches serve), against the
stub over a real socket: on vLLM, on llama.cpp's server (its /tokenize says a label is one token; it refuses echo)
and on a server that says nothing (OpenAI: a top token whose text is the label). The request shape, the equality
with the prompt-log-probability and echo paths, the fallbacks when a label is longer than a token, not among the
top ones, or refused, and the error, never a made-up number, where no fallback exists."""

from __future__ import annotations

import pytest

from xplain.llm import LLMError, LLMRequestError, Message, ScoreRequest, make_llm
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
    # the variants' requests go out concurrently, so they arrive in any order
    assert sorted(b["prompt"] for b in sent) == sorted(stub_encode(r.prompt) for r in asked)
    for body in sent:
        assert body["max_tokens"] == 1
        assert body["logprobs"] >= len(LABELS) and body["return_tokens_as_token_ids"] is True
        assert "prompt_logprobs" not in body and not body.get("echo")
    # a plain server whose top log-probabilities hold none of the labels: echo + logprobs
    echoed, echo_sent = await score(StubConfig(owned_by="stub"), asked)
    assert sum(bool(b.get("echo")) for b in echo_sent) == len(VARIANTS) * len(LABELS)
    assert [s.scoring for s in echoed] == ["echo"] * len(VARIANTS)
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


async def echo_scores(asked: list[ScoreRequest]):
    """The same requests on a server whose top log-probabilities hold no label: echo + logprobs."""
    scored, sent = await score(StubConfig(owned_by="stub"), asked)
    assert [s.scoring for s in scored] == ["echo"] * len(asked) and any(b.get("echo") for b in sent)
    return scored


async def test_llamacpp_server_labels_its_tokenizer_calls_one_token_are_read_from_the_next_token_equal_to_echo():
    asked = requests()
    with run_stub(StubConfig(owned_by="llamacpp", vocabulary=VOCABULARY)) as (url, stub):
        llm = client(url)
        scored = await llm.score(asked)
        await llm.aclose()
    sent = [r.body for r in stub.generation_requests]
    tokenized = [r.body["content"] for r in stub.requests if r.path == "/tokenize"]
    assert [s.scoring for s in scored] == ["next_token"] * len(VARIANTS)
    assert sorted(b["prompt"] for b in sent) == sorted(r.prompt for r in asked)  # one request per variant
    assert all(b["max_tokens"] == 1 and b["logprobs"] == 20 and not b.get("echo") for b in sent)
    assert set(tokenized) == {r.prompt + c for r in asked for c in ["", *LABELS]}
    for by_next_token, by_echo, request in zip(scored, await echo_scores(asked), asked):
        assert by_next_token.logprobs == pytest.approx(by_echo.logprobs, abs=1e-9)
        assert by_next_token.logprobs == pytest.approx([expected(request.prompt, c) for c in LABELS], abs=1e-9)
        assert by_next_token.token_counts == [1, 1, 1]


async def test_llamacpp_server_a_label_outside_the_top_ones_fails_with_an_error_naming_it_not_a_made_up_number():
    """llama.cpp's server refuses echo (a 500, not retried), so nothing else can read " mixed"."""
    vocabulary = [" negative", " positive", " the", " film"]  # " mixed" is never ranked
    with run_stub(StubConfig(owned_by="llamacpp", vocabulary=vocabulary)) as (url, stub):
        llm = client(url)
        results = await llm.score(requests(), on_error="return")
        with pytest.raises(LLMRequestError) as raised:
            await llm.score(requests()[:1])
        await llm.aclose()
    assert all(isinstance(r, LLMError) for r in results)  # no Scores at all, so no number for " mixed"
    message = str(raised.value)
    assert "' mixed': not among the next token's top 20" in message and "' negative':" not in message
    assert "single common tokens" in message
    echoed = [r.body["prompt"] for r in stub.generation_requests if r.body.get("echo")]
    assert len(echoed) == len(set(echoed))  # the refusal (a 500) is neither retried nor asked for again


async def test_llamacpp_server_a_label_of_two_tokens_fails_with_an_error_that_says_so():
    labels = [" negative", " very positive"]
    with run_stub(StubConfig(owned_by="llamacpp", vocabulary=VOCABULARY)) as (url, stub):
        llm = client(url)
        with pytest.raises(LLMRequestError, match="' very positive': not one token after the prompt's own tokens"):
            await llm.score(requests(labels)[:1])
        await llm.aclose()
    assert not any(r.body.get("logprobs") == 20 for r in stub.generation_requests)  # its tokenizer said so first


async def test_a_server_without_a_tokenizer_reads_a_label_by_a_top_token_of_exactly_its_text_equal_to_echo():
    asked = requests()
    scored, sent = await score(StubConfig(owned_by="stub", vocabulary=VOCABULARY), asked)
    assert [s.scoring for s in scored] == ["next_token_text"] * len(VARIANTS)
    assert len(sent) == len(VARIANTS) and not any(b.get("echo") for b in sent)
    for by_text, by_echo in zip(scored, await echo_scores(asked)):
        assert by_text.logprobs == pytest.approx(by_echo.logprobs, abs=1e-9)


async def test_without_a_tokenizer_a_prompt_that_ends_in_a_space_is_echoed_not_read_from_the_next_token():
    """"Sentiment: " + "positive" is read as "Sentiment:" " positive": the next token after the space is not it."""
    asked = [ScoreRequest(prompt="Review: a good film\nSentiment: ", continuations=["positive", "negative"])]
    [scores], sent = await score(StubConfig(owned_by="stub", vocabulary=["positive", "negative"]), asked)
    assert scores.scoring == "echo" and all(b.get("echo") for b in sent)
    assert scores.logprobs == pytest.approx([expected(asked[0].prompt, c) for c in ["positive", "negative"]])


async def test_a_chat_score_request_fails_alone_on_a_backend_that_scores_raw_prompts_and_needs_one_form():
    llm = make_llm(Settings(llm_backend="fake", cache_enabled=False))
    chat = ScoreRequest(messages=[Message(role="user", content="a good film")], continuations=[" positive"])
    plain = ScoreRequest(prompt="a good film", continuations=[" x"])
    refused, answered = await llm.score([chat, plain], on_error="return")
    assert isinstance(refused, LLMRequestError) and "render the chat first" in str(refused)
    assert not isinstance(answered, Exception) and len(answered.logprobs) == 1
    for neither_or_both in ({}, {"prompt": "p", "messages": chat.messages}):
        with pytest.raises(ValueError, match="either prompt or messages"):
            ScoreRequest(continuations=[" x"], **neither_or_both)


async def test_a_server_that_ignores_logprobs_gets_an_error_that_says_so_and_is_not_asked_again():
    with run_stub(StubConfig(owned_by="stub", vocabulary=VOCABULARY, logprobs=False)) as (url, stub):
        llm = client(url)
        for _ in range(2):
            with pytest.raises(LLMRequestError, match="' mixed': the server returns no top log-probabilities"):
                await llm.score(requests()[:1])
        chat = ScoreRequest(messages=[Message(role="user", content="a good film")], continuations=[" positive"])
        with pytest.raises(LLMRequestError, match="returns no log-probabilities for chat completions"):
            await llm.score([chat])
        await llm.aclose()
    asked_for_top = [r.body for r in stub.requests if r.path == "/v1/completions" and r.body.get("logprobs") == 20]
    assert len(asked_for_top) == 1  # remembered after the first answer without them
