"""Method tools for the agent: present only with an LLM, and reporting the black box's own check of each claim."""

from __future__ import annotations

import json

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.tools import build_tools, demo_context


def tool_named(tools, name):
    return next(t for t in tools if t.name == name)


async def test_text_counterfactual_tool_reports_verified_flips_with_a_before_after():
    context = demo_context("reviews")
    backend = FakeBackend(default=json.dumps({"edits": ["dull , lifeless and tedious", "a warm , funny film"]}))
    context.llm = LLM(backend)
    tool = tool_named(build_tools(context), "counterfactual")
    out = json.loads(await tool.ainvoke({"text": "a warm , funny and moving film"}))
    assert out["original_prediction"] == "positive"
    verdicts = {c["text"]: (c["valid"], c["prediction"]) for c in out["counterfactuals"]}
    assert verdicts["dull , lifeless and tedious"] == (True, "negative")
    assert verdicts["a warm , funny film"][0] is False
    assert out["valid"] == 1 and out["after"]["predicted"] == "negative" and out["before"]["predicted"] == "positive"


async def test_tabular_tool_keeps_the_features_it_is_told_to():
    context = demo_context("synthetic")
    proposal = {"proposals": [{"changes": [{"feature": "x0", "value": -3.0}, {"feature": "x2", "value": -3.0}]}]}
    backend = FakeBackend(default=json.dumps(proposal))
    context.llm = LLM(backend)
    tool = tool_named(build_tools(context), "counterfactual")
    out = json.loads(await tool.ainvoke({"row": 0, "keep": ["x1"]}))
    assert out["counterfactuals"] and all(set(c["changes"]) == {"x0", "x2"} for c in out["counterfactuals"])
    assert '"x1"' not in json.dumps(backend.requests[0].json_schema), "a kept feature cannot even be named"
    bad = json.loads(await tool.ainvoke({"row": 0, "keep": ["no_such_feature"]}))
    assert "no feature named" in bad["error"]


def test_no_llm_no_counterfactual_tool():
    assert "counterfactual" not in [t.name for t in build_tools(demo_context("reviews"))]


async def test_explain_prediction_tool_reports_the_llm_ranking_with_the_models_check():
    context = demo_context("synthetic")
    reply = {"features": [{"feature": "A", "direction": "+", "rationale": "x0 pushes it up"},
                          {"feature": "B", "direction": "-", "rationale": "x1 pulls it down"}]}  # fmt: skip
    context.llm = LLM(FakeBackend(default=json.dumps(reply)))
    tool = tool_named(build_tools(context), "explain_prediction")
    out = json.loads(await tool.ainvoke({"row": 0, "k": 2}))
    named = [f["feature"] for f in out["features"]]
    # letters are shuffled per row, so A and B stand for two of the features; they come back by name
    assert len(set(named)) == 2 and set(named) <= set(context.feature_names), "letters map back to feature names"
    assert out["plot"]["values"] == [2, -1]
    assert out["check"]["pgi"] is not None and out["check"]["pgu"] is not None
    text_context = demo_context("reviews")
    text_context.llm = LLM(FakeBackend())
    assert "explain_prediction" not in [t.name for t in build_tools(text_context)], "tabular models only"


async def test_describe_rule_learns_from_the_models_own_labels_and_reports_agreement():
    context = demo_context("reviews")
    backend = FakeBackend(default="negative")
    context.llm = LLM(backend)
    out = json.loads(await tool_named(build_tools(context), "describe_rule").ainvoke({"rows": 12}))
    assert out["rules"] and all(0 <= (r["heldout_agreement"] or 0) <= 1 for r in out["rules"])
    scored = {c for batch in backend.score_batches for request in batch for c in request.continuations}
    model_labels = {str(label) for label in context.blackbox.predict(list(context.rows)[:12])}
    assert {c.strip() for c in scored} <= model_labels, "the rule is scored on the black box's labels"
    table_context = demo_context("synthetic")
    table_context.llm = LLM(FakeBackend())
    assert "describe_rule" not in [t.name for t in build_tools(table_context)], "text models only"
