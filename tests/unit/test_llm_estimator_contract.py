"""The scikit-learn contract of the LLM-backed estimators with an LLM that cannot be copied (like llama.cpp's,
which holds a queue): clone, GridSearchCV, cross_val_score and pickling work, shared caches stay shared, and
bad targets raise scikit-learn's usual errors."""

from __future__ import annotations

import json
import pickle
import queue

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.llm_estimator import resolve_llm
from xplain.methods.lml_dap import LMLDAPClassifier
from xplain.methods.tbm import MeasurementCache, TextBottleneckClassifier
from xplain.settings import Settings

X = np.array([[0.0, 5.0], [0.2, 4.0], [0.1, 6.0], [0.3, 5.5], [3.0, 5.0], [3.2, 4.5], [2.9, 6.0], [3.1, 4.1]])
Y = np.array(["low"] * 4 + ["high"] * 4)
TEXTS = ["great fun", "great acting", "dull plot", "so dull", "great joy", "dull mess"] * 2
LABELS = np.array([1, 1, 0, 0, 1, 0] * 2)


class QueueBackend(FakeBackend):
    """A fake that holds what llama.cpp's backend holds: a SimpleQueue, which neither deepcopy nor pickle take."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.slots = queue.SimpleQueue()


def lml_llm() -> LLM:
    def predict(request):
        value = float(request.messages[-1].content.split("new row: x0=")[1].split(",")[0])
        return json.dumps({"label": "high" if value > 1.5 else "low", "confidence": 0.9, "reasons": ["x0"]})

    return LLM(
        QueueBackend(
            rules=[
                (r"List up to", '{"patterns": ["p"]}'),
                (r"Give up to", '{"conditions": [{"feature": "x0", "op": ">", "value": -99}]}'),
                (r"Predict the label", predict),
            ]
        )
    )


def tbm_llm() -> LLM:
    def rate(request):
        body = request.messages[-1].content.split("<data>")[1]
        return json.dumps({"rating": 2 if "great" in body else 0})

    return LLM(QueueBackend(rules=[(r"Rate how much", rate)]))


def test_the_unpicklable_llm_really_breaks_a_plain_deepcopy():
    import copy

    with pytest.raises(TypeError, match="SimpleQueue"):
        copy.deepcopy(LLM(QueueBackend()))


@pytest.mark.parametrize("make", [lambda: LMLDAPClassifier(lml_llm(), k=2),
                                  lambda: TextBottleneckClassifier(tbm_llm(), concepts=[("p", "Is it great?")],
                                                                   n_iterations=0)])  # fmt: skip
def test_clone_keeps_the_llm_by_reference_and_copies_the_rest(make):
    estimator = make()
    twin = clone(estimator)
    assert twin is not estimator and twin.llm is estimator.llm
    params, copied = estimator.get_params(deep=False), twin.get_params(deep=False)
    assert {n: v for n, v in params.items() if n != "llm"} == {n: v for n, v in copied.items() if n != "llm"}


def test_grid_search_and_cross_val_score_run_with_an_explicit_llm():
    llm = lml_llm()
    search = GridSearchCV(LMLDAPClassifier(llm), {"k": [1, 3]}, cv=2, n_jobs=1).fit(X, Y)
    assert search.best_params_["k"] in (1, 3) and search.best_score_ == pytest.approx(1.0)
    scores = cross_val_score(LMLDAPClassifier(llm, k=2), X, Y, cv=2, n_jobs=1)
    assert scores.tolist() == [1.0, 1.0]


def test_a_shared_measurement_cache_survives_clone_so_cross_validation_measures_each_pair_once():
    llm, cache = tbm_llm(), MeasurementCache()
    model = TextBottleneckClassifier(llm, concepts=[("praise", "Is it great?")], n_iterations=0, cache=cache)
    assert clone(model).cache is cache
    cross_val_score(model, TEXTS, LABELS, cv=3, n_jobs=1)
    assert len(cache) == len(set(TEXTS))  # every distinct text rated once, across all folds
    assert len(llm.backend.requests) == len(set(TEXTS))


def test_pickling_sends_an_unpicklable_llm_as_its_settings(monkeypatch):
    monkeypatch.setattr("xplain.methods.llm_estimator.get_settings", lambda: Settings(llm_backend="fake", cache_enabled=False))
    fitted = LMLDAPClassifier(lml_llm(), k=2).fit(X, Y)
    copy = pickle.loads(pickle.dumps(fitted))
    assert isinstance(copy.llm, Settings) and copy.llm.llm_backend == "fake"
    assert copy.summaries_ == fitted.summaries_
    assert len(copy.predict(X)) == len(X)  # the fake backend is rebuilt from the settings on first use
    assert fitted.llm.backend.slots is not None  # the original keeps its own LLM


def test_llm_given_as_settings_or_name_is_resolved_once_at_fit():
    settings = Settings(llm_backend="fake", cache_enabled=False)
    assert resolve_llm(settings) is resolve_llm(settings.model_copy())  # one LLM per distinct settings
    fitted = LMLDAPClassifier(settings, k=2).fit(X, Y)
    assert isinstance(fitted.llm_, LLM) and fitted.llm is settings
    with pytest.raises(ValueError, match="not a backend name"):
        LMLDAPClassifier("gpt", k=2).fit(X, Y)


def test_single_class_and_nan_raise_sklearns_usual_errors():
    with pytest.raises(ValueError, match="only one class"):
        LMLDAPClassifier(lml_llm()).fit(X, ["low"] * len(X))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        LMLDAPClassifier(lml_llm()).fit(np.where(X > 3.1, np.nan, X), Y)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        LMLDAPClassifier(lml_llm()).fit(X, np.where(Y == "low", 1.0, np.nan))
    tbm = TextBottleneckClassifier(tbm_llm(), concepts=[("p", "Is it great?")], n_iterations=0)
    with pytest.raises(ValueError, match="only one class"):
        tbm.fit(TEXTS, np.ones(len(TEXTS)))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        tbm.fit([*TEXTS[:-1], np.nan], LABELS)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        tbm.fit(TEXTS, np.where(LABELS == 1, 1.0, np.nan))
