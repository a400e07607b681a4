"""SASC and iPrompt end to end on the embedded model, and both suites at --size small (structure, not truth)."""

import pytest

from xplain.blackbox import from_callable
from xplain.evals import iprompt as iprompt_suite
from xplain.evals import sasc as sasc_suite
from xplain.evals.synthetic_modules import keyword_modules
from xplain.methods.ngrams import default_corpus
from xplain.methods.sasc import SASCOptions, explain_module

pytestmark = pytest.mark.integration



async def test_sasc_scores_every_candidate_on_the_module(embedded_llm):
    module = next(m for m in keyword_modules() if m.name == "love")
    blackbox = from_callable(module.function, kind="module")
    result = await explain_module(embedded_llm, blackbox, default_corpus(200), SASCOptions(n_candidates=2, n_texts=3, texts_max_tokens=100))
    assert result.candidates and result.module_std > 0
    assert blackbox.predict([n.ngram for n in result.top_ngrams[:3]]).min() > 0
    for candidate in result.candidates:
        if candidate.score is not None:
            related = blackbox.predict(candidate.related_texts).mean()
            unrelated = blackbox.predict(candidate.unrelated_texts).mean()
            assert candidate.score == pytest.approx((related - unrelated) / result.module_std)
    # near misses: texts the module scores below every top text, each candidate judged on both
    assert result.top_texts and result.near_misses
    assert blackbox.predict(result.near_misses).max() < blackbox.predict(result.top_texts).min()
    assert all(c.near_miss_check is not None and c.near_miss_check.n == len(result.top_texts) + len(result.near_misses)
               for c in result.candidates)


async def test_both_suites_run_small(embedded_llm):
    sasc = await sasc_suite.run(embedded_llm, "small")
    iprompt = await iprompt_suite.run(embedded_llm, "small")
    assert len(sasc.rows) == 2 and len(iprompt.rows) == 2
    for record in iprompt.as_records():
        assert record["heldout_accuracy"] is None or 0.0 <= record["heldout_accuracy"] <= 1.0
        assert record["llm_calls"] > 0
