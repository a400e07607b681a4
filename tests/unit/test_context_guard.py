"""Inputs sized to the model, LLM layer: a request over the context fails alone with a clear ContextOverflow, a
llama.cpp decode error becomes one request's error, and a backend that is down still fails the whole call."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from xplain.errors import InvalidInput
from xplain.llm import LLM, GenerationRequest, LLMError, LLMUnavailableError, ScoreRequest, make_llm
from xplain.llm.backends.base import Backend
from xplain.llm.backends.fake import FakeBackend
from xplain.llm.types import ContextOverflow
from xplain.settings import Settings
from xplain.testing.openai_stub import StubConfig, run_stub, stub_encode

SHORT = "is this review positive"
LONG = " ".join(f"word{i}" for i in range(300))


class Label(BaseModel):
    label: str


def fake(context: int | None = 200, default="ok") -> tuple[LLM, FakeBackend]:
    backend = FakeBackend(default=default, context_size=context)
    return LLM(backend, default_max_tokens=20), backend


async def test_a_request_over_the_context_fails_alone_and_is_never_sent():
    llm, backend = fake(context=200)
    results = await llm.generate(
        [GenerationRequest(prompt=SHORT), GenerationRequest(prompt=LONG), GenerationRequest.user(SHORT)],
        on_error="return",
    )
    assert [type(r).__name__ for r in results] == ["Completion", "ContextOverflow", "Completion"]
    message = str(results[1])
    assert "300" in message and "320" in message and "context of 200" in message  # prompt, with reply, limit
    assert isinstance(results[1], InvalidInput) and isinstance(results[1], LLMError)
    assert all(LONG not in str(r) for r in backend.requests)


async def test_raise_mode_raises_the_overflow_and_max_tokens_counts():
    llm, _ = fake(context=200)
    with pytest.raises(ContextOverflow, match="context of 200"):
        await llm.generate([GenerationRequest(prompt=SHORT, max_tokens=199)])
    assert (await llm.generate([GenerationRequest(prompt=SHORT, max_tokens=150)]))[0].text == "ok"


async def test_short_prompts_are_not_counted():
    """A prompt whose bytes fit cannot overflow (a token is at least a byte): no tokenizer call for it."""
    llm, backend = fake(context=2000)
    counted: list[list[str]] = []
    original = backend.count_tokens

    async def spy(texts):
        counted.append(texts)
        return await original(texts)

    backend.count_tokens = spy
    await llm.generate([GenerationRequest(prompt=SHORT)])
    assert counted == []
    assert await llm.count_tokens(["a b c", ""]) == [3, 0]


async def test_without_a_known_context_nothing_is_refused():
    llm, _ = fake(context=None)
    assert llm.context_size is None
    assert (await llm.generate([GenerationRequest(prompt=LONG)]))[0].text == "ok"


async def test_a_llama_decode_error_fails_only_its_request():
    def reply(request: GenerationRequest):
        if "BOOM" in (request.prompt or ""):
            raise RuntimeError("llama_decode returned 1")
        return "fine"

    llm, backend = fake(context=None, default=reply)
    results = await llm.generate(
        [GenerationRequest(prompt=p) for p in ("one", "BOOM two", "three")], on_error="return"
    )
    assert [getattr(r, "text", None) for r in results] == ["fine", None, "fine"]
    assert isinstance(results[1], ContextOverflow) and "llama_decode returned 1" in str(results[1])
    assert [len(batch) for batch in backend.batches] == [3, 1, 1, 1]  # the batch, then each alone


async def test_llama_context_window_value_error_becomes_an_overflow():
    class Refusing(FakeBackend):
        async def generate(self, requests):
            raise ValueError("Requested tokens (2316) exceed context window of 2048")

    llm = LLM(Refusing())
    with pytest.raises(ContextOverflow, match="2316"):
        await llm.generate([GenerationRequest(prompt="x")])


async def test_a_backend_that_is_down_fails_the_whole_call():
    class Down(FakeBackend):
        async def generate(self, requests):
            raise LLMUnavailableError("server down")

    with pytest.raises(LLMUnavailableError):
        await LLM(Down()).generate([GenerationRequest(prompt="a"), GenerationRequest(prompt="b")], on_error="return")


async def test_structured_keeps_the_valid_replies_and_reports_the_overflow():
    llm, backend = fake(context=200)
    backend.default = '{"label": "pos"}'
    requests = [GenerationRequest.user(SHORT), GenerationRequest.user(LONG)]
    results = await llm.structured(requests, Label, on_error="return")
    assert results[0].value.label == "pos"
    assert isinstance(results[1], ContextOverflow)
    assert len(backend.requests) == 1  # not re-asked: a longer conversation would not fit either
    with pytest.raises(ContextOverflow):
        await llm.structured(requests, Label)


async def test_scores_that_the_backend_cannot_fit_fail_alone():
    class Scorer(FakeBackend):
        async def score(self, requests):
            if any("long" in r.prompt for r in requests):
                raise ValueError("prompt + continuation is 3000 tokens, over the context size 2048")
            return await super().score(requests)

    llm = LLM(Scorer())
    results = await llm.score(
        [ScoreRequest(prompt="short one", continuations=["a"]), ScoreRequest(prompt="long one", continuations=["a"])],
        on_error="return",
    )
    assert results[0].logprobs and isinstance(results[1], ContextOverflow)


async def test_the_default_count_is_an_estimate_that_errs_high():
    class Plain(Backend):
        name = "plain"
        model = "m"

        async def generate(self, requests):
            return []

        async def score(self, requests):
            return []

    text = "the cast is superb and the film is moving"
    assert (await Plain().count_tokens([text]))[0] >= len(text.split())


def test_openai_backend_counts_with_tokenize_and_reads_the_context_from_vllm():
    import asyncio

    async def run(url: str):
        llm = make_llm(Settings(llm_backend="openai", llm_base_url=url, cache_enabled=False))
        try:
            counts = await llm.count_tokens(["the cast is superb", "a"])
            results = await llm.generate(
                [GenerationRequest(prompt="hello"), GenerationRequest(prompt="x " * 400, max_tokens=10)],
                on_error="return",
            )
            return counts, llm.context_size, results
        finally:
            await llm.aclose()

    with run_stub(StubConfig(owned_by="vllm", max_model_len=300)) as (url, _):
        counts, context, results = asyncio.run(run(url))
    assert counts == [len(stub_encode("the cast is superb")), 1]
    assert context == 300
    assert results[0].text and isinstance(results[1], ContextOverflow) and "context of 300" in str(results[1])



async def test_a_score_over_the_context_is_refused_before_it_is_sent():
    llm, backend = fake(context=50)
    results = await llm.score(
        [ScoreRequest(prompt=SHORT, continuations=["yes", "no"]), ScoreRequest(prompt=LONG, continuations=["yes"])],
        on_error="return",
    )
    assert results[0].logprobs and isinstance(results[1], ContextOverflow) and "context of 50" in str(results[1])
    assert [r.prompt for batch in backend.score_batches for r in batch] == [SHORT]
