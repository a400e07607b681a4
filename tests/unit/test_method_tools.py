"""Method tools for the agent: present only with an LLM, and reporting the black box's own check of each claim."""

from __future__ import annotations

import json

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.tools import build_tools, demo_context


def tool_named(tools, name):
    return next(t for t in tools if t.name == name)


async def call(tool, **arguments):
    """Invoke a catalog tool as the agent does; returns the text the model reads and the artifact."""
    message = await tool.ainvoke({"type": "tool_call", "id": "call-1", "name": tool.name, "args": arguments})
    return json.loads(message.content), message.artifact


async def test_text_counterfactual_tool_reports_verified_flips_and_keeps_the_full_result_as_artifact():
    context = demo_context("reviews")
    edits = json.dumps({"edits": ["dull , lifeless and tedious", "a warm , funny film"]})
    context.llm = LLM(FakeBackend(default=edits))
    row = next(i for i, text in enumerate(context.rows) if context.blackbox.predict([text])[0] == "positive")
    out, artifact = await call(tool_named(build_tools(context), "counterfactual"), row=row, max_rounds=1, strategy="llm", mode="target")
    assert out["original_prediction"] == "positive" and out["row"] == row
    verdicts = {c["text"]: (c["valid"], c["prediction"]) for c in artifact["counterfactuals"]}
    assert verdicts["dull , lifeless and tedious"] == (True, "negative")
    assert verdicts["a warm , funny film"][0] is False
    assert "prompt_versions" not in out and artifact["prompt_versions"], "bulk stays in the artifact"


async def test_tabular_tool_keeps_the_features_its_constraints_fix():
    context = demo_context("synthetic")
    proposal = {"proposals": [{"changes": [{"feature": "x0", "value": -3.0}, {"feature": "x2", "value": -3.0}]}]}
    backend = FakeBackend(default=json.dumps(proposal))
    context.llm = LLM(backend)
    tool = tool_named(build_tools(context), "counterfactual")
    _, artifact = await call(tool, row=0, constraints={"x1": {"immutable": True}}, max_rounds=1, strategy="llm")
    found = artifact["counterfactuals"]
    assert found and all({ch["feature"] for ch in c["changes"]} == {"x0", "x2"} for c in found)
    assert '"x1"' not in json.dumps(backend.requests[0].json_schema), "a kept feature cannot even be named"
    bad, _ = await call(tool, row=0, constraints={"no_such_feature": {"immutable": True}})
    assert "no_such_feature" in bad["error"]


def test_no_llm_no_llm_tools_but_the_baselines_stay():
    names = [t.name for t in build_tools(demo_context("reviews"))]
    assert "counterfactual" not in names and "posthoc" not in names
    assert {"lime", "kernelshap"} <= set(names), "LIME and KernelSHAP need no LLM"


async def test_posthoc_tool_maps_letters_back_and_reports_the_models_check():
    context = demo_context("synthetic")
    reply = {"features": [{"feature": "A", "direction": "+", "rationale": "x0 pushes it up"},
                          {"feature": "B", "direction": "-", "rationale": "x1 pulls it down"}]}  # fmt: skip
    context.llm = LLM(FakeBackend(default=json.dumps(reply)))
    tool = tool_named(build_tools(context), "posthoc")
    assert "background" not in tool.args, "the chat's own rows are the background; the agent is not asked for them"
    out, artifact = await call(tool, row=0, k=2)
    named = [f["feature"] for f in artifact["features"]]
    # letters are shuffled per row, so A and B stand for two of the features; they come back by name
    assert len(set(named)) == 2 and set(named) <= set(context.feature_names), "letters map back to feature names"
    assert out["pgi"] is not None and out["pgu"] is not None
    bad, _ = await call(tool, row=10_000, k=2)
    assert "row 10000 does not exist" in bad["error"]
