"""Counterfactual search on the fake LLM: verification by the black box, retries, constraints, concept effects."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from xplain.blackbox import from_callable
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend, request_text
from xplain.methods.catalog import MethodContext, catalog
from xplain.methods.counterfactual_tabular import FeatureConstraint, tabular_counterfactuals, validate_constraints
from xplain.methods.counterfactual_text import (
    concept_effect,
    drop_reason,
    text_counterfactuals,
    token_diff,
    token_edit_distance,
)
from xplain.service import run_method

POSITIVE = {"great", "delicious", "friendly"}
NEGATIVE = {"awful", "bland", "rude"}
SWAPS = {
    "awful": "great",
    "great": "awful",
    "bland": "delicious",
    "delicious": "bland",
    "rude": "friendly",
    "friendly": "rude",
}
FOOD = {"bland": "delicious", "delicious": "bland"}


def sentiment(texts):
    """Positive probability grows with positive keywords, falls with negative ones."""
    rows = []
    for text in texts:
        words = re.findall(r"\w+", text.lower())
        score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
        p = 1 / (1 + np.exp(-2 * score))
        rows.append([1 - p, p])
    return np.array(rows)


def data_block(request) -> str:
    return re.search(r"<data>\n(.*?)\n</data>", request_text(request), re.DOTALL).group(1)


def swap(text: str, table: dict[str, str]) -> str:
    return re.sub(r"\w+", lambda m: table.get(m.group(0), m.group(0)), text)


def edits_reply(*edits: str) -> str:
    return json.dumps({"edits": list(edits)})


@pytest.fixture
def text_box():
    return from_callable(sentiment, kind="text", classes=[0, 1])


async def test_target_mode_verifies_flips_in_one_batch_per_round(text_box):
    backend = FakeBackend(default=lambda r: edits_reply(swap(data_block(r), SWAPS)))
    texts = ["the food was awful and bland", "great and friendly staff", "awful rude service"]
    result = await text_counterfactuals(LLM(backend), text_box, texts, max_rounds=3)
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 3
    for explanation in result.explanations:
        best = explanation.counterfactuals[0]
        assert best.valid and best.prediction != explanation.original_prediction
        assert best.prediction == int(np.argmax(sentiment([best.text])[0]))
        assert best.edit_size == token_edit_distance(explanation.text, best.text) > 0
        assert explanation.blackbox_queries == 2 and explanation.rounds_used == 1
    assert result.cost.blackbox_queries == 6 and result.cost.llm.calls == 3
    assert "counterfactual/text_target@1" in result.prompt_versions


async def test_non_flipping_candidates_are_fed_back_and_never_marked_valid(text_box):
    def reply(request):
        text = data_block(request)
        if "still" in request_text(request):  # the retry prompt carries the black box's verdict
            return edits_reply(swap(text, SWAPS))
        return edits_reply(text.replace("the", "a"))  # changes a word, keeps the label

    backend = FakeBackend(default=reply)
    result = await text_counterfactuals(LLM(backend), text_box, ["the food was awful"], max_rounds=3)
    explanation = result.explanations[0]
    assert [len(b) for b in backend.batches] == [1, 1]
    assert "still 0" in request_text(backend.batches[1][0])
    assert backend.batches[0][0].temperature == 0 and backend.batches[1][0].temperature > 0  # retries sample
    first, second = sorted(explanation.counterfactuals, key=lambda c: c.round)
    assert not first.valid and first.prediction == 0
    assert second.valid and second.round == 2
    assert explanation.counterfactuals[0] is second  # valid first
    assert explanation.rounds_used == 2 and explanation.blackbox_queries == 3


async def test_a_claimed_flip_the_black_box_denies_stays_invalid(text_box):
    backend = FakeBackend(default=edits_reply("the food was awful, now it is positive!"))
    result = await text_counterfactuals(LLM(backend), text_box, ["the food was awful"], max_rounds=2)
    explanation = result.explanations[0]
    assert explanation.valid == []
    assert all(not c.valid and c.prediction == 0 for c in explanation.counterfactuals)
    assert any(r.reason == "duplicate" for r in explanation.rejected)  # round 2 repeated itself


async def test_unchanged_duplicate_and_task_talk_are_dropped_before_querying(text_box):
    text = "the food was awful"
    backend = FakeBackend(
        default=edits_reply(text, "the food was great", "the food was great", "Here is the review: food was great")
    )
    result = await text_counterfactuals(LLM(backend), text_box, [text], candidates_per_round=4, max_rounds=1)
    reasons = [r.reason for r in result.explanations[0].rejected]
    assert reasons[0] == "unchanged" and reasons[1] == "duplicate" and reasons[2].startswith("talks about the task")
    assert text_box.stats().evaluated == 2  # the original and the one kept edit


def test_drop_reason_ignores_task_words_already_in_the_original():
    assert drop_reason("a review of a bad film", "a review of a good film", set()) is None


def test_placeholders_and_unrelated_text_are_not_edits():
    assert drop_reason("the food was awful", "...", set()) == "no words"
    assert drop_reason("the food was awful", "lovely weather", set()).startswith("shares no word")


def test_token_distance_and_diff_agree_on_what_changed():
    assert token_edit_distance("the food was awful", "the food was great") == 1
    diff = token_diff("the food was awful", "the food was great")
    assert ("removed", "awful") in diff and ("added", "great") in diff


async def test_causal_mode_runs_three_batched_rounds_and_checks_the_named_words(text_box):
    backend = FakeBackend(
        rules=[
            (r'"features"', json.dumps({"features": ["negative tone"]})),
            (r'"words"', json.dumps({"words": ["awful", "terrible"]})),
        ],
        default=lambda r: edits_reply(swap(data_block(r), SWAPS)),
    )
    texts = ["awful food", "rude waiter"]
    result = await text_counterfactuals(LLM(backend), text_box, texts, mode="causal")
    assert [len(b) for b in backend.batches] == [2, 2, 2]
    explanation = result.explanations[0]
    assert explanation.linked_words == ["awful"] and explanation.words_not_in_text == ["terrible"]
    assert explanation.valid and explanation.rounds_used == 3


async def test_bad_text_inputs_are_refused_before_any_call(text_box):
    backend = FakeBackend(default=edits_reply("x"))
    with pytest.raises(ValueError, match="concept"):
        await text_counterfactuals(LLM(backend), text_box, ["a text"], mode="concept")
    with pytest.raises(ValueError, match="not a class"):
        await text_counterfactuals(LLM(backend), text_box, ["a text"], target="maybe")
    with pytest.raises(ValueError, match="empty"):
        await text_counterfactuals(LLM(backend), text_box, ["  "])
    assert backend.batches == [] and text_box.stats().queries == 0


async def test_an_unknown_target_is_caught_once_the_classes_are_known():
    backend = FakeBackend(default=edits_reply("great"))
    box = from_callable(sentiment, kind="text")  # classes come from its first answer
    with pytest.raises(ValueError, match="not a class"):
        await text_counterfactuals(LLM(backend), box, ["awful"], target=7)
    assert backend.batches == []


async def test_concept_effect_is_large_for_the_driving_concept_and_zero_for_another():
    """Truth known: the black box reads food words only; a service edit cannot move it."""
    food_only = from_callable(
        lambda texts: sentiment([" ".join(w for w in t.split() if w in FOOD) for t in texts]), kind="text"
    )

    def keyword_swapper(request):
        table = FOOD if "about food" in request_text(request) else {"rude": "friendly", "friendly": "rude"}
        return edits_reply(swap(data_block(request), table))

    backend = FakeBackend(default=keyword_swapper)
    llm = LLM(backend)
    texts = ["bland food and rude staff", "delicious food, rude staff", "bland soup but friendly waiter"]
    food = await concept_effect(llm, food_only, texts, "food", output_class=1)
    service = await concept_effect(llm, food_only, texts, "service", output_class=1)
    assert len(backend.batches) == 2 and all(len(b) == 3 for b in backend.batches)
    assert food.texts_measured == 3 and service.texts_measured == 3
    assert all(abs(e.effect) > 0.5 for e in food.individual)
    assert service.average_effect == pytest.approx(0.0, abs=1e-9)
    for effect in food.individual:
        assert effect.effect == pytest.approx(np.mean(effect.edited_outputs) - effect.original_output)


# -- tabular ------------------------------------------------------------------------------------------------------

NAMES = ["age", "income", "debt"]


def credit(rows):
    rows = np.asarray(rows)
    p = 1 / (1 + np.exp(-(rows[:, 1] - rows[:, 2] - 10)))
    return np.column_stack([1 - p, p])


@pytest.fixture
def table_box():
    return from_callable(credit, kind="tabular", classes=["deny", "approve"], feature_names=NAMES)


def proposals(*changes_lists):
    return json.dumps({"proposals": [{"changes": [{"feature": f, "value": v} for f, v in c]} for c in changes_lists]})


async def test_constraint_violations_are_rejected_and_never_queried(table_box):
    backend = FakeBackend(
        default=proposals(
            [("income", 500)],  # above its maximum
            [("debt", 50)],  # may only decrease
            [("income", 60), ("debt", 30)],  # allowed, and flips
        )
    )
    constraints = {"age": {"immutable": True}, "income": {"max": 100}, "debt": {"direction": "decrease"}}
    result = await tabular_counterfactuals(
        LLM(backend), table_box, [[40, 30, 40]], constraints=constraints, candidates_per_round=4
    )
    explanation = result.explanations[0]
    assert [r.reason.split()[0] for r in explanation.rejected] == ["income", "debt"]
    assert table_box.stats().evaluated == 2
    [valid] = explanation.valid
    assert valid.values == {"age": 40, "income": 60, "debt": 30} and valid.edit_size == 2 and valid.prediction == "approve"
    for counterfactual in explanation.counterfactuals:
        assert counterfactual.values["age"] == 40  # the immutable feature never changes
    schema = json.dumps(backend.requests[0].json_schema)
    assert '"age"' not in schema  # the decoder is not even offered the immutable feature


async def test_a_reply_changing_an_immutable_feature_is_rejected_unqueried(table_box):
    backend = FakeBackend(default=proposals([("age", 99), ("income", 90)]))
    result = await tabular_counterfactuals(
        LLM(backend), table_box, [[40, 30, 40]], constraints={"age": {"immutable": True}}, max_rounds=2
    )
    explanation = result.explanations[0]
    assert explanation.counterfactuals == [] and explanation.valid == []
    assert all(r.reason == "the reply never matched the schema" for r in explanation.rejected)
    assert table_box.stats().evaluated == 1  # only the original row


async def test_tabular_retries_with_the_black_box_verdict(table_box):
    def reply(request):
        if "still deny" in request_text(request):
            return proposals([("income", 80)])
        return proposals([("income", 35)])

    backend = FakeBackend(default=reply)
    rows = [[40, 30, 40], [50, 20, 30]]
    result = await tabular_counterfactuals(
        LLM(backend), table_box, rows, candidates_per_round=1, label_names={"deny": "deny"}
    )
    assert [len(b) for b in backend.batches] == [2, 2]
    for explanation in result.explanations:
        assert explanation.counterfactuals[0].valid and explanation.counterfactuals[0].round == 2
        assert [c.valid for c in explanation.counterfactuals] == [True, False]
        assert explanation.blackbox_queries == 3


def test_constraints_are_validated_against_the_schema():
    with pytest.raises(ValueError, match="unknown feature"):
        validate_constraints(NAMES, {"salary": {"immutable": True}})
    with pytest.raises(ValueError, match="above max"):
        validate_constraints(NAMES, {"income": {"min": 5, "max": 1}})
    with pytest.raises(ValueError, match="every feature is immutable"):
        validate_constraints(NAMES, {n: {"immutable": True} for n in NAMES})
    with pytest.raises(ValueError, match="direction"):
        validate_constraints(NAMES, {"income": {"direction": "up"}})
    assert validate_constraints(NAMES, {"age": FeatureConstraint(immutable=True)})["income"] == FeatureConstraint()


async def test_count_features_take_whole_numbers_only_inferred_from_the_reference(table_box):
    """The LLM proposes 0.2 debts; with integer-valued training columns that is refused unqueried."""
    backend = FakeBackend(default=proposals([("debt", 0.2)], [("income", 45.5)], [("income", 60), ("debt", 30)]))
    reference = np.array([[30, 20, 10], [50, 70, 40], [45, 35.5, 0]])  # income has a fraction: not a count
    result = await tabular_counterfactuals(
        LLM(backend), table_box, [[40, 30, 40]], reference=reference, candidates_per_round=3
    )
    assert result.constraints["debt"].integer and result.constraints["age"].integer
    assert not result.constraints["income"].integer
    explanation = result.explanations[0]
    assert [r.reason for r in explanation.rejected] == ["debt 0.2 is not a whole number"]
    assert {tuple(c.values.values()) for c in explanation.counterfactuals} == {(40, 45.5, 40), (40, 60, 30)}
    assert "whole numbers only" in request_text(backend.requests[0])
    # said explicitly, a constraint wins over the inference
    explicit = validate_constraints(NAMES, {"debt": {"integer": False}}, reference)
    assert not explicit["debt"].integer and explicit["age"].integer


async def test_bad_constraints_send_nothing(table_box):
    backend = FakeBackend(default=proposals([("income", 80)]))
    with pytest.raises(ValueError, match="unknown feature"):
        await tabular_counterfactuals(LLM(backend), table_box, [[1, 2, 3]], constraints={"zip": {"min": 0}})
    with pytest.raises(ValueError, match="features"):
        await tabular_counterfactuals(LLM(backend), table_box, [[1, 2]])
    assert backend.batches == [] and table_box.stats().queries == 0


@pytest.mark.parametrize("mode", ["target", "concept", "causal", "guided", "tabular"])
async def test_each_rows_cost_counts_the_black_box_queries_the_method_made(mode, text_box, table_box):
    def reply(request):
        text = request_text(request)
        if '"features"' in text:
            return json.dumps({"features": ["negative tone"]})
        if '"words"' in text and "Removing the word" not in text:
            return json.dumps({"words": ["awful"]})
        if "Removing the word" in text:
            word = re.search(r'Removing the word "(\w+)"', text).group(1)
            return json.dumps({"words": [SWAPS.get(word, "okay")]})
        if '"proposals"' in json.dumps(request.json_schema):
            return proposals([("income", 60), ("debt", 30)])
        return edits_reply(swap(data_block(request), SWAPS))

    backend = FakeBackend(default=reply)
    box = table_box if mode == "tabular" else text_box
    rows = [[40, 30, 40], [50, 20, 30]] if mode == "tabular" else ["awful rude food", "great staff", "bland soup"]
    if mode in ("tabular", "guided"):
        options = {"strategy": "llm" if mode == "tabular" else "guided"}
    else:
        options = {"strategy": "llm", "mode": mode, **({"concept": "food"} if mode == "concept" else {})}
    context = MethodContext(llm=LLM(backend), blackbox=box)
    results = await run_method(catalog()["counterfactual"], context, rows, options)
    assert all(not isinstance(r, Exception) for r in results), results
    costs = [r.cost for r in results]
    assert sum(c.blackbox_queries for c in costs) == box.stats().evaluated > len(rows)
    assert sum(c.llm.calls for c in costs) >= len(backend.requests) > 0  # guided mode also scores fluency
    assert all(c.seconds > 0 for c in costs)
