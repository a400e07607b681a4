"""`xplain mcp` as an assistant meets it: the SDK's own client spawns it over stdio, or reaches it over HTTP, and its
answers are the REST API's for the same request."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import httpx2
import pytest
from fastapi.testclient import TestClient
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from xplain.data.demo import demo_reference
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.mcp.server import build_server, http_app
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def requests() -> dict[str, dict]:
    """Three methods that need no LLM, on the tabular and the text demo model."""
    table = demo_reference("breast_cancer").rows[:2].tolist()
    reviews = list(demo_reference("reviews").rows[:1])
    return {
        "predict": {"model": "breast_cancer", "rows": table},
        "kernelshap": {"model": "breast_cancer", "rows": table[:1], "options": {"n_samples": 64, "k": 3}},
        "lime": {"model": "reviews", "rows": reviews, "options": {"n_samples": 50, "k": 3}},
    }


def timeless(value):
    """A response without its wall times (`cost.seconds`), the one thing two runs of the same request differ in."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


@pytest.fixture
def rest(tmp_path: Path):
    settings = Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'rest.sqlite'}")
    app = create_app(settings, llm=LLM(FakeBackend(default="ok")), register_demo_models=True)
    with TestClient(app) as client:
        yield client


async def test_stdio_server_lists_the_catalog_and_answers_as_rest_does(tmp_path: Path, rest: TestClient):
    env = {
        **os.environ,
        "XPLAIN_CONFIG": str(tmp_path / "absent.toml"),
        "XPLAIN_LLM_BACKEND": "fake",
        "XPLAIN_DATABASE_URL": f"sqlite:///{tmp_path / 'mcp.sqlite'}",
    }
    command = StdioServerParameters(command=sys.executable, args=["-m", "xplain.cli", "mcp"], env=env, cwd=str(ROOT))
    async with Client(command, read_timeout_seconds=120) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        catalog = {m["name"] for m in rest.get("/methods").json()}
        assert {"list_models", "list_methods", "what_if"} | catalog <= set(tools)
        lime_options = tools["lime"].input_schema["properties"]["options"]
        assert lime_options["$ref"].endswith("BaselineOptions")
        assert "n_samples" in tools["lime"].input_schema["$defs"]["BaselineOptions"]["properties"]
        assert tools["lime"].input_schema["required"] == ["model", "rows"]

        models = await client.call_tool("list_models", {})
        assert not models.is_error
        listed = {m["name"]: m for m in models.structured_content["models"]}
        for info in rest.get("/models").json():
            assert {k: v for k, v in listed[info["name"]].items() if k != "queries"} == {
                k: v for k, v in info.items() if k != "queries"
            }
        assert "breast_cancer: tabular" in models.content[0].text

        for name, body in requests().items():
            answer = await client.call_tool(name, body)
            assert not answer.is_error, answer.content
            expected = rest.post(f"/methods/{name}", json=body).json()
            assert timeless(answer.structured_content) == timeless(expected)
            assert answer.structured_content["results"][0]["result"]["cost"]["seconds"] > 0
            assert all(outcome["ok"] for outcome in expected["results"])
            assert answer.content[0].text.startswith(f"{name} on {body['model']}: {len(body['rows'])} of")


async def test_http_server_needs_the_api_key_and_keeps_the_body_limit(tmp_path: Path, rest: TestClient):
    settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{tmp_path / 'mcp.sqlite'}",
        api_keys=["s3cret"],
        max_body_bytes=4096,
    )
    server = build_server(settings, llm=LLM(FakeBackend(default="ok")))
    app = http_app(server, settings, host="127.0.0.1")
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            refused = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert refused.status_code == 401 and "API key" in refused.json()["error"]
            wrong = await http.post("/mcp", json={}, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            arguments = {"model": "reviews", "rows": ["word " * 1000]}
            big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "predict", "arguments": arguments}}
            headers = {"X-API-Key": "s3cret", "Accept": "application/json, text/event-stream"}
            assert (await http.post("/mcp", json=big, headers=headers)).status_code == 413

        keyed = httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret"}, timeout=60)
        async with keyed, Client(streamable_http_client(f"{url}/mcp", http_client=keyed)) as client:
            body = requests()["predict"]
            answer = await client.call_tool("predict", body)
            assert timeless(answer.structured_content) == timeless(rest.post("/methods/predict", json=body).json())
            unknown = await client.call_tool("predict", {"model": "nope", "rows": [[1.0]]})
            assert unknown.is_error and "no model named 'nope'" in unknown.content[0].text


async def test_http_tools_act_as_the_calling_key(tmp_path: Path):
    """Over HTTP the tools see the request's key: a model one key registers is its own (another key's tools do not
    list or find it), as over REST."""
    settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{tmp_path / 'mcp.sqlite'}",
        trusted_import_prefixes=["tests.unit.blackbox_fixtures"],
        api_keys=["key-a", "key-b"],
    )
    server = build_server(settings, llm=LLM(FakeBackend(default="ok")))
    source = {"import_path": "tests.unit.blackbox_fixtures:keyword_model"}
    registration = {"name": "mine", "kind": "text", "source": source}
    with serve_in_thread(http_app(server, settings, host="127.0.0.1")) as url:
        as_a = httpx2.AsyncClient(headers={"X-API-Key": "key-a"}, timeout=60)
        async with as_a, Client(streamable_http_client(f"{url}/mcp", http_client=as_a)) as client:
            registered = await client.call_tool("register_model", registration)
            assert not registered.is_error, registered.content
            listed = (await client.call_tool("list_models", {})).structured_content["models"]
            assert "mine" in [m["name"] for m in listed]
            assert not (await client.call_tool("predict", {"model": "mine", "rows": ["great"]})).is_error
        as_b = httpx2.AsyncClient(headers={"X-API-Key": "key-b"}, timeout=60)
        async with as_b, Client(streamable_http_client(f"{url}/mcp", http_client=as_b)) as client:
            listed = (await client.call_tool("list_models", {})).structured_content["models"]
            assert "mine" not in [m["name"] for m in listed] and "reviews" in [m["name"] for m in listed]
            refused = await client.call_tool("predict", {"model": "mine", "rows": ["great"]})
            assert refused.is_error and "no model named 'mine'" in refused.content[0].text
