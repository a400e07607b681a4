"""The local OpenAI-compatible stub answers the shapes the official SDK (and vLLM clients) expect."""

from __future__ import annotations

import asyncio
import json
import time
from enum import Enum
from typing import Literal

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from xplain.testing.openai_stub import (
    StubConfig,
    run_stub,
    schema_instance,
    sentencepiece_encode,
    stub_decode,
    stub_encode,
    stub_token_logprob,
    stub_tokenize,
)


def _client(url: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=kwargs.pop("max_retries", 0), **kwargs)


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int = Field(ge=3, le=10)
    y: float = Field(gt=0.5)
    label: str = Field(min_length=4)


class Shape(BaseModel):
    name: Literal["square", "circle"]
    colour: Colour
    points: list[Point] = Field(min_length=2)
    origin: Point
    parent: Shape | None = None
    tags: dict[str, int] = {}
    scale: float | None = None


@pytest.fixture(scope="module")
def stub_server():
    with run_stub(StubConfig(models=["stub-model", "other-model"])) as (url, stub):
        yield url, stub


def test_models_are_listed_with_their_owner():
    with run_stub(StubConfig(models=["a", "b"], owned_by="vllm")) as (url, stub):
        models = _client(url).models.list()
        assert url.endswith("/v1")
        assert [m.id for m in models.data] == ["a", "b"]
        assert {m.owned_by for m in models.data} == {"vllm"}
        assert stub.requests[-1].path == "/v1/models" and stub.requests[-1].method == "GET"


def test_chat_reply_usage_and_recording(stub_server):
    url, stub = stub_server
    before = len(stub.requests)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there you"}]
    result = _client(url).chat.completions.create(model="stub-model", messages=messages, temperature=0.0)
    assert result.choices[0].message.content == "stub reply"
    assert result.choices[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (5, 2, 7)
    recorded = stub.requests[before:]
    assert len(recorded) == 1
    assert recorded[0].path == "/v1/chat/completions"
    assert recorded[0].body["messages"] == messages and recorded[0].body["temperature"] == 0.0
    assert recorded[0].headers["authorization"] == "Bearer x"
    assert abs(recorded[0].time - time.monotonic()) < 5


def test_chat_max_tokens_truncates_with_length_finish(stub_server):
    url, _ = stub_server
    result = _client(url).chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    assert result.choices[0].message.content == "stub"
    assert result.choices[0].finish_reason == "length"


def test_tool_call_parses_and_arguments_fit_the_schema(stub_server):
    url, _ = stub_server
    tools = [
        {"type": "function", "function": {"name": "draw", "parameters": Shape.model_json_schema()}},
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}},
    ]
    client = _client(url)
    messages = [{"role": "user", "content": "draw"}]
    result = client.chat.completions.create(model="stub-model", messages=messages, tools=tools)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id and call.function.name == "draw"
    shape = Shape.model_validate_json(call.function.arguments)
    assert len(shape.points) == 2

    named = client.chat.completions.create(
        model="stub-model",
        messages=messages,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "noop"}},
    )
    assert named.choices[0].message.tool_calls[0].function.name == "noop"
    assert json.loads(named.choices[0].message.tool_calls[0].function.arguments) == {}

    plain = client.chat.completions.create(model="stub-model", messages=messages, tools=tools, tool_choice="none")
    assert plain.choices[0].message.tool_calls is None
    assert plain.choices[0].message.content == "stub reply"


def test_structured_outputs_validate_against_pydantic_schema(stub_server):
    url, _ = stub_server
    client = _client(url)
    schema = Shape.model_json_schema()
    assert "$defs" in schema  # the nested models are referenced, not inlined
    messages = [{"role": "user", "content": "a shape"}]

    openai_style = client.chat.completions.create(
        model="stub-model",
        messages=messages,
        response_format={"type": "json_schema", "json_schema": {"name": "Shape", "schema": schema}},
    )
    shape = Shape.model_validate_json(openai_style.choices[0].message.content)
    assert shape.name == "square" and shape.colour is Colour.RED
    assert shape.parent is None  # an optional self-reference ends the recursion
    assert len(shape.points) == 2 and all(p.x >= 3 and p.y > 0.5 and len(p.label) >= 4 for p in shape.points)

    json_object_with_schema = client.chat.completions.create(
        model="stub-model", messages=messages, response_format={"type": "json_object", "schema": schema}
    )
    Shape.model_validate_json(json_object_with_schema.choices[0].message.content)

    json_object = client.chat.completions.create(
        model="stub-model", messages=messages, response_format={"type": "json_object"}
    )
    assert json.loads(json_object.choices[0].message.content) == {}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 3, "maxLength": 5},
        {"type": "string", "format": "date-time"},
        {"type": "integer", "minimum": 7, "maximum": 9},
        {"type": "integer", "maximum": -4},
        {"type": "integer", "exclusiveMinimum": 2, "multipleOf": 5},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
        {"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "minItems": 2},
        {"const": "fixed"},
        {"allOf": [{"$ref": "#/$defs/A"}, {"required": ["b"], "properties": {"b": {"type": "null"}}}],
         "$defs": {"A": {"type": "object", "required": ["a"], "properties": {"a": {"enum": [2, 3]}}}}},
        {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2},
    ],
)
def test_schema_instance_is_valid(schema):
    value = schema_instance(schema)
    jsonschema.validate(value, schema)


def test_schema_instance_ends_recursion_at_optional_self_reference():
    tree = {
        "type": "object",
        "required": ["value", "child"],
        "properties": {"value": {"type": "integer"}, "child": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
    }
    assert schema_instance(tree) == {"value": 0, "child": None}


def test_schema_instance_values_are_minimal():
    assert schema_instance({"type": "string", "minLength": 3}) == "xxx"
    assert schema_instance({"type": "integer", "minimum": 7}) == 7
    assert schema_instance({"type": "array", "items": {"type": "string"}}) == []
    assert schema_instance({"anyOf": [{"type": "boolean"}, {"type": "null"}]}) is False
    assert schema_instance({"enum": ["b", "a"]}) == "b"


def test_unknown_model_is_a_404(stub_server):
    url, _ = stub_server
    with pytest.raises(openai.NotFoundError) as raised:
        _client(url).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 404
    response = httpx.post(f"{url}/completions", json={"model": "nope", "prompt": "hi"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["message"] == "The model `nope` does not exist."
    assert error["type"] == "NotFoundError" and error["code"] == 404


def test_fail_first_returns_codes_in_order_then_succeeds():
    with run_stub(StubConfig(fail_first=[503, 429, 500])) as (url, stub):
        body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client() as client:
            responses = [client.post(f"{url}/chat/completions", json=body) for _ in range(4)]
        assert [r.status_code for r in responses] == [503, 429, 500, 200]
        assert responses[1].headers["retry-after"] == "0"
        assert "retry-after" not in responses[0].headers
        assert responses[0].json()["error"]["code"] == 503
        assert responses[0].json()["error"]["type"] == "ServiceUnavailableError"
        assert responses[3].json()["choices"][0]["message"]["content"] == "stub reply"
        assert len(stub.generation_requests) == 4

    with run_stub(StubConfig(fail_first=[429])) as (url, stub):  # the SDK's retry gets through
        result = _client(url, max_retries=1).completions.create(model="stub-model", prompt="hi")
        assert result.choices[0].text == "stub reply"
        assert len(stub.generation_requests) == 2


def test_reject_json_schema_gives_400_but_json_object_works():
    with run_stub(StubConfig(reject_json_schema=True)) as (url, _):
        client = _client(url)
        messages = [{"role": "user", "content": "hi"}]
        schema = Point.model_json_schema()
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(
                model="stub-model",
                messages=messages,
                response_format={"type": "json_schema", "json_schema": {"name": "Point", "schema": schema}},
            )
        assert raised.value.status_code == 400
        assert "response_format" in raised.value.message
        fallback = client.chat.completions.create(
            model="stub-model", messages=messages, response_format={"type": "json_object", "schema": schema}
        )
        Point.model_validate_json(fallback.choices[0].message.content)


def test_echo_logprobs_cover_the_prompt_with_consistent_offsets(stub_server):
    url, _ = stub_server
    prompt = "The quick  brown\nfox jumps"
    client = _client(url)
    scored = client.completions.create(model="stub-model", prompt=prompt, echo=True, logprobs=1, max_tokens=0)
    choice = scored.choices[0]
    assert choice.text == prompt
    tokens = stub_tokenize(prompt)
    lp = choice.logprobs
    assert lp.tokens == tokens == ["The", " quick", "  brown", "\nfox", " jumps"]
    for token, offset in zip(lp.tokens, lp.text_offset):
        assert choice.text[offset : offset + len(token)] == token
    expected = [None] + [stub_token_logprob(prev, tok) for prev, tok in zip(tokens, tokens[1:])]
    assert lp.token_logprobs == expected
    assert all(-6 <= v <= -0.1 for v in expected[1:])
    assert lp.top_logprobs[0] is None and lp.top_logprobs[1] == {tokens[1]: expected[1]}

    generated = client.completions.create(model="stub-model", prompt=prompt, echo=True, logprobs=0)
    choice = generated.choices[0]
    assert choice.text == prompt + "stub reply"
    assert choice.logprobs.tokens == tokens + ["stub", " reply"]
    assert choice.logprobs.token_logprobs[-2] == stub_token_logprob(tokens[-1], "stub")
    for token, offset in zip(choice.logprobs.tokens, choice.logprobs.text_offset):
        assert choice.text[offset : offset + len(token)] == token
    assert generated.usage.prompt_tokens == 5 and generated.usage.completion_tokens == 2


def test_prompt_logprobs_for_token_ids(stub_server):
    url, _ = stub_server
    text = "one two three four"
    ids = stub_encode(text)
    response = httpx.post(
        f"{url}/completions",
        json={"model": "stub-model", "prompt": ids, "max_tokens": 1, "prompt_logprobs": 1},
    )
    assert response.status_code == 200
    choice = response.json()["choices"][0]
    entries = choice["prompt_logprobs"]
    tokens = stub_tokenize(text)
    assert len(entries) == len(ids) and entries[0] is None
    for entry, token_id, prev, tok in zip(entries[1:], ids[1:], tokens, tokens[1:]):
        assert entry == {str(token_id): {"logprob": stub_token_logprob(prev, tok), "rank": None, "decoded_token": tok}}
    total = sum(next(iter(e.values()))["logprob"] for e in entries[1:])
    assert total == pytest.approx(sum(stub_token_logprob(p, t) for p, t in zip(tokens, tokens[1:])))
    assert choice["text"] == "stub"


def test_custom_logprob_function():
    with run_stub(token_logprob=lambda prev, tok: -float(len(tok))) as (url, _):
        result = _client(url).completions.create(
            model="stub-model", prompt="a bb ccc", echo=True, logprobs=0, max_tokens=0
        )
        assert result.choices[0].logprobs.token_logprobs == [None, -3.0, -4.0]


def test_tokenize_round_trip(stub_server):
    url, _ = stub_server
    root = url.removesuffix("/v1")
    text = "Hello,  world! A short\ttext"
    tokenized = httpx.post(
        f"{root}/tokenize", json={"model": "stub-model", "prompt": text, "add_special_tokens": True}
    ).json()
    assert tokenized["tokens"] == stub_encode(text)
    assert tokenized["count"] == len(stub_tokenize(text)) == 5
    assert tokenized["max_model_len"] == 2048
    detokenized = httpx.post(f"{root}/detokenize", json={"model": "stub-model", "tokens": tokenized["tokens"]})
    assert detokenized.json()["prompt"] == text == stub_decode(tokenized["tokens"])
    assert httpx.post(f"{url}/tokenize", json={"prompt": text}).status_code == 404  # root only, like vLLM


def test_n_above_one_is_rejected(stub_server):
    url, _ = stub_server
    with pytest.raises(openai.BadRequestError):
        _client(url).chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "x"}], n=2)


async def _concurrent_posts(url: str, count: int) -> list[int]:
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=count)) as client:
        responses = await asyncio.gather(*(client.post(f"{url}/chat/completions", json=body) for _ in range(count)))
    return [r.status_code for r in responses]


def test_max_in_flight_bounds_concurrency():
    with run_stub(StubConfig(delay_s=0.05, max_in_flight=4)) as (url, stub):
        start = time.perf_counter()
        statuses = asyncio.run(_concurrent_posts(url, 20))
        elapsed = time.perf_counter() - start
        assert statuses == [200] * 20
        assert stub.max_seen_in_flight == 4
        assert stub.in_flight == 0
        assert elapsed >= 20 / 4 * 0.05 * 0.95  # five waves of 50 ms

    with run_stub(StubConfig(delay_s=0.1)) as (url, stub):  # unbounded: requests overlap
        assert asyncio.run(_concurrent_posts(url, 20)) == [200] * 20
        assert stub.max_seen_in_flight > 4


# -- playing vLLM: what differs between vLLM releases, or from OpenAI -------------------------------------------


@pytest.mark.parametrize(
    ("owned_by", "version", "honoured"),
    [
        ("vllm", "0.10.2", {"guided_json"}),
        ("vllm", "0.11.1", {"structured_outputs", "guided_json"}),
        ("vllm", "0.12.0", {"structured_outputs"}),
        ("stub", "0.12.0", set()),
    ],
)
def test_vllm_json_fields_count_only_in_the_releases_that_have_them(owned_by, version, honoured):
    schema = Point.model_json_schema()
    fields = {"structured_outputs": {"json": schema}, "guided_json": schema}
    with run_stub(StubConfig(owned_by=owned_by, version=version)) as (url, _):
        client = _client(url)
        for name, value in fields.items():
            reply = client.chat.completions.create(
                model="stub-model", messages=[{"role": "user", "content": "a point"}], extra_body={name: value}
            )
            content = reply.choices[0].message.content
            if name in honoured:
                Point.model_validate_json(content)
            else:
                assert content == "stub reply", f"{name} should be ignored by {owned_by} {version}"


def test_version_is_served_only_when_playing_vllm():
    with run_stub(StubConfig(owned_by="vllm", version="0.11.2")) as (url, _):
        assert httpx.get(url.removesuffix("/v1") + "/version").json() == {"version": "0.11.2"}
    with run_stub() as (url, _):
        assert httpx.get(url.removesuffix("/v1") + "/version").status_code == 404


def test_null_max_tokens_is_16_on_completions_and_the_rest_of_the_context_on_chat():
    reply = " ".join(f"w{i}" for i in range(30))
    with run_stub(StubConfig(owned_by="vllm", reply=reply)) as (url, _):
        completion = httpx.post(f"{url}/completions", json={"prompt": "go", "max_tokens": None}).json()
        assert len(stub_tokenize(completion["choices"][0]["text"])) == 16
        assert completion["choices"][0]["finish_reason"] == "length"
        missing = httpx.post(f"{url}/completions", json={"prompt": "go"}).json()
        assert missing["choices"][0]["text"] == completion["choices"][0]["text"]
        chat = httpx.post(
            f"{url}/chat/completions", json={"messages": [{"role": "user", "content": "go"}], "max_tokens": None}
        ).json()
        assert chat["choices"][0]["message"]["content"] == reply


def test_auto_tool_choice_is_refused_unless_the_server_enables_it():
    tools = [{"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}]
    messages = [{"role": "user", "content": "call"}]
    with run_stub(StubConfig(owned_by="vllm")) as (url, _):
        client = _client(url)
        for choice in ({}, {"tool_choice": "auto"}):
            with pytest.raises(openai.BadRequestError, match="--enable-auto-tool-choice"):
                client.chat.completions.create(model="stub-model", messages=messages, tools=tools, **choice)
        required = client.chat.completions.create(
            model="stub-model", messages=messages, tools=tools, tool_choice="required"
        )
        assert required.choices[0].message.tool_calls[0].function.name == "noop"
    with run_stub(StubConfig(owned_by="vllm", enable_auto_tool_choice=True)) as (url, _):
        auto = _client(url).chat.completions.create(model="stub-model", messages=messages, tools=tools)
        assert auto.choices[0].message.tool_calls[0].function.name == "noop"


def test_sentencepiece_tokenizer_adds_bos_and_a_word_start_piece_on_its_own():
    with run_stub(StubConfig(owned_by="vllm", tokenizer="sentencepiece")) as (url, _):
        root = url.removesuffix("/v1")

        def tokenize(text, **extra):
            return httpx.post(f"{root}/tokenize", json={"prompt": text, **extra}).json()["tokens"]

        together = tokenize("The capital is Paris")
        prompt = tokenize("The capital is")
        alone = tokenize(" Paris", add_special_tokens=False)
        assert together[:-1] == prompt and together[0] == sentencepiece_encode("")[0]  # BOS by default
        assert tokenize("The capital is", add_special_tokens=False) == prompt[1:]
        assert len(alone) == 2 and alone[-1] == together[-1], "alone, the continuation gets an extra '▁' piece"
        assert tokenize("The cat")[-1] != tokenize("The cats")[-1], "pieces merge across the seam"
        decoded = httpx.post(f"{root}/detokenize", json={"tokens": together}).json()["prompt"]
        assert decoded == "<s> The capital is Paris"
        without_bos = httpx.post(f"{root}/detokenize", json={"tokens": together[1:]}).json()["prompt"]
        assert without_bos == "The capital is Paris"
