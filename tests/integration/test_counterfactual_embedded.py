"""Counterfactuals on the embedded model: one text, one tabular row. The prose is the model's; what is asserted is
the verification — every candidate's label is the black box's own, and constraints hold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from xplain.blackbox import from_estimator
from xplain.data.datasets import tabular_dataset, text_dataset
from xplain.methods.counterfactual_tabular import tabular_counterfactuals
from xplain.methods.counterfactual_text import text_counterfactuals, token_edit_distance

pytestmark = pytest.mark.integration



async def test_text_counterfactuals_are_verified_by_the_black_box(embedded_llm):
    data = text_dataset(n=300)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=500)).fit(data.texts_train, data.y_train)
    blackbox = from_estimator(model, kind="text")
    text = next(t for t in data.texts_test if len(t) < 120)
    result = await text_counterfactuals(embedded_llm, blackbox, [text], max_rounds=2, label_names={0: "negative", 1: "positive"})
    [explanation] = result.explanations
    assert explanation.original_prediction == model.predict([text])[0]
    for candidate in explanation.counterfactuals:
        truth = model.predict_proba([candidate.text])[0]
        assert candidate.prediction == model.classes_[np.argmax(truth)]
        assert candidate.valid == (candidate.prediction != explanation.original_prediction)
        assert candidate.edit_size == token_edit_distance(text, candidate.text) > 0
    assert explanation.blackbox_queries == 1 + len(explanation.counterfactuals)
    assert 1 <= explanation.rounds_used <= 2 and result.cost.llm.calls >= explanation.rounds_used


async def test_tabular_counterfactuals_keep_constraints_and_are_verified(embedded_llm):
    data = tabular_dataset("synthetic")
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(data.X_train, data.y_train)
    blackbox = from_estimator(model, feature_names=data.feature_names)
    row = data.X_test[0]
    constraints = {"x0": {"immutable": True}, "x1": {"min": -3, "max": 3}, "x2": {"direction": "increase"}}
    result = await tabular_counterfactuals(
        embedded_llm, blackbox, [row], constraints=constraints, reference=data.X_train, max_rounds=2
    )
    [explanation] = result.explanations
    for candidate in explanation.counterfactuals:
        values = np.array(list(candidate.values.values()))  # column -> value, in column order
        assert values[0] == row[0]
        assert -3 <= values[1] <= 3 or values[1] == row[1]
        assert values[2] >= row[2]
        assert candidate.edit_size == int(np.sum(values != row))
        assert candidate.prediction == model.predict(values[None, :])[0]
        assert candidate.valid == (candidate.prediction != explanation.original_prediction)
    assert explanation.blackbox_queries == 1 + len(explanation.counterfactuals)
