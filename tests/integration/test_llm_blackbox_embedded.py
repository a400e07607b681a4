"""The embedded model's own sentiment decision as the black box, registered over REST and explained by LIME, a
counterfactual search and the same model's post-hoc explanation: every answer re-scored by the model."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.special import softmax

from xplain.llm import ScoreRequest
from xplain.methods.words import distinct_words
from xplain.server.app import create_app
from xplain.settings import Settings

pytestmark = pytest.mark.integration

TEMPLATE = (
    "<|im_start|>user\nIs this movie review positive or negative?\nReview: {text}<|im_end|>\n"
    "<|im_start|>assistant\nThe review is"
)
LABELS = {"negative": " negative", "positive": " positive"}
TEXT = "a warm, funny and wise film"


def test_the_embedded_models_decision_is_explained_over_rest(tmp_path):
    settings = Settings(llm_backend="llamacpp", cache_enabled=False, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    with TestClient(create_app(settings)) as api:
        registration = {"name": "smol", "source": {"llm": {"template": TEMPLATE, "labels": LABELS}}}
        assert api.post("/models", json=registration).status_code == 201

        def run(method: str, options: dict) -> dict:
            answer = api.post(f"/methods/{method}", json={"model": "smol", "rows": [TEXT], "options": options})
            assert answer.status_code == 200, answer.text
            [outcome] = answer.json()["results"]
            assert outcome["ok"], outcome["error"]
            return outcome["result"]

        [prediction] = api.post("/models/smol/predict", json={"inputs": [TEXT]}).json()["predictions"]
        llm = api.app.state.service.llm
        prompt = TEMPLATE.replace("{text}", TEXT)
        alone = api.portal.call(llm.score, [ScoreRequest(prompt=prompt, continuations=list(LABELS.values()))])
        expected = softmax(np.array(alone[0].logprobs))
        assert [prediction["probabilities"][label] for label in LABELS] == pytest.approx(expected, abs=1e-6)

        lime = run("lime", {"n_samples": 24, "k": 2})
        assert set(lime["ranking"]) <= set(distinct_words(TEXT)) and lime["cost"]["blackbox_queries"] >= 2
        assert lime["pgi"] is not None and lime["pgu"] is not None

        counterfactual = run("counterfactual", {"max_rounds": 1, "candidates_per_round": 1})
        assert counterfactual["original_prediction"] == prediction["label"]
        for candidate in counterfactual["counterfactuals"]:  # each one scored by the model, its label its argmax
            assert candidate["valid"] == (candidate["prediction"] != prediction["label"])

        posthoc = run("posthoc", {"k": 1, "n_samples": 8, "n_examples": 4})
        assert {f["feature"] for f in posthoc["features"]} <= set(distinct_words(TEXT))
        assert posthoc["cost"]["blackbox_queries"] >= 2 and posthoc["cost"]["llm"]["calls"] >= 1


def test_a_chat_classifier_on_the_embedded_model_is_scored_after_its_own_chat_template(tmp_path):
    """System + user turns rendered by the GGUF's template (SmolLM2's ChatML), the labels scored as the start of
    the assistant's reply; LIME's cost counts the classifier's own calls."""
    settings = Settings(llm_backend="llamacpp", cache_enabled=False, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    system, user = "You classify movie reviews.", "Is this review positive or negative?\nReview: {text}"
    spec = {"system": system, "template": user, "labels": {"negative": "negative", "positive": "positive"}}
    with TestClient(create_app(settings)) as api:
        assert api.post("/models", json={"name": "smol-chat", "source": {"llm": spec}}).status_code == 201
        [prediction] = api.post("/models/smol-chat/predict", json={"inputs": [TEXT]}).json()["predictions"]
        chatml = (
            f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user.replace('{text}', TEXT)}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        llm = api.app.state.service.llm
        [alone] = api.portal.call(llm.score, [ScoreRequest(prompt=chatml, continuations=["negative", "positive"])])
        expected = softmax(np.array(alone.logprobs))
        assert [prediction["probabilities"][label] for label in ("negative", "positive")] == pytest.approx(expected)
        body = {"model": "smol-chat", "rows": [TEXT], "options": {"n_samples": 16, "k": 1}}
        [lime] = api.post("/methods/lime", json=body).json()["results"]
        assert lime["ok"], lime["error"]
        calls = lime["result"]["cost"]["llm"]["calls"]
        assert calls >= lime["result"]["cost"]["blackbox_queries"] > 0
        assert api.get("/models/smol-chat").json()["llm_scoring"] == {"prefix_tree": 1 + calls}  # predict + LIME
