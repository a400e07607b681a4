"""Row methods on the fake LLM: one LLM batch per chunk, bad rows answered in place, checks reported."""

from __future__ import annotations

import json

from xplain.batch.methods import MethodContext, get_method
from xplain.data.demo import demo_blackbox, demo_reference
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend


async def run(method: str, backend: FakeBackend, rows: list, model: str = "reviews", **options):
    row_method = get_method(method)
    context = MethodContext(llm=LLM(backend), blackbox=demo_blackbox(model))
    return await row_method.run(context, rows, row_method.options_model(**options))


async def test_zero_shot_scores_the_whole_chunk_in_one_batch_and_compares_with_the_black_box():
    backend = FakeBackend(token_logprob=lambda previous, token: -0.1 if token == "good" else -3.0)
    results = await run("zero_shot", backend, ["a warm film", {"text": "a dull film"}, 7], label_names={"negative": "bad", "positive": "good"})
    assert isinstance(results[2], ValueError)
    assert len(backend.score_batches) == 1 and len(backend.score_batches[0]) == 2
    for result in results[:2]:
        assert result["llm_label"] == "positive", "the scripted LLM always prefers ' good'"
        assert result["agrees"] == (result["blackbox"]["label"] == "positive")


async def test_counterfactual_marks_valid_only_what_the_black_box_confirms():
    flips = json.dumps({"edits": ["dull , lifeless and tedious"]})
    keeps = json.dumps({"edits": ["a warm , funny and moving film indeed"]})
    backend = FakeBackend(rules=[(r"warm , funny and moving film\n", flips), (r"superb", keeps)], default=keeps)
    rows = ["a warm , funny and moving film", "the cast is superb", ["not", "text"]]
    results = await run("counterfactual", backend, rows, max_rounds=1)
    assert isinstance(results[2], ValueError)
    first, second = results[:2]
    assert first["original_prediction"] == "positive"
    assert [c["valid"] for c in first["counterfactuals"]] == [True]
    assert first["counterfactuals"][0]["prediction"] == "negative"
    assert not any(c["valid"] for c in second["counterfactuals"]), "an edit that does not flip is never valid"
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 2, "both rows in one LLM round"
    assert first["prompt_versions"]


async def test_predict_needs_no_llm_and_keeps_row_order():
    results = await run("predict", FakeBackend(), [[0.0] * 6, "x", [1.0] * 6], model="synthetic")
    assert isinstance(results[1], ValueError)
    assert set(results[0]["probabilities"]) == {"negative", "positive"}
    assert results[0]["label"] in ("negative", "positive") and results[2]["label"] in ("negative", "positive")


async def test_posthoc_uses_the_models_reference_rows_and_reports_its_check():
    reply = json.dumps({"features": [{"feature": "A", "direction": "+", "rationale": "r"}]})
    backend = FakeBackend(default=reply)
    row_method = get_method("posthoc")
    reference = demo_reference("synthetic").rows
    context = MethodContext(llm=LLM(backend), blackbox=demo_blackbox("synthetic"), reference=reference)
    results = await row_method.run(context, [list(reference[0]), list(reference[1])], row_method.options_model(k=1))
    # letters are shuffled per row: "A" is whichever feature the row's mapping says
    assert [r["features"][0]["feature"] for r in results] == [r["letters"][0]["A"] for r in results]
    assert all(r["pgi"] is not None and r["pgu"] is not None for r in results)
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 2, "both rows in one LLM round"


async def test_posthoc_without_background_says_what_to_pass():
    import pytest

    with pytest.raises(ValueError, match="options.background"):
        await run("posthoc", FakeBackend(), [[0.0] * 6], model="synthetic")
