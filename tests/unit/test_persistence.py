import json
import re

import numpy as np
import pytest
import skops.io as sio

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.lml_dap import LMLDAPClassifier
from xplain.methods.persistence import load_classifier, save_classifier
from xplain.methods.tbm import MeasurementCache, TextBottleneckClassifier

X = np.array([[0.0, 5.0], [0.2, 4.0], [0.1, 6.0], [3.0, 5.0], [3.2, 4.5], [2.9, 6.0]])
Y = np.array(["low", "low", "low", "high", "high", "high"])
TEXTS = [
    "great fun film",
    "lovely great acting",
    "dull boring plot",
    "boring and dull",
    "great joy",
    "dull mess",
]
LABELS = np.array([1, 1, 0, 0, 1, 0])


def lml_backend():
    def predict(request):
        value = float(
            request.messages[-1].content.split("new row: a=")[1].split(",")[0]
        )
        return json.dumps(
            {
                "label": "high" if value > 1.5 else "low",
                "confidence": 0.5 + value / 10,
                "reasons": ["a"],
            }
        )

    return FakeBackend(
        rules=[
            (r"List up to 3 short patterns", json.dumps({"patterns": ["a is small"]})),
            (
                r"Give up to 3 conditions",
                json.dumps({"conditions": [{"feature": "a", "op": ">", "value": 1.5}]}),
            ),
            (r"Predict the label", predict),
        ]
    )


def tbm_backend():
    def rate(request):
        text = request.messages[-1].content
        keyword = re.search(r"Concept: .*?(\w+)\?", text).group(1)
        return json.dumps({"rating": 2 if keyword in text.split("<data>")[1] else 0})

    proposals = {
        "concepts": [
            {"name": "praise", "question": "Does it say great?"},
            {"name": "complaint", "question": "Does it say dull?"},
        ]
    }
    return FakeBackend(
        rules=[(r"Rate how much", rate), (r"Propose up to", json.dumps(proposals))]
    )


def test_lml_round_trip_predicts_identically(tmp_path):
    clf = LMLDAPClassifier(LLM(lml_backend()), feature_names=["a", "b"], k=3).fit(X, Y)
    new = np.array([[0.3, 5.0], [2.5, 4.0], [1.9, 5.5]])
    save_classifier(clf, tmp_path / "lml")
    loaded = load_classifier(tmp_path / "lml", llm=LLM(lml_backend()))
    assert isinstance(loaded, LMLDAPClassifier) and loaded.llm is not clf.llm
    assert loaded.get_params()["k"] == 3 and loaded.summaries_ == clf.summaries_
    np.testing.assert_array_equal(loaded.predict_proba(new), clf.predict_proba(new))
    assert [p.retrieved_rows for p in loaded.explain(new).predictions] == [
        p.retrieved_rows for p in clf.explain(new).predictions
    ]


def test_tbm_round_trip_predicts_identically_and_keeps_the_cache(tmp_path):
    clf = TextBottleneckClassifier(
        LLM(tbm_backend()), n_iterations=1, cache=MeasurementCache()
    ).fit(TEXTS, LABELS)
    save_classifier(clf, tmp_path / "tbm")
    fresh = tbm_backend()
    loaded = load_classifier(tmp_path / "tbm", llm=LLM(fresh))
    assert [c.name for c in loaded.concepts_] == [c.name for c in clf.concepts_]
    np.testing.assert_array_equal(loaded.weights_, clf.weights_)
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), clf.predict_proba(TEXTS))
    assert fresh.requests == []  # the training texts' ratings came back with the model
    new = ["great dull thing", "nothing here"]
    np.testing.assert_array_equal(loaded.predict_proba(new), clf.predict_proba(new))
    assert len(fresh.requests) == len(new) * len(clf.concepts_)


def test_a_tampered_arrays_file_is_refused(tmp_path):
    clf = LMLDAPClassifier(LLM(lml_backend()), feature_names=["a", "b"]).fit(X, Y)
    directory = save_classifier(clf, tmp_path / "lml")
    sio.dump({"classes_": MeasurementCache()}, directory / "arrays.skops")
    with pytest.raises(
        ValueError, match=r"untrusted type.*xplain\.methods\.tbm\.MeasurementCache"
    ):
        load_classifier(directory)


def test_bad_directories_are_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="not a saved classifier"):
        load_classifier(tmp_path)
    clf = LMLDAPClassifier(LLM(lml_backend()), feature_names=["a", "b"]).fit(X, Y)
    directory = save_classifier(clf, tmp_path / "lml")
    document = json.loads((directory / "model.json").read_text())
    (directory / "model.json").write_text(json.dumps({**document, "kind": "forest"}))
    with pytest.raises(ValueError, match="kind 'forest'"):
        load_classifier(directory)
    with pytest.raises(ValueError, match="not fitted"):
        save_classifier(LMLDAPClassifier(), tmp_path / "unfitted")
