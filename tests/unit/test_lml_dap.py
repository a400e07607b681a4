import json

import numpy as np
import pytest
from sklearn.base import clone

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.lml_dap import LMLDAPClassifier

X = np.array([[0.0, 5.0], [0.2, 4.0], [0.1, 6.0], [3.0, 5.0], [3.2, 4.5], [2.9, 6.0]])
Y = np.array(["low", "low", "low", "high", "high", "high"])


def predict_reply(request):
    """Answers 'high' when the new row's first feature is above 1.5 — read from the prompt's data block."""
    new_row = request.messages[-1].content.split("new row: a=")[1]
    value = float(new_row.split(",")[0])
    return json.dumps({"label": "high" if value > 1.5 else "low", "confidence": 0.9, "reasons": ["a decides"]})


def backend(query=None):
    query = query or {"conditions": [{"feature": "a", "op": ">", "value": 1.5}, {"feature": "nope", "op": "<", "value": 1}]}
    return FakeBackend(
        rules=[
            (r"List up to 3 short patterns", json.dumps({"patterns": ["a is small"]})),
            (r"Give up to 3 conditions", json.dumps(query)),
            (r"Predict the label", predict_reply),
        ]
    )


def test_fit_summarises_each_label_in_one_batch():
    fake = backend()
    clf = LMLDAPClassifier(LLM(fake), feature_names=["a", "b"], chunk_rows=2).fit(X, Y)
    assert len(fake.batches) == 1 and len(fake.batches[0]) == 4  # 2 labels x 2 chunks of 3 rows
    assert set(clf.summaries_) == {"high", "low"}
    assert clf.summaries_["low"] == ["a is small"]


def test_predict_retrieves_by_valid_conditions_and_keeps_reasons():
    fake = backend()
    clf = LMLDAPClassifier(LLM(fake), feature_names=["a", "b"], k=2).fit(X, Y)
    fake.batches.clear()
    explanation = clf.explain(np.array([[0.05, 5.0], [3.1, 5.0]]))
    assert [len(b) for b in fake.batches] == [2, 2]  # one query round, one prediction round
    low, high = explanation.predictions
    assert [c.feature for c in low.conditions] == ["a"]  # the unknown feature was dropped
    assert set(low.retrieved_rows) <= {3, 4, 5}  # every retrieved row meets a > 1.5
    assert high.label == "high" and high.reasons == ["a decides"] and not high.fallback
    assert low.label == "low" and low.probabilities["low"] == pytest.approx(0.9)
    np.testing.assert_allclose(clf.predict_proba([[3.1, 5.0]]).sum(axis=1), 1.0)


def test_unusable_label_falls_back_to_the_retrieved_rows():
    fake = FakeBackend(
        rules=[(r"List up to", '{"patterns": ["p"]}'), (r"Give up to", '{"conditions": [{"feature": "x0", "op": ">", "value": -99}]}'),
               (r"Predict the label", '{"label": "purple", "confidence": 1.0, "reasons": ["r"]}')]
    )
    clf = LMLDAPClassifier(LLM(fake), k=3).fit(X, Y)
    prediction = clf.explain([[3.0, 5.1]]).predictions[0]
    assert prediction.fallback and prediction.label == "high"  # nearest neighbours are all 'high'


def test_score_probabilities_come_from_label_loglikelihoods():
    fake = backend()
    fake.token_logprob = lambda previous, token: -0.1 if token == "high" else -3.0
    clf = LMLDAPClassifier(LLM(fake), feature_names=["a", "b"], proba="score").fit(X, Y)
    proba = clf.predict_proba([[0.0, 5.0]])
    assert len(fake.score_batches) == 1
    assert proba[0, list(clf.classes_).index("high")] > 0.9


def test_params_clone_and_bad_input():
    clf = LMLDAPClassifier(k=3, proba="score")
    assert clone(clf).get_params()["k"] == 3
    with pytest.raises(ValueError, match="feature_names"):
        LMLDAPClassifier(LLM(backend()), feature_names=["a"]).fit(X, Y)
    with pytest.raises(ValueError, match="proba"):
        LMLDAPClassifier(LLM(backend()), proba="votes").fit(X, Y)


@pytest.mark.parametrize(
    ("reply", "label", "reasons", "fallback"),
    [
        # "Yes, confidence 0.3" contradicts itself: the old mapping turned it into "low" with the reasons for "high"
        ({"label": "high", "confidence": 0.3, "reasons": ["a is big"]}, "low", [], True),
        ({"label": "high", "confidence": 0.8, "reasons": ["a is big"]}, "high", ["a is big"], False),
    ],
)
def test_confidence_is_the_named_labels_probability_and_reasons_stay_with_their_label(reply, label, reasons, fallback):
    fake = FakeBackend(
        rules=[(r"List up to", '{"patterns": ["p"]}'), (r"Give up to", '{"conditions": [{"feature": "a", "op": "<", "value": 1}]}'),
               (r"Predict the label", json.dumps(reply))]
    )
    clf = LMLDAPClassifier(LLM(fake), feature_names=["a", "b"], k=3).fit(X, Y)
    prediction = clf.explain([[0.1, 5.0]]).predictions[0]  # its retrieved rows are all "low"
    assert (prediction.label, prediction.reasons, prediction.fallback) == (label, reasons, fallback)
    if not fallback:
        assert prediction.probabilities == pytest.approx({"high": 0.8, "low": 0.2})


def test_fit_reports_the_majority_and_a_simple_baselines_accuracy_to_beat():
    from xplain.methods.classifiers import baseline_accuracies

    rows = [[float(i), float(i % 2)] for i in range(8)]
    labels = ["odd" if i % 2 else "even" for i in range(8)]
    majority, baseline = baseline_accuracies(rows, labels, texts=False)
    assert majority == 0.5 and baseline == 1.0  # the second column gives parity away
    texts = ["good film", "great film", "bad film", "awful film", "good fun", "dull"]
    majority, baseline = baseline_accuracies(texts, ["p", "p", "n", "n", "p", "n"], texts=True)
    assert majority == 0.5 and baseline == 1.0
