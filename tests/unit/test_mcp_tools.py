"""The MCP tools, through the SDK's client connected in-process: generated from the catalog, REST's errors as tool
errors an assistant can read, and the LLM methods on the scripted fake backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from xplain.data.demo import demo_reference
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.mcp.server import build_server
from xplain.methods.catalog import catalog, get_method
from xplain.server.deps import SYNC_ROWS
from xplain.server.schemas import method_request_model
from xplain.settings import Settings


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(token_logprob=lambda previous, token: -0.1 if token == "good" else -3.0)


@pytest.fixture
def server(tmp_path: Path, backend: FakeBackend) -> Client:
    """A client not yet connected: each test enters it in its own task (anyio's scopes stay in the task that
    opened them, which an async fixture's teardown is not)."""
    settings = Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    return Client(build_server(settings, llm=LLM(backend)))


def test_each_method_tool_takes_the_methods_own_options():
    for method in catalog().values():
        schema = method_request_model(method).model_json_schema()
        options = schema["properties"]["options"]
        assert options["$ref"] == f"#/$defs/{method.options.__name__}"
        assert (
            schema["$defs"][method.options.__name__]["properties"] == method.options.model_json_schema()["properties"]
        )
        assert ("model" in schema.get("required", [])) == method.needs_model
        assert ("options" in schema.get("required", [])) == any(
            f.is_required() for f in method.options.model_fields.values()
        )
        assert schema["additionalProperties"] is False


async def test_tools_are_the_catalog_the_listings_and_registration(server):
    async with server as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {"list_models", "list_methods", "register_model", *catalog()}, "no second registry"
        assert {"what_if", "describe_data", "similar_rows", "model_score", "occlusion"} <= set(tools)
        assert tools["sasc"].description == get_method("sasc").description
        methods = await client.call_tool("list_methods", {})
        assert [m["name"] for m in methods.structured_content["methods"]] == list(catalog())


async def test_wrong_requests_come_back_as_tool_errors_that_say_what_to_fix(server):
    async with server as client:
        unknown_option = await client.call_tool(
            "lime", {"model": "breast_cancer", "rows": [[1.0] * 30], "options": {"x": 1}}
        )
        assert unknown_option.is_error and "unknown option(s) x for lime" in unknown_option.content[0].text

        wrong_kind = await client.call_tool("sasc", {"model": "breast_cancer", "rows": []})
        assert wrong_kind.is_error and "sasc works on module models" in wrong_kind.content[0].text

        too_many = await client.call_tool("predict", {"model": "reviews", "rows": ["fine"] * (SYNC_ROWS + 1)})
        assert too_many.is_error and f"at most {SYNC_ROWS}" in too_many.content[0].text

        extra = await client.call_tool("predict", {"model": "reviews", "rows": ["fine"], "limit": 3})
        assert extra.is_error and "limit: unknown key 'limit'; allowed keys: model, options, rows" in extra.content[0].text

        no_such_tool = await client.call_tool("explain_everything", {})
        assert no_such_tool.is_error and "available: list_models" in no_such_tool.content[0].text


async def test_a_bad_row_fails_alone(server):
    async with server as client:
        answer = await client.call_tool("predict", {"model": "breast_cancer", "rows": [[1.0] * 30, [1.0, 2.0]]})
        assert not answer.is_error
        first, second = answer.structured_content["results"]
        assert first["ok"] and first["result"]["prediction"]["label"] in {"malignant", "benign"}
        assert not second["ok"] and "30" in second["error"]
        assert answer.content[0].text.startswith("predict on breast_cancer: 1 of 2 result(s) ok.")


async def test_an_llm_method_answers_from_the_configured_llm(server, backend):
    async with server as client:
        answer = await client.call_tool(
            "zero_shot",
            {
                "model": "reviews",
                "rows": ["dull and lifeless"],
                "options": {"label_names": {"negative": "bad", "positive": "good"}},
            },
        )
        assert not answer.is_error, answer.content
        [outcome] = answer.structured_content["results"]
        assert outcome["ok"] and outcome["result"]["llm_label"] == "positive", "the scripted LLM always prefers ' good'"
        assert len(backend.score_batches) == 1


async def test_probes_question_a_demo_model_about_its_reference_rows(server):
    reference = demo_reference("breast_cancer")
    async with server as client:
        edit = {"changes": [{"feature": "worst radius", "value": 30.0}]}
        row = reference.rows[0].tolist()
        answer = await client.call_tool("what_if", {"model": "breast_cancer", "rows": [row], "options": edit})
        assert not answer.is_error, answer.content
        [outcome] = answer.structured_content["results"]
        result = outcome["result"]
        assert result["changes"]["worst radius"] == {"old": round(float(reference.rows[0][20]), 4), "new": 30.0}
        assert result["label_changed"] == (result["before"]["predicted"] != result["after"]["predicted"])

        overview = await client.call_tool("describe_data", {"model": "reviews", "rows": []})
        assert not overview.is_error, overview.content
        [outcome] = overview.structured_content["results"]
        assert outcome["result"]["overview"]["rows"] == len(demo_reference("reviews").rows)

        missing = {"replacements": [{"old": "awful", "new": "great"}]}
        wrong = await client.call_tool("what_if", {"model": "reviews", "rows": ["a fine film"], "options": missing})
        [outcome] = wrong.structured_content["results"]
        assert not outcome["ok"] and "'awful' does not occur in the text ('a fine film')" in outcome["error"]  # which text
