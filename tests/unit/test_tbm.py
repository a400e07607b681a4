import json
import re

import numpy as np
import pytest

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.tbm import MeasurementCache, TextBottleneckClassifier

TEXTS = ["great fun film", "lovely great acting", "dull boring plot", "boring and dull", "great joy", "dull mess"] * 2
Y = np.array([1, 1, 0, 0, 1, 0] * 2)


def rate(request):
    """Rates 2 when the concept's keyword (the question's last word) is in the text."""
    text = request.messages[-1].content
    keyword = re.search(r"Concept: .*?(\w+)\?", text).group(1)
    body = text.split("<data>")[1]
    return json.dumps({"rating": 2 if keyword in body else 0})


def backend(proposals=None):
    proposals = proposals or {"concepts": [{"name": "praise", "question": "Does it say great?"}]}
    return FakeBackend(rules=[(r"Rate how much", rate), (r"Propose up to", json.dumps(proposals))])


def test_generation_and_measurement_are_one_batch_each_and_layer_is_sparse():
    fake = backend({"concepts": [{"name": "praise", "question": "Does it say great?"},
                                 {"name": "Praise!", "question": "is it praise"},
                                 {"name": "noise", "question": "Does it say zebra?"}]})
    clf = TextBottleneckClassifier(LLM(fake), n_iterations=1, batch_texts=4, C=0.5).fit(TEXTS, Y)
    assert [c.name for c in clf.concepts_] == ["praise", "noise"]  # "Praise!" de-duplicated
    generation, measurement = fake.batches
    assert len(generation) == 3  # 12 texts in batches of 4, one round
    assert len(measurement) == len(set(TEXTS)) * 2  # every (distinct text, concept) pair, one round
    weights = {c.concept: c.weight for c in clf.global_explanation()}
    assert weights["praise"] > 0 and weights["noise"] == 0.0  # L1 zeroes the constant concept
    assert (clf.predict(TEXTS) == Y).all()


def test_refit_with_one_new_concept_measures_each_text_once():
    fake = backend()
    cache = MeasurementCache()
    first = [("praise", "Does it say great?")]
    clf = TextBottleneckClassifier(LLM(fake), concepts=first, n_iterations=0, cache=cache).fit(TEXTS, Y)
    before = len(fake.requests)
    clf.set_params(concepts=first + [("complaint", "Does it say dull?")]).fit(TEXTS, Y)
    new = fake.requests[before:]
    assert len(new) == len(set(TEXTS))
    assert all("dull?" in r.messages[-1].content for r in new)
    assert len(fake.batches[-1]) == len(set(TEXTS))


def test_local_explanation_contributions_add_to_the_logit():
    clf = TextBottleneckClassifier(LLM(backend()), concepts=[("complaint", "Does it say dull?")], n_iterations=0)
    clf.fit(TEXTS, Y)
    explanation = clf.explain(["dull film"])
    text = explanation.texts[0]
    assert text.label == "0"
    logit = clf.layer_.decision_function(np.array([[1.0]]))[0]
    assert sum(c.contribution for c in text.contributions) == pytest.approx(-(logit - clf.layer_.intercept_[0]))
    assert explanation.prompt_versions == ["tbm/generate@1", "tbm/measure@1"]


def test_bad_input_is_a_clear_error():
    clf = TextBottleneckClassifier(LLM(backend()), n_iterations=1)
    with pytest.raises(ValueError, match="string"):
        clf.fit([1, 2], [0, 1])
    with pytest.raises(ValueError, match="labels"):
        clf.fit(["a", "b"], [0])
    with pytest.raises(ValueError, match="nothing to measure"):
        TextBottleneckClassifier(LLM(backend()), n_iterations=0).fit(TEXTS, Y)


async def test_sync_fit_works_inside_a_running_loop():
    clf = TextBottleneckClassifier(LLM(backend()), concepts=[("praise", "Does it say great?")], n_iterations=0)
    assert (clf.fit(TEXTS, Y).predict(TEXTS) == (await clf.apredict(TEXTS))).all()


async def test_eval_reports_a_data_set_without_usable_concepts_as_a_note():
    from xplain.evals.tbm import run

    table = await run(LLM(FakeBackend(default="no concepts here")), "small")
    rows = table.as_records()
    assert len(rows) == 2
    for row in rows:
        assert row["tbm"] is None and "no usable concept" in row["note"] and 0 <= row["tfidf_logistic"] <= 1
