"""The `openai` backend against a real local socket: request shapes, concurrency, retries, errors, vLLM extensions."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from xplain.llm import (
    GenerationRequest,
    LLMModelNotFoundError,
    LLMUnavailableError,
    Message,
    ScoreRequest,
    ToolSpec,
    make_llm,
)
from xplain.settings import Settings
from xplain.testing.openai_stub import (
    BOS,
    StubConfig,
    StubTokenizer,
    run_stub,
    stub_encode,
    stub_token_logprob,
    stub_tokenize,
)
from xplain.testing.serve import free_port


class Verdict(BaseModel):
    label: str = Field(max_length=20)
    reasons: list[str] = Field(min_length=1, max_length=3)


def client(url: str, **settings):
    defaults = dict(llm_backend="openai", llm_base_url=url, cache_enabled=False, llm_retry_base_delay_s=0.01)
    return make_llm(Settings(**(defaults | settings)))


def expected_logprob(prompt: str, continuation: str) -> float:
    """What the stub assigns to the continuation's tokens, each given the token before it."""
    tokens = stub_tokenize(prompt + continuation)
    n_prompt = len(stub_tokenize(prompt))
    return sum(stub_token_logprob(tokens[i - 1], tokens[i]) for i in range(n_prompt, len(tokens)))


async def test_generate_resolves_the_model_and_sends_parameters():
    with run_stub(StubConfig(reply="hello there")) as (url, stub):
        llm = client(url)
        [reply] = await llm.generate([GenerationRequest.user("hi", max_tokens=7, stop=["\n"])])
        await llm.aclose()
    assert reply.text == "hello there"
    [sent] = stub.generation_requests
    assert sent.body["model"] == "stub-model"
    assert sent.body["max_tokens"] == 7 and sent.body["stop"] == ["\n"] and sent.body["temperature"] == 0.0


async def test_a_batch_goes_out_concurrently_up_to_the_limit():
    with run_stub(StubConfig(delay_s=0.05)) as (url, stub):
        llm = client(url, llm_max_concurrency=4)
        replies = await llm.generate([GenerationRequest.user(f"q{i}") for i in range(24)])
        await llm.aclose()
    assert len(replies) == 24
    assert stub.max_seen_in_flight == 4


async def test_transient_failures_are_retried():
    with run_stub(StubConfig(fail_first=[503, 429, 500])) as (url, stub):
        llm = client(url)
        [reply] = await llm.generate([GenerationRequest.user("hi")])
        await llm.aclose()
    assert reply.text == "stub reply"
    assert len(stub.generation_requests) == 4


async def test_retries_give_up_with_a_clear_error():
    with run_stub(StubConfig(fail_first=[503] * 10)) as (url, stub):
        llm = client(url, llm_max_retries=2)
        with pytest.raises(LLMUnavailableError, match="after 3 tries"):
            await llm.generate([GenerationRequest.user("hi")])
        await llm.aclose()
    assert len(stub.generation_requests) == 3


async def test_unreachable_server_is_a_clear_error():
    llm = client(f"http://127.0.0.1:{free_port()}/v1", llm_max_retries=1)
    with pytest.raises(LLMUnavailableError, match="is the server running"):
        await llm.generate([GenerationRequest.user("hi")])
    await llm.aclose()


async def test_unknown_model_names_the_ones_served_and_sends_nothing():
    with run_stub(StubConfig(models=["alpha", "beta"])) as (url, stub):
        llm = client(url, llm_model="gamma")
        with pytest.raises(LLMModelNotFoundError, match="alpha, beta"):
            await llm.generate([GenerationRequest.user("hi")])
        await llm.aclose()
    assert stub.generation_requests == []


async def test_structured_uses_response_format_json_schema():
    with run_stub() as (url, stub):
        llm = client(url)
        [result] = await llm.structured([GenerationRequest.user("classify")], Verdict)
        await llm.aclose()
    assert isinstance(result.value, Verdict) and len(result.value.reasons) >= 1
    body = stub.generation_requests[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == Verdict.model_json_schema()


async def test_structured_falls_back_to_json_object_once_refused():
    with run_stub(StubConfig(reject_json_schema=True)) as (url, stub):
        llm = client(url)
        [first] = await llm.structured([GenerationRequest.user("one")], Verdict)
        [second] = await llm.structured([GenerationRequest.user("two")], Verdict)
        await llm.aclose()
    assert isinstance(first.value, Verdict) and isinstance(second.value, Verdict)
    formats = [r.body["response_format"]["type"] for r in stub.generation_requests]
    assert formats == ["json_schema", "json_object", "json_object"], "the refusal is remembered"
    fallback = stub.generation_requests[1].body
    assert fallback["messages"][0]["role"] == "system" and '"reasons"' in fallback["messages"][0]["content"]


async def test_vllm_server_gets_structured_outputs():
    with run_stub(StubConfig(owned_by="vllm")) as (url, stub):
        llm = client(url)
        [result] = await llm.structured([GenerationRequest.user("classify")], Verdict)
        await llm.aclose()
    assert isinstance(result.value, Verdict)
    body = stub.generation_requests[0].body
    assert body["structured_outputs"] == {"json": Verdict.model_json_schema()}
    assert "response_format" not in body


async def test_echo_scoring_reads_the_continuation_tokens():
    prompt, continuations = "The capital of France is", [" Paris", " a purple banana"]
    with run_stub() as (url, stub):
        llm = client(url)
        [scores] = await llm.score([ScoreRequest(prompt=prompt, continuations=continuations)])
        await llm.aclose()
    assert scores.token_counts == [1, 3]
    assert scores.logprobs == pytest.approx([expected_logprob(prompt, c) for c in continuations])
    assert scores.scoring == "echo"  # " a purple banana" is not one token: echoed back as prompt
    echoed = [r.body for r in stub.generation_requests if r.body.get("echo")]
    assert len(echoed) == 2 and all(b["prompt"].startswith(prompt) for b in echoed)


async def test_vllm_scoring_uses_token_ids_and_prompt_logprobs():
    prompt, continuations = "Two plus two is", [" four", " seventeen apples"]
    with run_stub(StubConfig(owned_by="vllm")) as (url, stub):
        llm = client(url)
        [scores] = await llm.score([ScoreRequest(prompt=prompt, continuations=continuations)])
        await llm.aclose()
    assert scores.logprobs == pytest.approx([expected_logprob(prompt, c) for c in continuations])
    assert scores.token_counts == [1, 2]
    completions = [r.body for r in stub.generation_requests]
    assert all(isinstance(b["prompt"], list) and b["prompt_logprobs"] == 0 for b in completions)
    assert any(r.path == "/tokenize" for r in stub.requests)


async def test_native_tool_calls_round_trip():
    tool = ToolSpec(
        name="predict",
        description="Predict a row.",
        parameters={"type": "object", "properties": {"row": {"type": "integer", "minimum": 2}}, "required": ["row"]},
    )
    with run_stub() as (url, stub):
        llm = client(url)
        reply = await llm.chat([Message(role="user", content="row?")], tools=[tool])
        follow_up = [
            Message(role="user", content="row?"),
            reply.message,
            Message(role="tool", tool_call_id=reply.tool_calls[0].id, name="predict", content='{"label": 1}'),
        ]
        await llm.chat(follow_up)
        await llm.aclose()
    assert reply.tool_calls[0].name == "predict" and reply.tool_calls[0].arguments["row"] >= 2
    first, second = (r.body for r in stub.generation_requests)
    assert first["tools"][0]["function"]["name"] == "predict" and first["tool_choice"] == "auto"
    sent_call = second["messages"][1]["tool_calls"][0]
    assert sent_call["function"]["name"] == "predict" and json.loads(sent_call["function"]["arguments"])["row"] >= 2
    assert second["messages"][2] == {
        "role": "tool",
        "content": '{"label": 1}',
        "tool_call_id": reply.tool_calls[0].id,
        "name": "predict",
    }


# -- vLLM as its releases behave (the stub plays them; see xplain/testing/openai_stub.py) -------------------------


@pytest.mark.parametrize(("version", "constrained"), [("0.10.2", False), ("0.11.0", True), ("0.12.1", True)])
async def test_vllm_release_decides_whether_json_is_constrained(version, constrained):
    with run_stub(StubConfig(owned_by="vllm", version=version)) as (url, stub):
        llm = client(url)
        line = await llm.check()
        [result] = await llm.structured([GenerationRequest.user("classify")], Verdict)
        await llm.aclose()
    assert f"vLLM {version}" in line
    assert llm.backend.constrains_json is constrained
    assert isinstance(result.value, Verdict)
    body = stub.generation_requests[-1].body
    if constrained:
        assert body["structured_outputs"] == {"json": Verdict.model_json_schema()}
    else:
        assert "not constrained" in line and "vllm>=0.11" in line
        assert "structured_outputs" not in body and body["response_format"]["type"] == "json_schema"


async def test_a_vllm_server_without_a_version_is_not_called_constrained():
    with run_stub(StubConfig(owned_by="vllm")) as (url, stub):
        stub.app.router.routes = [r for r in stub.app.router.routes if getattr(r, "path", "") != "/version"]
        llm = client(url)
        line = await llm.check()
        await llm.aclose()
    assert "unknown release" in line and llm.backend.constrains_json is False


async def test_no_null_max_tokens_a_request_without_a_limit_gets_the_rest_of_the_context():
    reply = " ".join(f"w{i}" for i in range(40))
    with run_stub(StubConfig(owned_by="vllm", reply=reply, max_model_len=512)) as (url, stub):
        backend = client(url).backend
        [completion, chat] = await backend.generate(
            [GenerationRequest(prompt="Write a long list:"), GenerationRequest.user("Write a long list.")]
        )
        await backend.aclose()
    assert completion.text == reply and chat.text == reply, "vLLM would stop a null max_tokens at 16 tokens"
    sent = {r.path: r.body for r in stub.generation_requests}
    assert sent["/v1/completions"]["max_tokens"] == 512 - len(stub_tokenize("Write a long list:"))
    assert "max_tokens" not in sent["/v1/chat/completions"]


PREDICT = ToolSpec(
    name="predict",
    description="Predict a row.",
    parameters={"type": "object", "properties": {"row": {"type": "integer", "minimum": 2}}, "required": ["row"]},
)


async def test_a_vllm_server_without_auto_tool_choice_gets_tools_through_constrained_json():
    with run_stub(StubConfig(owned_by="vllm")) as (url, stub):
        llm = client(url)
        first = await llm.chat([Message(role="user", content="row?")], tools=[PREDICT])
        second = await llm.chat([Message(role="user", content="and now?")], tools=[PREDICT])
        await llm.aclose()
    assert first.tool_calls[0].name == second.tool_calls[0].name == "predict"
    assert first.tool_calls[0].arguments["row"] >= 2
    assert llm.backend.native_tools is False
    refused, fallback, remembered = (r.body for r in stub.generation_requests)
    assert refused["tool_choice"] == "auto" and refused["tools"]
    for body in (fallback, remembered):
        assert "tools" not in body and "anyOf" in body["structured_outputs"]["json"]


async def test_check_reports_release_and_tool_calling_mode():
    with run_stub(StubConfig(owned_by="vllm", version="0.11.1")) as (url, _):
        llm = client(url)
        fallback = await llm.check()
        await llm.aclose()
    assert "vLLM 0.11.1" in fallback and "--enable-auto-tool-choice --tool-call-parser" in fallback
    assert llm.backend.native_tools is False and llm.backend.constrains_json is True
    with run_stub(StubConfig(owned_by="vllm", enable_auto_tool_choice=True)) as (url, stub):
        llm = client(url)
        native = await llm.check()
        reply = await llm.chat([Message(role="user", content="row?")], tools=[PREDICT])
        await llm.aclose()
    assert "constrained JSON" not in native and llm.backend.native_tools is True
    assert reply.tool_calls[0].name == "predict" and stub.generation_requests[-1].body["tools"]


def sentencepiece_logprob(text: str, first: int) -> tuple[float, int]:
    """The stub's log-probability of the SentencePiece tokens of `text` from token `first` on (BOS is token 0)."""
    tokens = [BOS] + [token for token, _ in StubTokenizer("sentencepiece").tokens(text)]
    picked = range(first, len(tokens))
    return sum(stub_token_logprob(tokens[i - 1], tokens[i]) for i in picked), len(picked)


@pytest.mark.parametrize(
    ("prompt", "continuation", "first"),
    [
        ("The capital of France is", " Paris", 6),  # alone, " Paris" would be "▁" "▁Paris"
        ("The capital of France is", " a purple banana", 6),
        ("Answer: ", "yes", 2),  # the prompt's trailing "▁" merges into "▁yes"
        ("The cat", "s", 2),  # "▁cat" + "s" is one piece, "▁cats", which covers the continuation
    ],
)
async def test_vllm_scoring_tokenizes_prompt_and_continuation_together(prompt, continuation, first):
    with run_stub(StubConfig(owned_by="vllm", tokenizer="sentencepiece")) as (url, stub):
        llm = client(url)
        [scores] = await llm.score([ScoreRequest(prompt=prompt, continuations=[continuation])])
        await llm.aclose()
    expected, count = sentencepiece_logprob(prompt + continuation, first)
    assert scores.token_counts == [count]
    assert scores.logprobs == pytest.approx([expected])


async def test_vllm_scoring_sends_every_continuation_in_one_request_and_reports_the_prefill():
    prompt, continuations = "Two plus two is", [" four", " seventeen apples", " five"]
    with run_stub(StubConfig(owned_by="vllm")) as (url, stub):
        backend = client(url).backend
        [raw] = await backend.score([ScoreRequest(prompt=prompt, continuations=continuations)])
        await backend.aclose()
    [request] = stub.generation_requests
    assert request.body["prompt"] == [stub_encode(prompt + c) for c in continuations]
    assert raw.prompt_tokens == sum(len(stub_tokenize(prompt + c)) for c in continuations)


async def test_echo_scoring_counts_a_token_that_straddles_the_seam():
    with run_stub() as (url, _):
        llm = client(url)
        [scores] = await llm.score([ScoreRequest(prompt="Answer: ", continuations=["yes", "no way"])])
        await llm.aclose()
    assert scores.token_counts == [1, 2]
    no_way = stub_token_logprob("Answer:", " no") + stub_token_logprob(" no", " way")
    assert scores.logprobs == pytest.approx([stub_token_logprob("Answer:", " yes"), no_way])


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            StubConfig(owned_by="vllm", version="0.12.0"),
            ["vLLM 0.12.0", "constrained decoding: yes", "tool calling: fallback"],
        ),
        (
            StubConfig(owned_by="vllm", version="0.10.1", enable_auto_tool_choice=True),
            ["vLLM 0.10.1", "constrained decoding: no", "tool calling: native"],
        ),
    ],
)
def test_xplain_check_reports_release_constrained_decoding_and_tool_calling(
    fake_llm_env, monkeypatch, config, expected
):
    from typer.testing import CliRunner

    from xplain.cli import app
    from xplain.settings import get_settings

    with run_stub(config) as (url, _):
        monkeypatch.setenv("XPLAIN_LLM_BACKEND", "openai")
        monkeypatch.setenv("XPLAIN_LLM_BASE_URL", url)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["check"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    for text in expected:
        assert text in output


async def test_vllm_scoring_splits_many_continuations_under_the_servers_prompt_limit():
    continuations = [f" answer{i}" for i in range(70)]
    with run_stub(StubConfig(owned_by="vllm")) as (url, stub):
        llm = client(url)
        [scores] = await llm.score([ScoreRequest(prompt="Pick one:", continuations=continuations)])
        await llm.aclose()
    read_back = [r.body for r in stub.generation_requests if "prompt_logprobs" in r.body]  # none in the top 20
    assert sorted(len(body["prompt"]) for body in read_back) == [6, 64]
    assert scores.logprobs == pytest.approx([expected_logprob("Pick one:", c) for c in continuations])
