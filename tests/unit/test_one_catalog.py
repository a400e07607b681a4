"""One catalog, one service: a method added to the catalog in-process is on every front — REST (typed in the
OpenAPI document), a job, MCP, the CLI, Python, the agent's tools and the chat's planner — with no other code;
every front builds its context and maps its errors in one place."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from pydantic import BaseModel, ConfigDict, ValidationError
from typer.testing import CliRunner

import xplain
from xplain.agent import GroundedPlanner
from xplain.blackbox import QueryBudgetExceeded
from xplain.cli import app as cli
from xplain.data.demo import demo_reference
from xplain.errors import InvalidInput, NotFound, TooLarge, describe
from xplain.llm import LLM, make_llm
from xplain.llm.backends.fake import FakeBackend
from xplain.mcp.server import build_server
from xplain.methods.base import MethodResult
from xplain.methods.catalog import ChatForm, Method, catalog, get_method, register
from xplain.server.app import create_app
from xplain.service import method_context, open_spec
from xplain.settings import Settings
from xplain.tools import build_tools, demo_context

ROWS = [[float(v) for v in row] for row in demo_reference("synthetic").rows[:2]]


class ToyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = 1.0


class ToyTotal(MethodResult):
    method: str = "toy_total"
    total: float
    label: str


async def run_toy(ctx, rows: list, options: ToyOptions) -> list[ToyTotal]:
    labels = await ctx.blackbox.apredict(np.asarray(rows))
    return [ToyTotal(total=options.scale * float(sum(row)), label=str(label)) for row, label in zip(rows, labels)]


TOY = Method(
    name="toy_total",
    description="The scaled sum of a row's values beside the model's label (a toy, for tests).",
    inputs=("tabular_row",),
    options=ToyOptions,
    result=ToyTotal,
    run=run_toy,
    uses_llm=False,
    chat=ChatForm(
        " to know the sum of one row's values.", (r"\btotal\b",), "For $subject the total is $total and the model says $label."
    ),
)


@pytest.fixture
def toy():
    catalog()  # every real method found first
    register(TOY)
    yield TOY
    catalog().pop(TOY.name)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", job_chunk_size=1)


def totals(rows: list[list[float]], scale: float) -> list[float]:
    return [pytest.approx(scale * sum(row)) for row in rows]


def test_a_new_method_is_a_typed_rest_route_and_a_job(toy, settings):
    with TestClient(create_app(settings, llm=make_llm(settings), register_demo_models=True)) as api:
        answer = api.post("/methods/toy_total", json={"model": "synthetic", "rows": ROWS, "options": {"scale": 2}})
        assert answer.status_code == 200, answer.text
        assert [r["result"]["total"] for r in answer.json()["results"]] == totals(ROWS, 2)

        misspelt = api.post("/methods/toy_total", json={"model": "synthetic", "rows": ROWS, "options": {"scael": 2}})
        assert misspelt.status_code == 422 and "scael" in misspelt.text and "scale" in misspelt.text
        for wrong in ([["scale", 2]], "scale=2", 2):  # typed in the document, still parsed by the method: never a 5xx
            answer = api.post("/methods/toy_total", json={"model": "synthetic", "rows": ROWS, "options": wrong})
            assert answer.status_code == 422 and "object of option names and values" in answer.text

        document = api.get("/openapi.json").json()
        schemas = document["components"]["schemas"]
        operation = document["paths"]["/methods/toy_total"]["post"]
        request = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        options = schemas[request]["properties"]["options"]
        assert schemas[options["$ref"].rsplit("/", 1)[1]]["properties"]["scale"]["type"] == "number"
        assert "model" in schemas[request]["required"], "a method that works on a model says so"
        response = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        outcome = schemas[response]["properties"]["results"]["items"]["$ref"].rsplit("/", 1)[1]
        result = schemas[outcome]["properties"]["result"]["anyOf"][0]["$ref"].rsplit("/", 1)[1]
        assert {"total", "label"} <= set(schemas[result]["properties"])

        submitted = api.post("/jobs", json={"method": "toy_total", "model": "synthetic", "rows": ROWS})
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()["id"]
        deadline = time.monotonic() + 30
        while api.get(f"/jobs/{job}").json()["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.02)
        results = api.get(f"/jobs/{job}/results").json()["results"]
        assert [r["result"]["total"] for r in sorted(results, key=lambda r: r["index"])] == totals(ROWS, 1)


async def test_a_new_method_is_an_mcp_tool(toy, settings):
    async with Client(build_server(settings, llm=make_llm(settings))) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        schema = tools["toy_total"].input_schema
        assert schema["$defs"]["ToyOptions"]["properties"]["scale"]["type"] == "number"
        answer = await client.call_tool("toy_total", {"model": "synthetic", "rows": ROWS, "options": {"scale": 3}})
        assert not answer.is_error, answer.content
        assert [r["result"]["total"] for r in answer.structured_content["results"]] == totals(ROWS, 3)


def test_a_new_method_runs_from_the_cli_and_python(toy, monkeypatch, fake_llm_env):
    result = CliRunner().invoke(
        cli, ["run", "toy_total", "--model", "demo:synthetic", "--input", json.dumps(ROWS[0]), "--options", '{"scale": 0.5}']
    )
    assert result.exit_code == 0, result.output
    [line] = [json.loads(text) for text in result.output.splitlines() if text.startswith("{")]
    assert line["ok"] and line["result"]["total"] == totals(ROWS[:1], 0.5)[0]
    assert [r.total for r in xplain.run("toy_total", "demo:synthetic", ROWS)] == totals(ROWS, 1)


async def test_a_new_method_is_an_agent_tool_and_a_chat_operation(toy, settings):
    context = demo_context("synthetic")
    tool = next(t for t in build_tools(context) if t.name == "toy_total")
    message = await tool.ainvoke({"type": "tool_call", "id": "c1", "name": "toy_total", "args": {"row": 1, "scale": 2}})
    assert message.artifact["total"] == pytest.approx(2 * float(np.sum(context.row(1))))

    backend = FakeBackend()  # no script: the rules reach the method by its declared cue, no LLM call
    answer = await GroundedPlanner(LLM(backend), context).ask("s", "what is the total of row 1?")
    assert answer.plan["operation"] == "toy_total" and answer.plan["chosen_by"] == "rules"
    total = round(float(np.sum(context.row(1))), 4)
    assert answer.text.startswith(f"For row 1 the total is {total} and the model says")
    assert answer.ungrounded_numbers == [] and backend.score_batches == []


def test_the_service_refuses_a_model_the_method_cannot_use_before_any_work(settings):
    reviews = open_spec("demo:reviews", settings)
    with pytest.raises(InvalidInput, match="sasc works on module models; demo:reviews is a text model"):
        method_context(get_method("sasc"), reviews, llm=None, settings=settings)
    context = method_context(get_method("iprompt"), reviews, llm=None, settings=settings)
    assert context.blackbox is None, "a method that brings its own model gets none"


def test_specs_open_under_the_configured_query_budget(tmp_path):
    settings = Settings(llm_backend="fake", blackbox_query_budget=3, database_url=f"sqlite:///{tmp_path / 'db'}")
    opened = open_spec("demo:synthetic", settings)
    assert opened.reference is not None and len(opened.reference) > 3
    opened.blackbox.predict(np.asarray(opened.reference[:3]))
    with pytest.raises(QueryBudgetExceeded):
        opened.blackbox.predict(np.asarray(opened.reference[3:4]))


def test_one_error_edge_says_the_status_and_the_message():
    assert describe(NotFound("no model named 'x'")) == (404, "no model named 'x'")
    assert describe(TooLarge("65 rows")) == (413, "65 rows")
    assert describe(ValueError("bad row")) == (422, "bad row")
    assert describe(PermissionError("outside the directory")) == (403, "outside the directory")
    try:
        ToyOptions.model_validate({"scael": 1})
    except ValidationError as error:
        status, message = describe(error)
    assert status == 422 and "scael" in message and "https://" not in message
    status, message = describe(KeyError("secret internals"))
    assert status == 500 and "secret internals" not in message and "KeyError" in message
