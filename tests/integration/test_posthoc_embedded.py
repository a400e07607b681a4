"""One post-hoc explanation on the embedded model: structure, the model's own check and the costs (not truth)."""

import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from xplain.blackbox import from_estimator
from xplain.data.datasets import tabular_dataset, text_dataset
from xplain.evals.posthoc import MODELS
from xplain.llm import make_llm
from xplain.methods.posthoc import PosthocOptions, explain_tabular, explain_text
from xplain.methods.words import distinct_words
from xplain.settings import Settings

pytestmark = pytest.mark.integration


async def test_explanation_on_the_embedded_model_is_checked_and_costed():
    data = tabular_dataset("synthetic")
    model = MODELS["logistic_regression"]().fit(data.X_train, data.y_train)
    blackbox = from_estimator(model, feature_names=data.feature_names)
    llm = make_llm(Settings(llm_backend="llamacpp", cache_enabled=False))
    try:
        [result] = await explain_tabular(
            llm,
            blackbox,
            data.X_test[:1],
            data.X_train,
            PosthocOptions(k=2, n_samples=12, n_examples=6),
        )
    finally:
        await llm.aclose()
    assert result.prompt_versions[0] == "posthoc/perturbation@2"
    assert result.cost.llm.calls >= 1 and result.cost.blackbox_queries >= 12
    # verified: exactly k distinct features of the table, checked, whatever the LLM proposed
    assert len(result.features) == 2 and len({f.feature for f in result.features}) == 2
    assert {f.feature for f in result.features} <= set(data.feature_names)
    assert result.pgi is not None and result.pgu is not None and result.pgi >= 0 and result.pgu >= 0
    assert result.repair and result.evidence_only is not None and result.llm_added_value is not None
    if result.error is not None:
        assert result.proposed.features == [] and result.llm_features_kept == 0


@pytest.mark.parametrize("proposal", ["generate", "auto"])
async def test_text_explanation_on_the_embedded_model_names_only_its_words(proposal):
    data = text_dataset(n=400)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    model.fit(data.texts_train, data.y_train)
    text = data.texts_test[0]
    blackbox = from_estimator(model, kind="text")
    llm = make_llm(Settings(llm_backend="llamacpp", cache_enabled=False))
    try:
        [result] = await explain_text(
            llm, blackbox, [text], PosthocOptions(k=2, n_samples=12, n_examples=6, proposal=proposal)
        )
    finally:
        await llm.aclose()
    assert result.instance == text
    if proposal == "auto":  # the embedded model chooses: one scoring round, nothing generated
        assert result.proposal == "choice" and result.prompt_versions == ["posthoc/choose@1"]
        assert result.cost.llm.completion_tokens == 0 and set(result.choice_scores) <= set(distinct_words(text))
        assert len(result.proposed.features) == 2
    else:
        assert result.proposal == "generated" and result.prompt_versions[0] == "posthoc/text_perturbation@2"
    assert result.cost.llm.calls >= 1 and result.cost.blackbox_queries >= 12
    assert len(result.features) == 2 and len({f.feature for f in result.features}) == 2
    assert {f.feature for f in result.features} <= set(distinct_words(text))
    assert result.pgi is not None and result.pgu is not None
    assert 0 <= result.pgi <= 1 and 0 <= result.pgu <= 1
    assert all(f.rationale for f in result.features), "every rationale is grounded or the measured effect"


async def test_a_text_alone_and_in_a_batch_gets_the_same_choice_on_the_embedded_model():
    """The choice is scored by the embedded engine's prefix tree: a text's scores must not depend on its batch."""
    data = text_dataset(n=400)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    model.fit(data.texts_train, data.y_train)
    texts = data.texts_test[:6]
    blackbox = from_estimator(model, kind="text")
    llm = make_llm(Settings(llm_backend="llamacpp", cache_enabled=False))
    options = PosthocOptions(k=2, n_samples=12, proposal="choose")
    try:
        together = await explain_text(llm, blackbox, texts, options)
        [alone] = await explain_text(llm, blackbox, [texts[4]], options)
    finally:
        await llm.aclose()
    assert alone.choice_scores == pytest.approx(together[4].choice_scores, abs=1e-5)
    assert alone.proposed.features == together[4].proposed.features and alone.features == together[4].features
