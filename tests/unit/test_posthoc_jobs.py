"""posthoc in jobs: LLM rounds merged across rows, every generated field bounded, a row's answer the same alone and
inside a job, and a proposal that fails its check re-asked once with the evidence before it is repaired."""

from __future__ import annotations

import json
import re

import numpy as np

from xplain.batch.runner import job_shape, run_rows
from xplain.blackbox import from_callable
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend, request_text
from xplain.llm.client import reply_bound
from xplain.methods.catalog import MethodContext, get_method
from xplain.methods.posthoc import PosthocOptions, explain_text
from tests.unit.test_posthoc import first_allowed_words, word_model

TEXTS = [f"film {i} was good and fine {'really ' * (i % 3)}for {i % 4} reasons" for i in range(20)]


class Rows:
    def __init__(self) -> None:
        self.outcomes = []

    async def record(self, outcomes) -> None:
        self.outcomes += outcomes


def word_box():
    return from_callable(word_model, kind="text", classes=["negative", "positive"])


async def run_job(backend: FakeBackend, texts: list[str], options: dict, **shape) -> dict[int, dict]:
    method = get_method("posthoc")
    rows = Rows()
    context = MethodContext(llm=LLM(backend), blackbox=word_box())
    await run_rows(method, context, list(enumerate(texts)), method.parse_options(options), sink=rows, **shape)
    assert all(o.ok for o in rows.outcomes)
    return {o.index: o.result for o in rows.outcomes}


def first_round(backend: FakeBackend) -> list[list]:
    return [b for b in backend.batches if "not kept" not in request_text(b[0])]


async def test_a_job_sends_one_llm_round_per_chunk_sized_to_the_backend():
    backend = FakeBackend(rules=[(r".", first_allowed_words)], parallelism=8)
    await run_job(backend, TEXTS, {"k": 2, "n_samples": 10, "n_examples": 4})
    asked = first_round(backend)
    assert sorted(len(b) for b in asked) == [4, 8, 8], "20 rows in rounds of the backend's 8, not 5 rounds of 4"
    assert len(backend.batches) <= 2 * len(asked), "at most one follow-up round (the re-ask) per chunk"
    assert sum(len(b) for b in asked) == len(TEXTS)
    # an explicit shape still wins, and a method without an LLM keeps its own
    assert job_shape(get_method("posthoc"), LLM(backend), None, None) == (2, 8)
    assert job_shape(get_method("posthoc"), LLM(backend), 3, 5) == (3, 5)
    assert job_shape(get_method("lime"), LLM(backend), None, None) == (8, 4)


async def test_every_generated_field_is_bounded_and_rationales_only_when_asked():
    for rationales in (False, True):
        backend = FakeBackend(rules=[(r".", first_allowed_words)])
        await run_job(backend, TEXTS[:3], {"k": 3, "n_samples": 10, "rationales": rationales})
        for request in backend.requests:
            item = request.json_schema["$defs"]["RankedFeature"]["properties"]
            assert ("rationale" in item) == rationales
            if rationales:
                assert item["rationale"]["maxLength"] == 120
            assert request.max_tokens == reply_bound(request.json_schema) and request.max_tokens < 1000
            assert ("short reason" in request_text(request)) == rationales
    # without rationales the bound is a fraction of the old fixed 300 tokens for k=3 words
    backend = FakeBackend(rules=[(r".", first_allowed_words)])
    await run_job(backend, ["a good fine movie tonight"], {"k": 3, "n_samples": 10})
    assert backend.requests[0].max_tokens < 200


def test_reply_bound_is_the_longest_compact_reply_plus_whitespace():
    schema = {
        "type": "object",
        "properties": {
            "a": {"enum": ["xy", "z"]},
            "b": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 3}},
        },
    }
    longest = len(json.dumps({"a": "xy", "b": ["abc", "abc"]}, separators=(",", ":")))
    bound = reply_bound(schema)
    assert longest <= bound <= longest + 2 * 2 * 8  # two whitespace tokens at each of at most 8 separators
    assert reply_bound({"type": "object", "properties": {"s": {"type": "string"}}}) is None
    assert reply_bound({"type": "array", "items": {"type": "integer"}}) is None


async def test_a_row_alone_and_inside_a_job_gets_the_same_answer():
    backend = FakeBackend(rules=[(r".", first_allowed_words)], parallelism=8)
    options = {"k": 2, "n_samples": 12, "n_examples": 4}
    job = await run_job(backend, TEXTS, options)
    for position in (0, 11, 19):
        [alone] = await explain_text(LLM(FakeBackend(rules=[(r".", first_allowed_words)])), word_box(),
                                     [TEXTS[position]], PosthocOptions(**options))  # fmt: skip
        inside = job[position]
        alone = alone.model_dump(mode="json")
        for field in ("features", "proposed", "reasked", "evidence_only", "pgi", "pgu", "faithfulness", "repair"):
            assert alone[field] == inside[field], field
    # and in another chunk shape
    other = await run_job(FakeBackend(rules=[(r".", first_allowed_words)]), TEXTS, options, chunk_size=3)
    assert all(other[i]["features"] == job[i]["features"] for i in job)


def junk_then(follow):
    """A bad reader: filler words with junk rationales; when re-asked, `follow(evidence words)` answers."""

    def reply(request):
        text = request_text(request)
        if "not kept" not in text:
            return json.dumps({"features": [{"feature": w, "direction": "+", "rationale": "1.1.1.1.1"}
                                            for w in ("a", "movie")]})  # fmt: skip
        evidence = re.search(r"<evidence>\n(.*?)\n</evidence>", text, re.S).group(1)
        return follow([line.split(":")[0] for line in evidence.splitlines()])

    return reply


async def test_a_bad_reader_is_reasked_with_the_evidence_and_then_repaired():
    stubborn = junk_then(lambda words: json.dumps({"features": [{"feature": "a", "direction": "-", "rationale": "1.1"},
                                                               {"feature": "tonight", "direction": "+", "rationale": "1"}]}))  # fmt: skip
    backend = FakeBackend(rules=[(r".", stubborn)])
    options = PosthocOptions(k=2, n_samples=40, rationales=True)
    [result] = await explain_text(LLM(backend), word_box(), ["a good fine movie tonight here"], options)
    assert len(backend.batches) == 2 and len(backend.batches[1]) == 1, "asked, then re-asked once"
    reask = request_text(backend.batches[1][0])
    assert "<evidence>" in reask and "good: " in reask  # the occlusion deltas, by the text's own words
    assert result.proposed.faithfulness.verdict != "faithful"
    assert [f.feature for f in result.reasked.features] == ["a", "tonight"]
    assert result.reasked.faithfulness is not None and result.reasked.faithfulness.verdict != "faithful"
    assert result.faithfulness.verdict == "faithful" and len(result.features) == 2
    assert "good" in [f.feature for f in result.features]
    assert result.repair.startswith("repaired") and "re-ask with the evidence" in result.repair
    assert all("1.1" not in f.rationale and f.rationale for f in result.features)
    assert "posthoc/reask@1" in result.prompt_versions


async def test_a_reader_that_takes_the_evidence_is_returned_as_reasked():
    following = junk_then(lambda words: json.dumps({"features": [{"feature": w, "direction": "+"} for w in words[:2]]}))
    backend = FakeBackend(rules=[(r".", following)])
    [result] = await explain_text(LLM(backend), word_box(), ["a good fine movie tonight here"],
                                  PosthocOptions(k=2, n_samples=40))  # fmt: skip
    assert [f.feature for f in result.features] == [f.feature for f in result.reasked.features]
    assert {f.feature for f in result.features} == {"good", "fine"}
    assert result.repair.startswith("re-asked") and result.llm_features_kept == 2
    assert result.faithfulness.verdict == "faithful"
    assert result.llm_added_value is not None and abs(result.llm_added_value) < 1e-9  # it only copied the evidence
    assert np.isclose(result.faithfulness.estimate, result.evidence_only.faithfulness.estimate)
