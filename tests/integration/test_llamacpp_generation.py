"""Continuously batched generation on the embedded model: each request keeps its own limits, sampler and grammar."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from xplain.llm.backends.llamacpp import LlamaCppBackend
from xplain.llm.types import GenerationRequest, LLMError

pytestmark = pytest.mark.integration

QUESTION = "Write two sentences about the sea."


class City(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    continent: Literal["Africa", "America", "Asia", "Europe", "Oceania"]
    is_capital: bool


class Numbers(BaseModel):
    values: list[int] = Field(min_length=1, max_length=5)


class Verdict(BaseModel):
    label: Literal["positive", "negative"]
    reason: str = Field(max_length=80)


@pytest.fixture
async def backend():
    backend = LlamaCppBackend(context_size=4096, parallel=4, threads=2, workers=2)
    yield backend
    await backend.aclose()


async def test_grammar_bound_generations_in_one_batch_all_validate(backend):
    """Three schemas, four slots, nine requests: slots free and refill while grammars run side by side."""
    asks = [
        ("Name a large city.", City),
        ("List a few small numbers.", Numbers),
        ("Is 'a wonderful, moving film' positive or negative?", Verdict),
    ] * 3
    requests = [
        GenerationRequest.user(text, json_schema=schema.model_json_schema(), max_tokens=96) for text, schema in asks
    ]
    replies = await backend.generate(requests)
    for (_, schema), reply in zip(asks, replies):
        assert reply.finish_reason == "stop", reply
        schema.model_validate_json(reply.text)


async def test_each_request_keeps_its_own_stop_strings_and_token_limit(backend):
    free, stopped, short = await backend.generate(
        [
            GenerationRequest.user(QUESTION, max_tokens=40),
            GenerationRequest.user(QUESTION, max_tokens=40, stop=[" "]),
            GenerationRequest.user(QUESTION, max_tokens=3),
        ]
    )
    assert " " in free.text and free.completion_tokens > 3
    assert stopped.text and " " not in stopped.text and stopped.finish_reason == "stop"
    assert short.completion_tokens == 3 and short.finish_reason == "length"
    assert free.text.startswith(stopped.text)  # greedy: the same start, cut at the first space


async def test_seeds_and_temperatures_stay_with_their_requests(backend):
    greedy = GenerationRequest.user(QUESTION, max_tokens=24)
    hot = [GenerationRequest.user(QUESTION, max_tokens=24, temperature=1.5, seed=seed) for seed in range(4)]
    [alone] = await backend.generate([greedy])
    replies = await backend.generate([greedy, *hot, greedy])
    assert replies[0].text == replies[-1].text == alone.text  # temperature 0 ignores its neighbours' sampling
    assert len({r.text for r in replies[1:5]}) >= 3  # different seeds, different samples
    [hot_alone] = await backend.generate([hot[2]])
    assert hot_alone.text == replies[3].text  # the same seed, the same sample, alone or in a batch


class Review(BaseModel):
    label: Literal["positive", "negative"]
    words: list[str] = Field(max_length=3)


async def test_a_reply_is_the_same_alone_and_among_others(backend):
    """Greedy, JSON-constrained (as posthoc asks) and seeded sampling: one prompt alone and the same prompt among nine
    others in one call get the same tokens. (With sequences generating together in one context they did not: 7 of
    16 greedy replies, 12 of 16 constrained and 15 of 16 seeded differed, as llama.cpp rounds logits by the cells a
    sequence sits in.)"""
    from tests.integration.test_llamacpp_scoring import movie_reviews_sample

    texts = movie_reviews_sample(10)
    kinds = [
        dict(max_tokens=24),
        dict(max_tokens=40, json_schema=Review.model_json_schema()),
        dict(max_tokens=24, temperature=0.8, seed=7),
    ]
    for options in kinds:
        requests = [GenerationRequest.user(f"Summarise this review: {t}", **options) for t in texts]
        together = await backend.generate(requests)
        for k in (0, 9):
            [alone] = await backend.generate([requests[k]])
            assert alone.text == together[k].text, (options, k)
            assert alone.completion_tokens == together[k].completion_tokens


async def test_a_shared_prompt_prefix_is_evaluated_once_per_worker(backend):
    """Eight requests with the same long system prompt on two workers: each worker decodes the prefix in one slot
    and copies it to its others, so the prompt tokens decoded are about two prompts' worth, not eight."""
    system = "You explain model predictions. " + "Be brief and exact. " * 40
    requests = [GenerationRequest.user(f"Say the number {n}.", system=system, max_tokens=4) for n in range(8)]
    await backend.check()
    before = backend._engine.decoded_tokens
    replies = await backend.generate(requests)
    decoded = backend._engine.decoded_tokens - before
    prompt_tokens = sum(r.prompt_tokens for r in replies)
    assert decoded < prompt_tokens / 3, (decoded, prompt_tokens)


async def test_concurrent_generations_are_shared_out_among_the_workers(backend):
    """Requests in flight together go to the least busy worker, so both contexts decode."""
    await backend.check()
    before = [worker.decode_calls for worker in backend._engine._workers]
    await backend.generate([GenerationRequest.user(QUESTION, max_tokens=8) for _ in range(4)])
    after = [worker.decode_calls for worker in backend._engine._workers]
    assert all(a > b for a, b in zip(after, before)), (before, after)


async def test_a_prompt_over_the_context_is_a_clear_error_and_the_backend_goes_on():
    backend = LlamaCppBackend(context_size=256, parallel=2)
    try:
        with pytest.raises(LLMError, match="over the context size 256"):
            await backend.generate([GenerationRequest.user("word " * 400, max_tokens=8)])
        [reply] = await backend.generate([GenerationRequest.user("Say hi.", max_tokens=300)])
        assert reply.text and reply.prompt_tokens + reply.completion_tokens <= 256
    finally:
        await backend.aclose()


async def test_chat_tool_choice_through_constrained_json_still_works():
    """The client's tool fallback sends an anyOf schema; the batched grammar path must still yield a choice."""
    from xplain.llm import make_llm
    from xplain.llm.types import Message, ToolSpec
    from xplain.settings import Settings

    llm = make_llm(Settings(llm_backend="llamacpp", cache_enabled=False, llm_context_size=4096))
    try:
        tool = ToolSpec(
            name="predict",
            description="Predict the class of one row.",
            parameters={"type": "object", "properties": {"row": {"type": "integer"}}, "required": ["row"]},
        )
        reply = await llm.chat(
            [Message(role="user", content="Predict row 3.")], tools=[tool], max_tokens=64, tool_choice="required"
        )
        assert reply.tool_calls and reply.tool_calls[0].name == "predict"
        assert isinstance(reply.tool_calls[0].arguments["row"], int)
        json.dumps(reply.tool_calls[0].arguments)
    finally:
        await llm.aclose()


async def test_greedy_decoding_asks_the_grammar_about_its_choice_and_gets_the_grammar_first_tokens():
    """The fast path (argmax, then the grammar on that one token) writes what applying the grammar to the whole
    vocabulary every step writes; one request at a time, so both decode the same batches."""
    asks = [
        GenerationRequest.user("Name a European capital.", max_tokens=48, json_schema=City.model_json_schema()),
        GenerationRequest.user("Is 'a dull, tired film' positive?", max_tokens=64, json_schema=Verdict.model_json_schema()),
    ]
    replies = {}
    for grammar_first in (True, False):
        backend = LlamaCppBackend(context_size=1024, parallel=1, threads=1, workers=1, grammar_first=grammar_first)
        try:
            replies[grammar_first] = [(await backend.generate([ask]))[0].text for ask in asks]
        finally:
            await backend.aclose()
    assert replies[False] == replies[True]
    City.model_validate_json(replies[False][0])
    Verdict.model_validate_json(replies[False][1])
