"""`compare` with a list of explainers: each one explains the same instance at the same black-box budget, in the
order asked, and the comparison says where their rankings agree."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from xplain.blackbox import from_callable, from_estimator
from xplain.errors import InvalidInput
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods import baselines
from xplain.methods.catalog import MethodContext, get_method, run_units
from tests.unit.test_counterfactual import sentiment

NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def linear():
    """Only a and b matter (b twice as much as a); the rest are noise."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] + 2 * X[:, 1] > 0).astype(int)
    return from_estimator(LogisticRegression().fit(X, y), feature_names=NAMES), X


async def run(blackbox, rows, reference=None, llm=None, **options):
    method = get_method("compare")
    ctx = MethodContext(llm=llm, blackbox=blackbox, reference=reference)
    return await run_units(method, ctx, rows, method.parse_options(options))


async def test_every_explainer_gets_the_same_instance_and_the_same_rows(linear, monkeypatch):
    blackbox, X = linear
    seen: dict[str, tuple] = {}
    for name, explain in list(baselines.EXPLAINERS.items()):
        def spy(box, x, background, label, n_samples, seed, _name=name, _explain=explain):
            before = box.stats().evaluated
            weights = _explain(box, x, background, label, n_samples, seed)
            seen[_name] = (tuple(x), n_samples, box.stats().evaluated - before)
            return weights
        monkeypatch.setitem(baselines.EXPLAINERS, name, spy)
    row = X[3]
    [result] = await run(blackbox, [row.tolist()], reference=X, explainers=["occlusion", "lime", "kernelshap"],
                         n_samples=40, k=2)  # fmt: skip
    assert [s.explainer for s in result.scores] == ["occlusion", "lime", "kernelshap"]
    assert set(seen) == {"occlusion", "lime", "kernelshap"}
    for instance, budget, evaluated in seen.values():
        assert instance == tuple(row) and budget == result.rows_per_explainer == 40
        # each ranking is built from the budget: KernelSHAP adds its background summary's own rows
        assert budget - 1 <= evaluated <= budget + baselines.SHAP_BACKGROUND
    # a linear model: every explainer finds b and a, so they agree, and the consensus is the truth
    assert set(result.truth) == {"a", "b"}
    assert set(result.consensus) == {"a", "b"} and result.reference == "occlusion"
    assert result.agreement == {"lime": 1.0, "kernelshap": 1.0}
    assert all(s.agreement == 1.0 and s.feature_agreement == 1.0 for s in result.scores)


async def test_the_first_explainer_is_the_reference_and_disagreement_is_measured(linear):
    blackbox, X = linear
    # the LLM names two noise columns: its line agrees with nobody, and the consensus leaves them out
    reply = '{"features": [{"feature": "E", "direction": "+", "rationale": "e"}, {"feature": "D", "direction": "+", "rationale": "d"}]}'
    llm = LLM(FakeBackend(default=reply))
    [result] = await run(blackbox, [X[5].tolist()], reference=X, llm=llm, explainers=["lime", "posthoc"], k=2,
                         n_samples=24)  # fmt: skip
    assert result.reference == "lime" and [e.method for e in result.explanations] == ["lime", "posthoc"]
    proposed = next(s for s in result.scores if s.explainer.endswith(":proposed"))
    assert proposed.agreement < 1.0 and set(result.consensus) <= set(NAMES)
    # the consensus needs both rankings (of two): only what the verified posthoc shares with lime
    lime_top, posthoc_top = result.scores[0].top, result.scores[1].top
    assert set(result.consensus) == set(lime_top) & set(posthoc_top)


async def test_text_explainers_rank_the_sentiment_words_alike():
    blackbox = from_callable(sentiment, kind="text", classes=["negative", "positive"])
    [result] = await run(blackbox, ["a great and friendly place with dull chairs"], explainers=["occlusion", "lime"],
                         k=2, n_samples=64)  # fmt: skip
    assert set(result.scores[0].top) == {"great", "friendly"}
    assert result.agreement["lime"] == 1.0


async def test_bad_explainer_lists_are_refused_before_any_query(linear):
    blackbox, X = linear
    before = blackbox.stats().evaluated
    with pytest.raises(InvalidInput, match="once"):
        await run(blackbox, [X[0].tolist()], reference=X, explainers=["lime", "lime"])
    with pytest.raises(InvalidInput, match="explainers"):
        await run(blackbox, [X[0].tolist()], reference=X, explainers=["gradcam"])
    with pytest.raises(InvalidInput, match="needs an LLM"):
        await run(blackbox, [X[0].tolist()], reference=X, explainers=["posthoc", "lime"])
    assert blackbox.stats().evaluated == before
