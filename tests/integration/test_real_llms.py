"""The same checks on the embedded model and on a real OpenAI-compatible server (weak model: assert structure and
easy orderings, never the truth of free text)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from xplain.llm import GenerationRequest, LLMModelNotFoundError, ScoreRequest, make_llm
from xplain.settings import Settings

pytestmark = pytest.mark.integration


class City(BaseModel):
    """Only constraints a JSON-schema grammar enforces (llama.cpp's ignores numeric bounds)."""

    name: str = Field(min_length=1, max_length=40)
    continent: Literal["Africa", "America", "Asia", "Europe", "Oceania"]
    is_capital: bool
    landmarks: list[str] = Field(max_length=3)


@pytest.fixture(params=["embedded", "openai-server"])
async def llm(request):
    if request.param == "embedded":
        settings = Settings(llm_backend="llamacpp", cache_enabled=False)
    else:
        url = request.getfixturevalue("llama_server_url")
        settings = Settings(llm_backend="openai", llm_base_url=url, cache_enabled=False)
    client = make_llm(settings)
    yield client
    await client.aclose()


async def test_answers_a_chat(llm):
    [reply] = await llm.generate([GenerationRequest.user("What is the capital of France?", max_tokens=24)])
    assert reply.text.strip()
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0


async def test_returns_a_schema_valid_object(llm):
    [result] = await llm.structured(
        [GenerationRequest.user("Name one large city, its continent, whether it is a capital, and a landmark.", max_tokens=80)],
        City,
    )
    assert isinstance(result.value, City)
    assert City.model_validate_json(result.raw) == result.value


async def test_scores_a_sensible_continuation_above_nonsense(llm):
    [scores] = await llm.score(
        [ScoreRequest(prompt="The capital of France is", continuations=[" Paris", " banana"])]
    )
    paris, banana = scores.logprobs
    assert paris > banana + 5, scores
    assert all(lp < 0 for lp in scores.logprobs)


async def test_many_prompts_in_one_batch(llm):
    questions = [f"Say the number {n}." for n in range(4)]
    replies = await llm.generate([GenerationRequest.user(q, max_tokens=8) for q in questions])
    assert len(replies) == 4 and all(r.usage.calls == 1 for r in replies)


async def test_unknown_model_on_the_server_is_a_clear_error(llama_server_url):
    client = make_llm(Settings(llm_backend="openai", llm_base_url=llama_server_url, llm_model="gpt-9"))
    with pytest.raises(LLMModelNotFoundError, match="smollm2"):
        await client.generate([GenerationRequest.user("hi")])
    await client.aclose()
