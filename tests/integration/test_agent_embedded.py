"""The agent end to end on the embedded model (SmolLM2-135M through llama.cpp, tools picked by constrained JSON):
one question about a scikit-learn model. The model is weak, so the test asserts on the tool trace — a registered
tool ran on valid arguments, and its result is what the answer carries — never on the prose."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from xplain.agent import ExplainerAgent
from xplain.blackbox import from_estimator
from xplain.data.datasets import tabular_dataset
from xplain.tools import ProbeContext, tool_names

pytestmark = pytest.mark.integration



async def test_a_question_about_a_sklearn_model_is_answered_from_a_tool_result(embedded_llm):
    data = tabular_dataset("synthetic")
    names = np.array(data.class_names)
    model = LogisticRegression().fit(data.X_train, names[data.y_train])
    blackbox = from_estimator(model, feature_names=data.feature_names)
    context = ProbeContext(blackbox, data.X_test[:50], names[data.y_test[:50]], "A logistic regression.")
    agent = ExplainerAgent(embedded_llm, context, max_steps=3)

    answer = await agent.ask("embedded", "What does the model predict for row 2?")

    assert answer.tool_calls, f"no tool was called; the model said {answer.text!r}"
    assert {c.name for c in answer.tool_calls} <= set(tool_names())
    results = [json.loads(c.output) for c in answer.tool_calls]
    good = [r for r in results if "error" not in r]
    assert good, f"every tool call failed: {results}"
    # a prediction in the trace is the black box's own, re-queried here
    for call, result in zip(answer.tool_calls, results):
        if call.name == "predict" and "error" not in result:
            expected = model.predict_proba(data.X_test[call.arguments["row"] : call.arguments["row"] + 1])[0]
            assert list(result["prediction"]["probabilities"].values()) == [round(float(p), 4) for p in expected]
    if answer.stopped != "answered":  # the turn ended on the tool trace: the answer is the last result's template
        assert "{" not in answer.text and answer.ungrounded_numbers == []
        assert answer.text.startswith(("The ", "For ", "Across ", "On ", "I could not"))
    assert answer.model_calls <= 3 and answer.usage.calls == answer.model_calls
