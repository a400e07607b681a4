"""The probes as catalog methods, on black boxes whose behaviour is known (a logistic model on x0 and x1 only, a
keyword text classifier): each returns what the black box and the data say, batches its queries, reaches the agent
as a tool generated from its declaration (row ids or texts in, the typed result as the artifact), and answers bad
arguments with an error the model can read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool

import xplain
from tests.unit.blackbox_fixtures import keyword_model, logistic
from xplain.agent.answers import tool_payload
from xplain.agent.chat_model import tool_spec
from xplain.blackbox import from_callable
from xplain.errors import InvalidInput
from xplain.methods.catalog import catalog
from xplain.tools import ProbeContext, build_tools
from xplain.tools.catalog_tools import to_json

FEATURES = ["x0", "x1", "x2", "x3"]
PROBES = ["what_if", "occlusion", "similar_rows", "describe_data", "global_effects", "surrogate_rule", "model_score"]


@pytest.fixture
def table() -> np.ndarray:
    rows = np.random.default_rng(0).normal(size=(40, 4))
    rows[7] = rows[3]  # a duplicate row: its nearest neighbour is at distance 0
    return rows


@pytest.fixture
def tabular(table) -> ProbeContext:
    blackbox = from_callable(logistic, kind="tabular", classes=["no", "yes"], feature_names=FEATURES)
    labels = np.where(table[:, 0] > 0, "yes", "no")
    return ProbeContext(blackbox, table, labels, "a known logistic model")


@pytest.fixture
def text() -> ProbeContext:
    blackbox = from_callable(keyword_model, kind="text", classes=["negative", "positive"])
    texts = ["a great film with a slow start", "an awful plot", "great acting, great score", "plain and fine"]
    return ProbeContext(blackbox, texts, np.array(["positive", "negative", "positive", "negative"]))


def tools_of(context: ProbeContext) -> dict:
    return {tool.name: tool for tool in build_tools(context)}


async def call(context: ProbeContext, name: str, **arguments) -> dict:
    """The tool's full result (its artifact), or `{"error": ...}` as the model would read it."""
    message = await tools_of(context)[name].ainvoke({"name": name, "args": arguments, "id": "c1", "type": "tool_call"})
    result, error = tool_payload(message)
    return {"error": error} if error is not None else result


def test_every_probe_is_a_catalog_method_with_typed_options_and_result():
    for name in PROBES:
        method = catalog()[name]
        assert method.options.model_config.get("extra") == "forbid", name
        assert method.chat is not None and method.chat.answer is not None, name
        assert "properties" in method.describe()["result_schema"], name
        with pytest.raises(InvalidInput, match="unknown option"):
            method.parse_options({"nonsense": 1})


async def test_what_if_requeries_the_edited_row(tabular, table):
    flipped = await call(
        tabular, "what_if", row=2, changes=[{"feature": "x0", "value": 5.0}, {"feature": "X1", "value": -5.0}]
    )
    assert flipped["row"] == 2 and flipped["changes"]["x0"] == {"old": round(table[2, 0], 4), "new": 5.0}
    assert flipped["changes"]["x1"]["new"] == -5.0  # feature names match case-insensitively
    assert flipped["after"]["predicted"] == "yes" and flipped["after"]["probabilities"]["yes"] > 0.99
    assert flipped["label_changed"] == (flipped["before"]["predicted"] != "yes")
    assert flipped["cost"]["blackbox_queries"] == 2
    idle = await call(tabular, "what_if", row=2, changes=[{"feature": "x3", "value": 100.0}])
    assert idle["before"] == idle["after"] and idle["label_changed"] is False


async def test_what_if_edits_many_rows_in_one_batch_and_a_bad_edit_is_refused(tabular, table):
    tabular.blackbox.reset_stats()
    results = xplain.run("what_if", tabular.blackbox, table[:5].tolist(), changes=[{"feature": "x0", "value": 4.0}])
    assert tabular.blackbox.stats().model_calls == 1, "every row's original and edit went as one batch"
    assert all(r.after.predicted == "yes" for r in results)
    with pytest.raises(InvalidInput, match="no feature named 'height'"):
        xplain.run("what_if", tabular.blackbox, table[:1].tolist(), changes=[{"feature": "height", "value": 1}])
    with pytest.raises(InvalidInput, match="takes `changes`"):
        xplain.run("what_if", tabular.blackbox, table[:1].tolist())


async def test_occlusion_ranks_the_features_the_model_uses_in_one_batch(tabular):
    tabular.blackbox.reset_stats()
    result = await call(tabular, "occlusion", row=0, top=4)
    # the row and its 4 variants went as one batch, the PGI / PGU check as a second
    assert tabular.blackbox.stats().model_calls == 2
    ranked = list(result["effects"])
    assert set(ranked[:2]) == {"x0", "x1"}
    assert result["effects"]["x2"] == 0 and result["effects"]["x3"] == 0
    # the top 3 hold x0 and x1, so perturbing the rest (one inert feature) moves nothing: PGU is 0
    assert result["check"]["pgu"] == 0 and result["check"]["pgi"] > 0 and result["check"]["verdict"] == "faithful"


def test_occlusion_and_global_effects_are_drawn_from_their_results(tabular, table):
    from xplain.display.charts import chart_spec

    [occluded] = xplain.run("occlusion", tabular.blackbox, table[:1].tolist(), reference=table)
    spec = chart_spec(occluded)
    assert spec["labels"] == list(occluded.effects) and spec["series"][0]["values"] == list(occluded.effects.values())
    [curve] = xplain.run("global_effects", tabular.blackbox, [], reference=table, feature="x0")
    assert chart_spec(curve)["series"][0]["values"] == [p.mean_probability for p in curve.curve]


async def test_global_effects_give_signed_effects_across_the_data_and_a_curve_per_feature(tabular):
    result = await call(tabular, "global_effects")
    assert result["class_name"] == "yes"
    assert set(list(result["effects"])[:2]) == {"x0", "x1"}
    assert result["effects"]["x0"] > 0 > result["effects"]["x1"]  # x0 raises P(yes), x1 lowers it
    assert result["effects"]["x2"] == 0
    curve = (await call(tabular, "global_effects", feature="X0"))["curve"]
    means = [point["mean_probability"] for point in curve]
    assert means == sorted(means) and means[-1] > means[0]


async def test_global_word_effects_are_signed_by_the_class_they_push_towards(text):
    result = await call(text, "global_effects", feature="great")
    assert result["effects"]["great"] > 0 and result["texts_with_word"] == {"great": 2}
    assert (await call(text, "global_effects", feature="awful"))["effects"]["awful"] < 0


async def test_surrogate_rule_splits_on_the_feature_the_model_uses_and_reports_its_fidelity(tabular):
    result = await call(tabular, "surrogate_rule", depth=1)
    assert {rule["condition"].split(" ")[0] for rule in result["rules"]} <= {"x0", "x1"}
    assert 0.5 < result["fidelity"] <= 1 and (result["checked_rows"], result["held_out"]) == (20, True)


async def test_describe_data_gives_the_data_statistics(tabular, table):
    stats = (await call(tabular, "describe_data", feature="x2"))["summary"]
    assert stats["mean"] == round(table[:, 2].mean(), 4) and stats["max"] == round(table[:, 2].max(), 4)
    assert stats["median"] == round(float(np.median(table[:, 2])), 4)
    overview = (await call(tabular, "describe_data"))["overview"]
    assert overview["rows"] == 40 and overview["features"] == FEATURES
    assert sum(overview["label_counts"].values()) == 40
    row = await call(tabular, "describe_data", row=4)
    assert row["values"] == {name: round(v, 4) for name, v in zip(FEATURES, table[4])}
    assert row["true_label"] == tabular.labels[4]


def test_a_set_probe_questions_the_inputs_given_instead_of_the_reference(tabular, table):
    [described] = xplain.run("describe_data", tabular.blackbox, table[:6].tolist())
    assert described.overview.rows == 6 and described.overview.label_counts is None
    with pytest.raises(InvalidInput, match="came with none"):
        xplain.run("describe_data", tabular.blackbox, [])


async def test_similar_rows_finds_the_duplicate_first_and_leaves_the_row_itself_out(tabular):
    result = await call(tabular, "similar_rows", row=3, k=3)
    rows = [n["row"] for n in result["neighbours"]]
    assert rows[0] == 7 and result["neighbours"][0]["distance"] == 0
    assert 3 not in rows and len(rows) == 3 and "row 3 of the data, left out" in result["notes"][0]
    distances = [n["distance"] for n in result["neighbours"]]
    assert distances == sorted(distances)
    assert all(n["true_label"] == tabular.labels[n["row"]] for n in result["neighbours"])


async def test_model_score_counts_the_real_mistakes(tabular, table):
    result = await call(tabular, "model_score", max_mistakes=20)
    predicted = np.where(logistic(table)[:, 1] > 0.5, "yes", "no")
    wrong = np.flatnonzero(predicted != tabular.labels)
    assert result["mistakes"] == len(wrong) and result["accuracy"] == round(1 - len(wrong) / 40, 4)
    assert [m["row"] for m in result["mistake_examples"]] == wrong[:20].tolist()


async def test_model_score_needs_labels_and_takes_labelled_examples(tabular, table):
    unlabelled = ProbeContext(tabular.blackbox, tabular.rows)
    assert "true labels" in (await call(unlabelled, "model_score"))["error"]
    examples = [{"row": table[i].tolist(), "label": "yes"} for i in range(4)]
    [score] = xplain.run("model_score", tabular.blackbox, examples)
    predicted = np.where(logistic(table[:4])[:, 1] > 0.5, "yes", "no")
    assert score.rows == 4 and score.mistakes == int(np.sum(predicted != "yes"))


async def test_bad_arguments_come_back_as_errors_the_model_can_read(tabular):
    missing = await call(tabular, "predict", row=99)
    assert "rows are numbered 0 to 39" in missing["error"]
    unknown = await call(tabular, "what_if", row=1, changes=[{"feature": "height", "value": 1}])
    assert "no feature named 'height'" in unknown["error"] and "x0" in unknown["error"]
    assert "error" in await call(tabular, "predict", row=-1)


async def test_text_probes_find_and_edit_the_decisive_word(text):
    effect = await call(text, "occlusion", text="a great story, slow but kind")
    assert next(iter(effect["effects"])) == "great" and effect["predicted"] == "positive"
    assert effect["text"] == "a great story, slow but kind"
    edit = await call(text, "what_if", row=0, replacements=[{"old": "great", "new": "awful"}])
    assert edit["edited_text"] == "a awful film with a slow start"
    assert (edit["before"]["predicted"], edit["after"]["predicted"]) == ("positive", "negative")
    similar = await call(text, "similar_rows", text="great great score", k=1)
    assert similar["neighbours"][0]["row"] == 2
    assert "exactly one of" in (await call(text, "predict"))["error"]
    assert "does not occur" in (await call(text, "what_if", row=3, replacements=[{"old": "zzz"}]))["error"]


def test_tool_schemas_bound_every_string_and_list(tabular, text):
    """The embedded model's JSON grammar only stays finite when strings and lists are bounded."""

    def unbounded(node, path="") -> list[str]:
        found = []
        if isinstance(node, dict):
            if node.get("type") == "string" and "maxLength" not in node:
                found.append(path)
            if node.get("type") == "array" and "maxItems" not in node:
                found.append(path)
            for key, value in node.items():
                found += unbounded(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                found += unbounded(value, f"{path}/{i}")
        return found

    for context in (tabular, text):
        for tool in build_tools(context, PROBES + ["predict"]):
            spec = tool_spec(convert_to_openai_tool(tool)["function"])
            assert "$ref" not in json.dumps(spec.parameters)
            assert unbounded(spec.parameters) == [], tool.name


def test_tools_are_the_catalog_and_an_unknown_one_is_refused(tabular):
    names = [tool.name for tool in build_tools(tabular)]
    assert set(PROBES) <= set(names) and set(names) <= set(catalog())
    assert [t.name for t in build_tools(tabular, ["what_if", "predict"])] == ["predict", "what_if"]
    with pytest.raises(ValueError, match="unknown tool"):
        build_tools(tabular, ["nope"])


def test_a_context_refuses_mismatched_data(tabular, table):
    with pytest.raises(ValueError, match="one column per feature"):
        ProbeContext(tabular.blackbox, table[:, :3])
    with pytest.raises(ValueError, match="one label per row"):
        ProbeContext(tabular.blackbox, table, ["yes"])


def test_tool_output_is_json_even_for_nan_and_infinities():
    """MCP's text answers and the agent's tool results are read as JSON: `-Infinity` and `NaN` are not JSON."""
    text = to_json({"logprob": float("-inf"), "gaps": [float("nan"), 0.5, np.float64("inf")], "ok": 1})
    assert text == '{"logprob":null,"gaps":[null,0.5,null],"ok":1}'
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the output"))


def test_a_surrogate_rule_from_a_handful_of_rows_is_refused_not_reported_as_faithful(table):
    """One row fits "always <its label>" with fidelity 1: the method asks for more rows or none (the reference)."""
    model = from_callable(logistic, kind="tabular", classes=["no", "yes"], feature_names=FEATURES)
    with pytest.raises(InvalidInput, match="at least 8 rows and got 1"):
        xplain.run("surrogate_rule", model, table[:1].tolist())
    [rule] = xplain.run("surrogate_rule", model, table[:12].tolist(), depth=1)
    assert rule.checked_rows == 12 and not rule.held_out
