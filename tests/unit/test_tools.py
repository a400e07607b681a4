"""The probe tools on black boxes whose behaviour is known: a logistic model on x0 and x1 only, and a keyword text
classifier. Tools must return what the black box and the data say, batch their queries, and answer bad arguments
with an error the model can read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from tests.unit.blackbox_fixtures import logistic, keyword_model
from xplain.agent.chat_model import tool_spec
from xplain.blackbox import from_callable
from xplain.tools import ProbeContext, build_tools, register_tool, registered_tool_names
from xplain.tools import registry as registry_module
from xplain.tools.registry import make_tool

FEATURES = ["x0", "x1", "x2", "x3"]




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
    return json.loads(await tools_of(context)[name].ainvoke(arguments))


async def test_predict_reports_the_black_box_probabilities_and_the_true_label(tabular, table):
    result = await call(tabular, "predict", row=5)
    expected = logistic(table[5:6])[0]
    assert result["probabilities"] == {"no": round(expected[0], 4), "yes": round(expected[1], 4)}
    assert result["predicted"] == ("yes" if expected[1] > 0.5 else "no")
    assert result["true_label"] == tabular.labels[5]


async def test_what_if_requeries_the_edited_row(tabular, table):
    flipped = await call(
        tabular, "what_if", row=2, changes=[{"feature": "x0", "value": 5.0}, {"feature": "X1", "value": -5.0}]
    )
    assert flipped["changes"]["x0"] == {"from": round(table[2, 0], 4), "to": 5.0}
    assert flipped["changes"]["x1"]["to"] == -5.0  # feature names match case-insensitively
    assert flipped["after"]["predicted"] == "yes" and flipped["after"]["probabilities"]["yes"] > 0.99
    assert flipped["label_changed"] == (flipped["before"]["predicted"] != "yes")
    idle = await call(tabular, "what_if", row=2, changes=[{"feature": "x3", "value": 100.0}])
    assert idle["before"] == idle["after"] and idle["label_changed"] is False


async def test_feature_effect_ranks_the_features_the_model_uses_in_one_batch(tabular):
    tabular.blackbox.reset_stats()
    result = await call(tabular, "feature_effect", row=0, top=4)
    # the row and its 4 variants went as one batch, the PGI / PGU check as a second
    assert tabular.blackbox.stats().model_calls == 2
    ranked = list(result["effects"])
    assert set(ranked[:2]) == {"x0", "x1"}
    assert result["effects"]["x2"] == 0 and result["effects"]["x3"] == 0
    assert result["plot"]["kind"] == "bar" and result["plot"]["labels"] == ranked
    assert result["plot"]["values"] == [result["effects"][name] for name in ranked]
    # the top 3 hold x0 and x1, so perturbing the rest (one inert feature) moves nothing: PGU is 0
    assert result["check"]["pgu"] == 0 and result["check"]["pgi"] > 0 and result["check"]["verdict"] == "faithful"


async def test_global_effects_give_signed_effects_across_the_data_and_a_curve_per_feature(tabular):
    result = await call(tabular, "global_effects")
    assert result["class"] == "yes"
    assert list(result["effects"])[:2] == ["x0", "x1"] or list(result["effects"])[:2] == ["x1", "x0"]
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
    assert {rule["if"].split(" ")[0] for rule in result["rules"]} <= {"x0", "x1"}
    assert 0.5 < result["fidelity"] <= 1 and result["checked_on"] == "20 held-out rows"


async def test_describe_data_gives_the_data_statistics(tabular, table):
    stats = await call(tabular, "describe_data", feature="x2")
    assert stats["mean"] == round(table[:, 2].mean(), 4) and stats["max"] == round(table[:, 2].max(), 4)
    assert stats["median"] == round(float(np.median(table[:, 2])), 4)
    overview = await call(tabular, "describe_data")
    assert overview["rows"] == 40 and overview["features"] == FEATURES
    assert sum(overview["label_counts"].values()) == 40
    row = await call(tabular, "describe_data", row=4)
    assert row["values"] == {name: round(v, 4) for name, v in zip(FEATURES, table[4])}


async def test_similar_rows_finds_the_duplicate_first_and_excludes_the_row_itself(tabular):
    result = await call(tabular, "similar_rows", row=3, k=3)
    rows = [n["row"] for n in result["neighbours"]]
    assert rows[0] == 7 and result["neighbours"][0]["distance"] == 0
    assert 3 not in rows and len(rows) == 3
    distances = [n["distance"] for n in result["neighbours"]]
    assert distances == sorted(distances)


async def test_model_score_counts_the_real_mistakes(tabular, table):
    result = await call(tabular, "model_score", max_mistakes=20)
    predicted = np.where(logistic(table)[:, 1] > 0.5, "yes", "no")
    wrong = np.flatnonzero(predicted != tabular.labels)
    assert result["mistakes"] == len(wrong) and result["accuracy"] == round(1 - len(wrong) / 40, 4)
    assert [m["row"] for m in result["mistake_examples"]] == wrong[:20].tolist()


def test_model_score_is_offered_only_with_labels(tabular):
    unlabelled = ProbeContext(tabular.blackbox, tabular.rows)
    assert "model_score" in tools_of(tabular) and "model_score" not in tools_of(unlabelled)


async def test_bad_arguments_come_back_as_errors_the_model_can_read(tabular):
    missing = await call(tabular, "predict", row=99)
    assert "rows are numbered 0 to 39" in missing["error"]
    unknown = await call(tabular, "what_if", row=1, changes=[{"feature": "height", "value": 1}])
    assert "no feature named 'height'" in unknown["error"] and "x0" in unknown["error"]
    assert "error" in await call(tabular, "predict", row=-1)


async def test_text_tools_find_and_edit_the_decisive_word(text):
    effect = await call(text, "feature_effect", text="a great story, slow but kind")
    assert next(iter(effect["effects"])) == "great" and effect["predicted"] == "positive"
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
        for tool in build_tools(context):
            spec = tool_spec(convert_to_openai_tool(tool)["function"])
            assert "$ref" not in json.dumps(spec.parameters)
            assert unbounded(spec.parameters) == [], tool.name


def test_a_registered_module_adds_a_tool_without_touching_the_agent(tabular):
    class EchoArgs(BaseModel):
        row: int

    @register_tool("echo_row")
    def echo(context: ProbeContext):
        async def run(args: EchoArgs) -> dict:
            return {"row": args.row}

        return make_tool("echo_row", "Echo a row number.", EchoArgs, run)

    try:
        assert "echo_row" in registered_tool_names()
        assert [t.name for t in build_tools(tabular, ["echo_row", "predict"])] == ["predict", "echo_row"]
        with pytest.raises(ValueError, match="already registered"):
            register_tool("echo_row")(lambda context: None)
        with pytest.raises(ValueError, match="unknown tool"):
            build_tools(tabular, ["nope"])
    finally:
        registry_module._factories.pop("echo_row")


def test_a_context_refuses_mismatched_data(tabular, table):
    with pytest.raises(ValueError, match="one column per feature"):
        ProbeContext(tabular.blackbox, table[:, :3])
    with pytest.raises(ValueError, match="one label per row"):
        ProbeContext(tabular.blackbox, table, ["yes"])


def test_tool_output_is_json_even_for_nan_and_infinities():
    """MCP's text answers and the agent's tool results are read as JSON: `-Infinity` and `NaN` are not JSON."""
    from xplain.tools.registry import to_json

    text = to_json({"logprob": float("-inf"), "gaps": [float("nan"), 0.5, np.float64("inf")], "ok": 1})
    assert text == '{"logprob":null,"gaps":[null,0.5,null],"ok":1}'
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the output"))
