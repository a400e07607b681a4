"""The LLM client over the scripted fake backend: batching, caching, usage, structured output, tools, scoring."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel, Field

from xplain.llm import (
    LLM,
    GenerationRequest,
    Message,
    ScoreRequest,
    StructuredOutputError,
    ToolSpec,
    make_backend,
    make_llm,
    parse_json_reply,
    track_usage,
)
from xplain.llm.backends.fake import FakeBackend, default_token_logprob, tool_call_reply
from xplain.llm.cache import ResponseCache
from xplain.settings import Settings


class Verdict(BaseModel):
    label: str = Field(max_length=20)
    confidence: float = Field(ge=0, le=1)
    reasons: list[str] = Field(max_length=3)


def ask(text: str, **params) -> GenerationRequest:
    return GenerationRequest.user(text, **params)


async def test_generate_sends_one_batch_and_keeps_order():
    backend = FakeBackend(rules=[(r"first", "one"), (r"second", "two"), (r"third", "three")])
    llm = LLM(backend)
    out = await llm.generate([ask("first"), ask("second"), ask("third")])
    assert [c.text for c in out] == ["one", "two", "three"]
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 3


async def test_usage_counts_calls_and_tokens():
    llm = LLM(FakeBackend(default="alpha beta gamma"))
    out = await llm.generate([ask("four words in here"), ask("two words")])
    assert out[0].usage.calls == 1 and out[0].usage.completion_tokens == 3
    assert llm.usage.calls == 2
    assert llm.usage.completion_tokens == 6
    assert llm.usage.prompt_tokens == 6  # 4 + 2 whitespace tokens


async def test_identical_deterministic_requests_are_sent_once_and_then_cached():
    backend = FakeBackend(default="same")
    llm = LLM(backend, cache=ResponseCache())
    first = await llm.generate([ask("x"), ask("x"), ask("y")])
    assert len(backend.requests) == 2
    assert [c.usage.cache_hits for c in first] == [0, 1, 0]
    second = await llm.generate([ask("x"), ask("y")])
    assert len(backend.requests) == 2, "a repeat of temperature-0 requests must not reach the backend"
    assert all(c.usage.cache_hits == 1 and c.usage.calls == 0 for c in second)
    assert [c.text for c in second] == ["same", "same"]


async def test_sampled_requests_are_never_cached():
    backend = FakeBackend(default="maybe")
    llm = LLM(backend, cache=ResponseCache())
    await llm.generate([ask("x", temperature=0.8), ask("x", temperature=0.8)])
    await llm.generate([ask("x", temperature=0.8)])
    assert len(backend.requests) == 3


async def test_cache_key_includes_parameters():
    backend = FakeBackend(default="r")
    llm = LLM(backend, cache=ResponseCache())
    await llm.generate([ask("x", max_tokens=5), ask("x", max_tokens=6), ask("x", stop=["."])])
    assert len(backend.requests) == 3


async def test_disk_cache_survives_a_new_client(tmp_path):
    path = tmp_path / "cache.sqlite"
    llm = LLM(FakeBackend(default="persisted"), cache=ResponseCache(path))
    await llm.generate([ask("q")])
    await llm.score([ScoreRequest(prompt="a b", continuations=[" c"])])
    await llm.aclose()

    backend = FakeBackend()  # no script: any request reaching it would fail
    again = LLM(backend, cache=ResponseCache(path))
    assert (await again.generate([ask("q")]))[0].text == "persisted"
    assert (await again.score([ScoreRequest(prompt="a b", continuations=[" c"])]))[0].usage.cache_hits == 1
    assert backend.requests == [] and backend.score_batches == []


async def test_structured_valid_on_first_try():
    reply = json.dumps({"label": "spam", "confidence": 0.9, "reasons": ["has a link"]})
    llm = LLM(FakeBackend(default=reply))
    [result] = await llm.structured([ask("classify")], Verdict)
    assert result.value == Verdict(label="spam", confidence=0.9, reasons=["has a link"])
    assert result.attempts == 1 and result.raw == reply


async def test_structured_sends_the_schema_to_the_backend():
    backend = FakeBackend(default=json.dumps({"label": "a", "confidence": 0.5, "reasons": []}))
    await LLM(backend).structured([ask("classify")], Verdict)
    assert backend.requests[0].json_schema == Verdict.model_json_schema()


async def test_structured_repairs_an_invalid_reply_with_the_errors():
    good = json.dumps({"label": "ham", "confidence": 0.2, "reasons": []})
    backend = FakeBackend(queue=['{"label": "ham", "confidence": 7}', good])
    [result] = await LLM(backend).structured([ask("classify")], Verdict)
    assert result.value.label == "ham" and result.attempts == 2
    assert result.usage.calls == 2
    retry = backend.requests[1].messages
    assert retry[-2].role == "assistant" and retry[-2].content == '{"label": "ham", "confidence": 7}'
    assert "confidence" in retry[-1].content and "reasons" in retry[-1].content


async def test_structured_batches_retries_of_only_the_failed_items():
    good = json.dumps({"label": "ok", "confidence": 0.5, "reasons": []})
    backend = FakeBackend(rules=[(r"bad item.*not valid", good), (r"bad item", "nope"), (r"good item", good)])
    results = await LLM(backend).structured([ask("good item"), ask("bad item")], Verdict)
    assert [r.attempts for r in results] == [1, 2]
    assert [len(b) for b in backend.batches] == [2, 1]


async def test_structured_never_valid_is_an_error_with_the_raw_text():
    llm = LLM(FakeBackend(default="I refuse to answer in JSON"), structured_attempts=2)
    with pytest.raises(StructuredOutputError) as caught:
        await llm.structured([ask("classify")], Verdict)
    assert caught.value.raw == "I refuse to answer in JSON"
    assert "2 tries" in str(caught.value)


async def test_structured_can_return_failures_in_place():
    good = json.dumps({"label": "ok", "confidence": 0.5, "reasons": []})
    llm = LLM(FakeBackend(rules=[(r"good", good), (r"bad", "no json")]), structured_attempts=2)
    results = await llm.structured([ask("good"), ask("bad")], Verdict, on_error="return")
    assert results[0].value.label == "ok"
    assert isinstance(results[1], StructuredOutputError) and results[1].raw == "no json"


async def test_structured_refuses_raw_prompts():
    with pytest.raises(ValueError, match="chat requests"):
        await LLM(FakeBackend(default="{}")).structured([GenerationRequest(prompt="x")], Verdict)


def test_parse_json_reply_finds_json_inside_prose_and_fences():
    text = 'Sure! ```json\n{"label": "x", "confidence": 1, "reasons": ["r"]}\n``` Hope that helps.'
    assert parse_json_reply(text, Verdict).reasons == ["r"]
    with pytest.raises(ValueError, match="confidence"):
        parse_json_reply('{"label": "x", "confidence": 3, "reasons": []}', Verdict)


PREDICT = ToolSpec(
    name="predict",
    description="The model's prediction for one row.",
    parameters={"type": "object", "properties": {"row": {"type": "integer"}}, "required": ["row"]},
)


async def test_chat_returns_native_tool_calls():
    llm = LLM(FakeBackend(default=tool_call_reply("predict", row=3)))
    reply = await llm.chat([Message(role="user", content="predict row 3")], tools=[PREDICT])
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("predict", {"row": 3})]


async def test_chat_tool_fallback_uses_constrained_json_and_reads_the_choice():
    backend = FakeBackend(default='{"tool": "predict", "arguments": {"row": 7}}', native_tools=False)
    llm = LLM(backend)
    reply = await llm.chat([Message(role="user", content="what about row 7?")], tools=[PREDICT])
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("predict", {"row": 7})]
    sent = backend.requests[0]
    assert sent.tools is None
    assert {"const": "predict"} in [o["properties"]["tool"] for o in sent.json_schema["anyOf"]]
    assert "predict" in sent.messages[0].content and sent.messages[0].role == "system"


async def test_chat_tool_fallback_plain_answer_and_tool_results_as_data():
    backend = FakeBackend(default='{"tool": "answer", "answer": "It predicts spam."}', native_tools=False)
    llm = LLM(backend)
    history = [
        Message(role="user", content="what about row 7?"),
        Message(role="assistant", tool_calls=[tool_call_reply("predict", row=7).tool_calls[0]]),
        Message(role="tool", name="predict", tool_call_id="call_predict", content='{"label": "spam"}'),
    ]
    reply = await llm.chat(history, tools=[PREDICT])
    assert reply.text == "It predicts spam." and reply.tool_calls == []
    roles = [m.role for m in backend.requests[0].messages]
    assert "tool" not in roles
    assert '{"label": "spam"}' in backend.requests[0].messages[-1].content


async def test_score_is_batched_deterministic_and_cached():
    backend = FakeBackend()
    llm = LLM(backend, cache=ResponseCache())
    requests = [
        ScoreRequest(prompt="The capital of France is", continuations=[" Paris", " a banana"]),
        ScoreRequest(prompt="Two plus two is", continuations=[" four"]),
    ]
    first = await llm.score(requests)
    assert len(backend.score_batches) == 1 and len(backend.score_batches[0]) == 2
    expected = default_token_logprob("is", "a") + default_token_logprob("a", "banana")
    assert first[0].logprobs[1] == pytest.approx(expected)
    assert first[0].token_counts == [1, 2]
    again = await llm.score(requests)
    assert [s.logprobs for s in again] == [s.logprobs for s in first]
    assert len(backend.score_batches) == 1


def test_score_request_validation():
    with pytest.raises(ValueError):
        ScoreRequest(prompt="x", continuations=[])
    with pytest.raises(ValueError):
        ScoreRequest(prompt="x", continuations=[""])


def test_generation_request_needs_exactly_one_input():
    with pytest.raises(ValueError, match="exactly one"):
        GenerationRequest(prompt="x", messages=[Message(role="user", content="y")])
    with pytest.raises(ValueError, match="exactly one"):
        GenerationRequest()
    with pytest.raises(ValueError, match="tools need chat"):
        GenerationRequest(prompt="x", tools=[PREDICT])


async def test_track_usage_collects_concurrent_work_and_nests():
    llm = LLM(FakeBackend(default="a b", delay_s=0.01))
    with track_usage() as outer:
        with track_usage() as inner:
            await asyncio.gather(llm.generate([ask("one")]), llm.generate([ask("two")]))
        await llm.score([ScoreRequest(prompt="p", continuations=[" q"])])
    assert inner.usage.calls == 2 and inner.usage.completion_tokens == 4
    assert outer.usage.calls == 3
    await llm.generate([ask("three")])
    assert outer.usage.calls == 3, "work after the block is not charged to it"


async def test_settings_switch_the_backend(monkeypatch, tmp_path):
    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "fake")
    backend = make_backend(Settings())
    assert isinstance(backend, FakeBackend)
    monkeypatch.delenv("XPLAIN_LLM_BACKEND")
    config = tmp_path / "xplain.toml"
    config.write_text('llm_backend = "openai"\nllm_base_url = "http://127.0.0.1:1/v1"\n')
    monkeypatch.setenv("XPLAIN_CONFIG", str(config))
    settings = Settings()
    assert settings.llm_backend == "openai" and settings.llm_base_url == "http://127.0.0.1:1/v1"
    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "fake")
    assert Settings().llm_backend == "fake", "environment variables win over the file"


def test_bad_settings_are_rejected_with_the_field_name(monkeypatch):
    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "gpt-on-a-toaster")
    with pytest.raises(ValueError, match="llm_backend"):
        Settings()


async def test_make_llm_honours_cache_settings(tmp_path):
    llm = make_llm(Settings(llm_backend="fake", cache_path=tmp_path / "c.sqlite"))
    await llm.generate([ask("hello")])
    assert (tmp_path / "c.sqlite").exists() and len(llm.cache) == 1
    assert make_llm(Settings(llm_backend="fake", cache_enabled=False)).cache is None


async def test_required_tool_choice_leaves_no_answer_option_in_the_fallback():
    backend = FakeBackend(default='{"tool": "predict", "arguments": {"row": 1}}', native_tools=False)
    reply = await LLM(backend).chat([Message(role="user", content="row 1?")], tools=[PREDICT], tool_choice="required")
    assert reply.tool_calls[0].name == "predict"
    tools_offered = [o["properties"]["tool"]["const"] for o in backend.requests[0].json_schema["anyOf"]]
    assert tools_offered == ["predict"]


class Other(BaseModel):
    word: str = Field(max_length=10)


async def test_structured_takes_one_schema_per_request():
    backend = FakeBackend(rules=[(r"verdict", json.dumps({"label": "a", "confidence": 0.1, "reasons": []})),
                                 (r"word", '{"word": "hi"}')])  # fmt: skip
    first, second = await LLM(backend).structured([ask("verdict"), ask("word")], [Verdict, Other])
    assert isinstance(first.value, Verdict) and second.value == Other(word="hi")
    assert [r.json_schema for r in backend.requests] == [Verdict.model_json_schema(), Other.model_json_schema()]
    with pytest.raises(ValueError, match="one per request"):
        await LLM(backend).structured([ask("verdict")], [Verdict, Other])
