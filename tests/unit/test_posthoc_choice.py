"""posthoc's choice proposal: the LLM scores candidate words by likelihood (one scoring round, nothing generated)
and proposes its top k, which are checked and repaired like a generated proposal."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from xplain.blackbox import from_callable
from xplain.llm import LLM
from xplain.llm.backends.base import RawScores
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.posthoc import PosthocOptions, explain_tabular, explain_text, proposal_mode
from tests.unit.test_posthoc import NAMES, debt_model, first_allowed_words, word_model

TEXT = "a good fine movie tonight here"


@dataclass
class LabelScorer(FakeBackend):
    """Scores a candidate word by how much it `likes` it after the label it is asked about: +liking after
    'positive', -liking after any other label (so the contrast between labels is twice the liking)."""

    liking: dict[str, float] = field(default_factory=dict)

    async def score(self, requests):
        self.score_batches.append(list(requests))
        sign = [1.0 if "'positive'" in r.prompt else -1.0 for r in requests]
        return [
            RawScores(
                logprobs=[s * self.liking.get(c.strip(), 0.0) - 4.0 for c in r.continuations],
                token_counts=[1] * len(r.continuations), prompt_tokens=len(r.prompt.split()),
            )
            for s, r in zip(sign, requests)
        ]  # fmt: skip


def chooser(liking, name="fake", rules=()):
    backend = LabelScorer(liking=liking, name=name, rules=list(rules))
    return backend, LLM(backend), from_callable(word_model, kind="text", classes=["negative", "positive"])


CHOOSE = dict(k=2, n_samples=40, proposal="choose")


async def test_the_choice_is_the_top_k_by_the_llms_scores_in_one_scoring_round():
    backend, llm, bb = chooser({"fine": 3.0, "good": 1.0, "tonight": 0.5})
    [result] = await explain_text(llm, bb, [TEXT], PosthocOptions(**CHOOSE))
    assert result.proposal == "choice"
    assert [f.feature for f in result.proposed.features] == ["fine", "good"]  # by score, not by the text's order
    assert result.choice_scores["fine"] == pytest.approx(6.0) and result.choice_scores["a"] == pytest.approx(0.0)
    assert backend.batches == []  # nothing generated
    [batch] = backend.score_batches  # one request per class, every candidate scored in each
    assert len(batch) == 2 and {c.strip() for c in batch[0].continuations} == set(result.choice_scores)
    assert result.llm_attempts == 1 and result.error is None
    assert result.prompt_versions == ["posthoc/choose@1"]
    # a capable choice passes its check and is returned as it is
    assert result.repair.startswith("none") and result.faithfulness.verdict == "faithful"
    assert result.llm_features_kept == 2


async def test_a_bad_choice_is_checked_and_repaired_into_k_features_that_pass():
    """The LLM likes the filler words; the check refuses them and the repair brings in 'good' from the evidence."""
    backend, llm, bb = chooser({"a": 2.0, "tonight": 1.0})
    [result] = await explain_text(llm, bb, [TEXT], PosthocOptions(**CHOOSE))
    assert {f.feature for f in result.proposed.features} == {"a", "tonight"}
    assert result.proposed.faithfulness.verdict != "faithful"
    assert len(result.features) == 2 and "good" in {f.feature for f in result.features}
    assert result.faithfulness.verdict == "faithful" and result.repair.startswith("repaired")
    assert result.reasked is None  # a choice is not re-asked: the same scores would choose the same words
    assert result.llm_added_value <= 1e-9
    good = next(f for f in result.features if f.feature == "good")
    assert good.source == "evidence" and good.direction == "+"


async def test_a_text_alone_and_inside_a_batch_gets_the_same_choice():
    backend, llm, bb = chooser({"fine": 2.0, "reasons": 1.0, "movie": 0.5})
    texts = [f"movie {i} was good and fine for {i % 3} reasons" for i in range(17)]
    options = PosthocOptions(k=2, n_samples=12, proposal="choose")
    together = await explain_text(llm, bb, texts, options)
    [alone] = await explain_text(llm, bb, [texts[11]], options)
    assert alone.choice_scores == together[11].choice_scores and alone.features == together[11].features
    assert alone.proposed == together[11].proposed and alone.faithfulness == together[11].faithfulness


async def test_both_proposals_explain_a_text_from_the_same_neighbourhood_and_auto_equals_its_mode():
    _, llm, bb = chooser({"fine": 1.0}, name="llamacpp", rules=[(r".", first_allowed_words)])  # auto: choose
    auto = await explain_text(llm, bb, [TEXT], PosthocOptions(k=2, n_samples=30))
    generated = await explain_text(llm, bb, [TEXT], PosthocOptions(k=2, n_samples=30, proposal="generate"))
    chosen = await explain_text(llm, bb, [TEXT], PosthocOptions(k=2, n_samples=30, proposal="choose"))
    assert auto[0].proposal == "choice" and generated[0].proposal == "generated"
    assert auto[0].evidence_only == generated[0].evidence_only
    assert auto[0].choice_scores == chosen[0].choice_scores and auto[0].features == chosen[0].features


def test_auto_chooses_on_the_embedded_model_for_texts_without_rationales():
    embedded, server = LLM(FakeBackend(name="llamacpp")), LLM(FakeBackend(name="openai"))
    assert proposal_mode(PosthocOptions(), embedded, "text") == "choose"
    assert proposal_mode(PosthocOptions(), server, "text") == "generate"
    assert proposal_mode(PosthocOptions(), embedded, "tabular") == "generate"
    assert proposal_mode(PosthocOptions(rationales=True), embedded, "text") == "generate"
    assert proposal_mode(PosthocOptions(proposal="choose"), server, "text") == "choose"


async def test_choose_refuses_rationales_and_tables_with_a_clear_error():
    _, llm, bb = chooser({})
    with pytest.raises(ValueError, match="rationales are generated"):
        await explain_text(llm, bb, [TEXT], PosthocOptions(proposal="choose", rationales=True, k=2))
    table = from_callable(debt_model, kind="tabular", feature_names=NAMES)
    background = np.random.default_rng(1).normal(size=(20, 3))
    with pytest.raises(ValueError, match="tables are proposed by generation"):
        await explain_tabular(llm, table, background[:1], background, PosthocOptions(proposal="choose", k=2))
