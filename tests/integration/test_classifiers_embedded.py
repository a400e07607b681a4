"""LML-DAP and the Text Bottleneck Model fit and predict on the embedded model: structure, not accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from xplain.evals.lml import load_table
from xplain.evals.tbm import synthetic_concepts
from xplain.methods.lml_dap import LMLDAPClassifier
from xplain.methods.persistence import load_classifier, save_classifier
from xplain.methods.tbm import TextBottleneckClassifier

pytestmark = pytest.mark.integration


async def test_lml_dap_predicts_labels_with_reasons_and_retrieved_rows(embedded_llm):
    X, y, names = load_table("iris")
    train, test = (
        [0, 1, 50, 51, 100, 101],
        [102],
    )  # two rows per iris species to learn from, one to predict
    X_train, X_test, y_train = X[train], X[test], y[train]
    clf = await LMLDAPClassifier(
        embedded_llm, feature_names=names, k=3, max_summary_chunks=1
    ).afit(X_train, y_train)
    explanation = await clf.aexplain(X_test)
    assert (
        len(explanation.predictions) == len(X_test) and explanation.cost.llm.calls > 0
    )
    for p in explanation.predictions:
        assert p.label in clf.classes_
        assert abs(sum(p.probabilities.values()) - 1) < 1e-9
        assert len(p.retrieved_rows) == 3 and all(
            0 <= i < len(X_train) for i in p.retrieved_rows
        )
        assert p.fallback or p.reasons  # an answer the LLM gave carries its reasons
        assert all(
            c.feature in names for c in p.conditions
        )  # only conditions on real features were applied


async def test_tbm_learns_finite_concept_weights_and_round_trips(
    embedded_llm, tmp_path
):
    data = synthetic_concepts(12)
    texts, labels = data.texts_train[:4], data.y_train[:4]
    assert len(set(labels)) == 2
    clf = TextBottleneckClassifier(
        embedded_llm, n_iterations=1, max_concepts=2, batch_texts=4, max_batches=1
    )
    await clf.afit(texts, labels)
    assert 1 <= len(clf.concepts_) <= 2
    assert np.isfinite(clf.weights_).all() and clf.weights_.shape[1] == len(
        clf.concepts_
    )
    new = data.texts_test[:1]
    proba = await clf.apredict_proba(new)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    loaded = load_classifier(save_classifier(clf, tmp_path / "tbm"), llm=embedded_llm)
    np.testing.assert_array_equal(
        await loaded.apredict_proba(new), proba
    )  # the new texts' ratings were saved too
