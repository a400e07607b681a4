"""Every method of the catalog through every front — REST (POST /methods/{name}), a job, `xplain batch`, the agent's
tool and `xplain.run` — on the fake LLM, so a method cannot land on one front only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from typer.testing import CliRunner

import xplain
from xplain.cli import app as cli
from xplain.cli.run_commands import capability_table
from xplain.data.demo import demo_reference
from xplain.llm import make_llm
from xplain.methods.catalog import catalog
from xplain.server.app import create_app
from xplain.server.schemas import method_response_model
from xplain.settings import Settings
from xplain.tools import build_tools, demo_context

ROW = [float(v) for v in demo_reference("synthetic").rows[0]]
TEXTS = ["a warm , funny and moving film", "dull , lifeless and far too long", "the cast is superb and the story wise"]
PAIRS = [{"input": str(n), "output": str(n + 1)} for n in range(12)]
TRAINING = [{"row": [float(i), float(i % 2)], "label": "odd" if i % 2 else "even"} for i in range(8)]
MODULE = "tests.unit.blackbox_fixtures:animal_words"

#: Per method: the model it runs on (None: it needs none), its inputs, its options. A method missing here fails
#: `test_every_method_has_a_case`, so each new method brings its own case.
CASES: dict[str, tuple[str | None, list, dict]] = {
    "predict": ("synthetic", [ROW], {}),
    "zero_shot": ("reviews", TEXTS[:2], {}),
    "posthoc": ("reviews", TEXTS[:2], {"k": 2}),
    "lime": ("synthetic", [ROW], {"n_samples": 16}),
    "kernelshap": ("reviews", TEXTS[:1], {"n_samples": 16, "k": 2}),
    "compare": ("synthetic", [ROW], {"k": 2, "n_samples": 8}),
    "counterfactual": ("synthetic", [ROW], {"max_rounds": 1}),
    "concept_effect": ("reviews", TEXTS, {"concept": "acting"}),
    "sasc": ("animals", ["the cat sat", "a dog ran home", "the film was long", "birds sing at dawn"],
             {"n_candidates": 1, "n_texts": 2, "top_ngrams": 4, "subset_size": 4}),  # fmt: skip
    "iprompt": (None, PAIRS, {"n_candidates": 1, "n_iterations": 0, "n_accuracy": 1}),
    "classifier_fit": (None, TRAINING, {"name": "parity", "kind": "lml"}),
    "classifier_predict": (None, [[3.0, 1.0]], {"classifier": "parity"}),
    "what_if": ("synthetic", [ROW], {"changes": [{"feature": "x0", "value": 2.0}]}),
    "occlusion": ("synthetic", [ROW], {"top": 3}),
    "similar_rows": ("reviews", TEXTS[:2], {"k": 2}),
    "describe_data": ("synthetic", [], {"feature": "x1"}),
    "global_effects": ("reviews", [], {"top": 3}),
    "surrogate_rule": ("synthetic", [], {"depth": 2}),
    "model_score": ("reviews", [], {"max_mistakes": 2}),
}
#: Methods the agent has no tool for, and why (the chat manages no saved classifiers; predict is a richer probe).
NO_TOOL = {"classifier_fit", "classifier_predict", "sasc"}


def test_every_method_has_a_case():
    assert set(CASES) == set(catalog())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        classifier_dir=tmp_path / "classifiers",
        trusted_import_prefixes=["tests.unit.blackbox_fixtures"],
        job_chunk_size=2,
    )


@pytest.fixture
def api(settings):
    with TestClient(create_app(settings, llm=make_llm(settings), register_demo_models=True)) as client:
        registration = {"name": "animals", "kind": "module", "source": {"import_path": MODULE}}
        assert client.post("/models", json=registration).status_code == 201
        yield client


def test_an_unknown_method_is_a_404_that_names_the_likely_one(api):
    response = api.post("/methods/zero_shoot", json={"model": "reviews", "rows": ["a fine film"]})
    assert response.status_code == 404
    error = response.json()["error"]
    assert "unknown method 'zero_shoot'; did you mean 'zero_shot'?" in error and "posthoc" in error
    assert "/methods/{name}" not in api.get("/openapi.json").json()["paths"]


def wait(api: TestClient, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = api.get(f"/jobs/{job_id}").json()
        if info["status"] in ("completed", "failed", "cancelled"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def check_results(name: str, results: list[dict]) -> None:
    method = catalog()[name]
    model, inputs, _ = CASES[name]
    assert len(results) == (1 if method.unit == "set" else len(inputs))
    assert all(r["ok"] for r in results), [r.get("error") for r in results]
    for r in results:
        assert r["result"]["method"] == name if "method" in r["result"] else True


def test_get_methods_lists_every_capability_with_its_schemas(api):
    listed = {m["name"]: m for m in api.get("/methods").json()}
    assert set(listed) == set(catalog())
    for name, info in listed.items():
        assert info["inputs"] and info["options_schema"]["type"] == "object" and info["result_schema"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_rest_and_job_run_every_method(api, name):
    model, inputs, options = CASES[name]
    if name == "classifier_predict":
        fit_model, fit_inputs, fit_options = CASES["classifier_fit"]
        assert api.post("/methods/classifier_fit", json={"rows": fit_inputs, "options": fit_options}).status_code == 200
    body = {"model": model, "rows": inputs, "options": options}
    answer = api.post(f"/methods/{name}", json=body)
    assert answer.status_code == 200, answer.text
    check_results(name, answer.json()["results"])
    typed = method_response_model(catalog()[name]).model_validate(answer.json())  # the OpenAPI document holds
    assert all(isinstance(o.result, BaseModel) for o in typed.results)
    if name == "classifier_fit":
        body["options"] = {**options, "replace": True}
    submitted = api.post("/jobs", json={"method": name, **body})
    assert submitted.status_code == 202, submitted.text
    info = wait(api, submitted.json()["id"])
    assert info["status"] == "completed", info
    check_results(name, api.get(f"/jobs/{info['id']}/results").json()["results"])
    time.sleep(0.05)
    assert api.get(f"/jobs/{info['id']}").json()["progress"]["rate"] == info["progress"]["rate"]  # a finished run keeps its rate


@pytest.mark.parametrize("name", sorted(CASES))
def test_xplain_batch_runs_every_method(name, tmp_path, monkeypatch, fake_llm_env):
    model, inputs, options = CASES[name]
    monkeypatch.setenv("XPLAIN_CLASSIFIER_DIR", str(tmp_path / "classifiers"))
    runner = CliRunner()
    if name == "classifier_predict":
        fit = tmp_path / "fit.json"
        fit.write_text(json.dumps(CASES["classifier_fit"][1]))
        fitted = runner.invoke(cli, ["batch", str(fit), "--method", "classifier_fit", "--out", str(tmp_path / "f.jsonl"),
                                     "--options", json.dumps(CASES["classifier_fit"][2])])  # fmt: skip
        assert fitted.exit_code == 0, fitted.output
    data = tmp_path / "inputs.json"
    data.write_text(json.dumps(inputs))
    out = tmp_path / "out.jsonl"
    spec = {None: [], "animals": ["--model", MODULE, "--kind", "module"]}.get(model, ["--model", f"demo:{model}"])
    if model == "animals":
        monkeypatch.setenv("XPLAIN_TRUSTED_IMPORT_PREFIXES", "tests.unit.blackbox_fixtures")
    result = runner.invoke(cli, ["batch", str(data), "--method", name, "--out", str(out), "--options", json.dumps(options), *spec])
    assert result.exit_code == 0, result.output
    check_results(name, [json.loads(line) for line in out.read_text().splitlines()])


@pytest.mark.parametrize("name", sorted(set(CASES) - NO_TOOL - {"predict"}))
async def test_the_agent_has_a_tool_for_every_method(name, settings):
    model, inputs, options = CASES[name]
    context = demo_context(model or "reviews")
    context.llm = make_llm(settings)
    tool = next(t for t in build_tools(context) if t.name == name)
    if "row" in tool.args:
        subject = {"row": 0}
    elif "rows" in tool.args:
        subject = {"rows": [0, 1, 2]}
    elif catalog()[name].needs_model:
        subject = {}  # a method of the whole data: the model's reference rows
    else:
        subject = {"inputs": inputs}
    message = await tool.ainvoke({"type": "tool_call", "id": "c1", "name": name, "args": {**subject, **options}})
    assert "error" not in json.loads(message.content), message.content
    assert message.artifact["method"] == name


@pytest.mark.parametrize("name", ["posthoc", "lime", "iprompt"])
def test_python_front_runs_catalog_methods(name, monkeypatch, fake_llm_env):
    model, inputs, options = CASES[name]
    results = xplain.run(name, f"demo:{model}" if model else None, inputs, **options)
    assert len(results) == (1 if catalog()[name].unit == "set" else len(inputs))
    assert all(r.method == name for r in results)
    assert all("<svg" in r._repr_html_() for r in results), "each result shows itself with its chart"


def test_the_readme_capability_table_is_the_catalogs():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert capability_table() in readme, "run `xplain methods --markdown` and paste it into the README"


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_result_kind_has_a_card_check_chart_and_frame(name):
    from typing import get_args

    from xplain.display.cards import headline
    from xplain.display.charts import chart_spec
    from xplain.display.checks import check
    from xplain.display.frames import to_frame

    result = catalog()[name].result
    for kind in get_args(result) or (result,):
        for shown in (headline, check, chart_spec, to_frame):
            assert shown.dispatch(kind) is not shown.dispatch(object), f"{shown.__name__} knows no {kind.__name__}"


def test_a_job_explains_fifty_reviews_each_with_its_check(api):
    texts = [str(t) for t in demo_reference("reviews").rows[:50]]
    submitted = api.post("/jobs", json={"model": "reviews", "method": "posthoc", "rows": texts, "options": {"k": 2}})
    info = wait(api, submitted.json()["id"])
    results = api.get(f"/jobs/{info['id']}/results", params={"limit": 100}).json()["results"]
    assert info["progress"]["total"] == 50 and len(results) == 50
    explained = [r["result"] for r in results if r["ok"]]
    failed = [r["error"] for r in results if not r["ok"]]
    assert all("fewer than k=2" in e for e in failed), "only texts too short to rank may fail, each alone"
    assert len(explained) >= 45 and all(r["pgi"] is not None and r["pgu"] is not None for r in explained)


def test_a_compare_job_shows_the_llm_lime_and_kernelshap_per_row(api):
    rows = [list(map(float, r)) for r in demo_reference("breast_cancer").rows[:3]]
    submitted = api.post("/jobs", json={"model": "breast_cancer", "method": "compare", "rows": rows, "options": {"k": 3}})
    info = wait(api, submitted.json()["id"])
    assert info["status"] == "completed", info
    for outcome in api.get(f"/jobs/{info['id']}/results").json()["results"]:
        scores = outcome["result"]["scores"]
        reasked = ["posthoc:perturbation:reasked"] if outcome["result"]["explanations"][0]["reasked"] else []
        assert [s["explainer"] for s in scores] == [
            "posthoc:perturbation", "posthoc:perturbation:proposed", *reasked, "posthoc:perturbation:evidence_only",
            "lime", "kernelshap",
        ]  # fmt: skip
        assert all(s["pgi"] is not None and s["pgu"] is not None for s in scores)
        assert outcome["result"]["rows_per_explainer"] == 24, "every explainer built on the LLM's neighbourhood size"
