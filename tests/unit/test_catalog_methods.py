"""Catalog methods on the fake LLM: one LLM batch per chunk, bad rows answered in place, checks reported."""

from __future__ import annotations

import json

from xplain.methods.catalog import TEXT_SHARE_OF_CONTEXT as TEXT_SHARE, MethodContext, get_method, run_units
from xplain.data.demo import demo_blackbox, demo_reference
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend


async def run(method: str, backend: FakeBackend, rows: list, model: str = "reviews", **options):
    chosen = get_method(method)
    context = MethodContext(llm=LLM(backend), blackbox=demo_blackbox(model), reference=demo_reference(model).rows)
    results = await run_units(chosen, context, rows, chosen.parse_options(options))
    return [r if isinstance(r, Exception) else r.model_dump(mode="json") for r in results]


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
    results = await run("counterfactual", backend, rows, max_rounds=1, strategy="llm", mode="target")
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
    first, third = results[0]["prediction"], results[2]["prediction"]
    assert set(first["probabilities"]) == {"negative", "positive"}
    assert first["label"] in ("negative", "positive") and third["label"] in ("negative", "positive")


async def test_posthoc_uses_the_models_reference_rows_and_reports_its_check():
    reply = json.dumps({"features": [{"feature": "A", "direction": "+", "rationale": "r"}]})
    backend = FakeBackend(default=reply)
    reference = demo_reference("synthetic").rows
    results = await run("posthoc", backend, [list(reference[0]), list(reference[1])], model="synthetic", k=1)
    # letters are shuffled per row: "A" is whichever feature the row's mapping says
    assert [r["proposed"]["features"][0]["feature"] for r in results] == [r["letters"][0]["A"] for r in results]
    assert all(r["pgi"] is not None and r["pgu"] is not None and len(r["features"]) == 1 for r in results)
    assert len(backend.batches[0]) == 2, "both rows in one LLM round"
    assert len(backend.batches) <= 2 and all(len(b) <= 2 for b in backend.batches), "re-asked rows in one more"


async def test_posthoc_without_background_says_what_to_pass():
    import pytest

    method = get_method("posthoc")
    context = MethodContext(llm=LLM(FakeBackend()), blackbox=demo_blackbox("synthetic"))
    with pytest.raises(ValueError, match="options.background"):
        await run_units(method, context, [[0.0] * 6], method.parse_options({}))


async def test_unknown_option_is_refused_with_the_allowed_names():
    import pytest

    with pytest.raises(ValueError, match=r"unknown option\(s\) labelnames for zero_shot; allowed: label_names"):
        get_method("zero_shot").parse_options({"labelnames": {}})


async def test_a_text_too_short_for_k_fails_alone_and_the_others_are_explained():
    reply = json.dumps({"features": [{"feature": "warm", "direction": "+", "rationale": "r"}]})
    results = await run("posthoc", FakeBackend(default=reply), ["a warm and funny film", "ok"], k=2)
    assert results[0]["proposed"]["features"][0]["feature"] == "warm" and results[0]["pgi"] is not None
    assert len(results[0]["features"]) == 2, "a short answer is filled to k from the evidence"
    assert isinstance(results[1], ValueError) and "fewer than k=2" in str(results[1])


async def test_a_text_too_long_for_the_context_is_explained_from_a_window_with_a_note():
    long_text = "a warm and funny film " + " ".join(f"word{i}" for i in range(400))
    backend = FakeBackend(token_logprob=lambda previous, token: -0.1 if token == "positive" else -3.0, context_size=400)
    results = await run("zero_shot", backend, [long_text, "a dull film"])
    windowed, short = results
    assert windowed["notes"] and "cut to its first" in windowed["notes"][0] and not short["notes"]
    [prompt_long, prompt_short] = [r.prompt for r in backend.score_batches[0]]
    shown = prompt_long.split("<data>")[1].split("</data>")[0]
    assert len(shown.split()) <= 400 * TEXT_SHARE, "the LLM saw the window, not the whole text"
    assert "word399" not in prompt_long and "a warm and funny film" in prompt_long
