"""`xplain eval unseen`: the closing figures (posthoc exactly-k, FA and verdicts beside LIME and KernelSHAP, the
LLM's added value; counterfactual flip rate, median edit, queries per flip) on reviews the demo never saw."""

from __future__ import annotations

import json

import pytest

from xplain.data.datasets import text_dataset, unseen_reviews
from xplain.evals.unseen import Plan, evaluate, exactly_k_rate
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from tests.unit.test_posthoc import first_allowed_words


def bad_reader(request):
    """Names two of the text's words (fewer than k = 3) for posthoc, and 'great' as every replacement word."""
    if request.json_schema and "RankedFeature" in json.dumps(request.json_schema):
        return first_allowed_words(request)
    return "great"


def test_the_reviews_are_neither_the_demos_nor_the_classifiers_training_texts():
    data = unseen_reviews(n_train=400)
    demo = text_dataset(n=2000)
    assert not set(data.texts_test) & (set(demo.texts_train) | set(demo.texts_test))
    assert not set(data.texts_test) & set(data.texts_train)
    assert all(len(t) <= 200 and "<br" not in t for t in data.texts_test)


def test_exactly_k_counts_only_texts_with_k_distinct_words():
    texts = ["good good good", "a fine warm film", "dull slow long plot"]
    assert exactly_k_rate(texts, [["good"], ["fine", "warm", "film"], ["dull"]], 3) == 0.5
    assert exactly_k_rate(["too short"], [["short"]], 3) is None


async def test_eval_gives_the_closing_figures_and_the_repair_fills_a_short_proposal():
    plan = Plan(posthoc_texts=3, counterfactual_texts=4, train_texts=400)
    table = await evaluate(LLM(FakeBackend(rules=[(r".", bad_reader)])), plan)
    rows = {r["method"]: r for r in table.as_records()}
    expected = {
        "posthoc:choose", "posthoc:choose:proposed", "posthoc:choose:evidence_only",
        "posthoc:generate", "posthoc:generate:proposed", "lime", "kernelshap", "counterfactual:guided",
        "counterfactual:guided:no_reference",
    }  # fmt: skip
    assert expected <= set(rows) <= expected | {"posthoc:generate:reasked"}  # re-asked texts only, if any
    verified, proposed = rows["posthoc:generate"], rows["posthoc:generate:proposed"]
    assert proposed["exactly_k"] == 0.0 and verified["exactly_k"] == 1.0  # two words proposed, three returned
    assert verified["llm_added"] is not None and verified["seconds"] > 0
    assert verified["positional"] > 0 and rows["lime"]["positional"] is None  # it names the first two words
    # a choice always names k words, so nothing is filled, and it is checked and scored like the generated one
    assert rows["posthoc:choose:proposed"]["exactly_k"] == 1.0 and rows["posthoc:choose"]["exactly_k"] == 1.0
    assert rows["posthoc:choose"]["llm_added"] is not None and rows["posthoc:choose"]["positional"] is not None
    for name in ("posthoc:choose", "posthoc:generate", "lime", "kernelshap"):
        row = rows[name]
        assert 0.0 <= row["FA"] <= 1.0 and row["inputs"] == 3
        assert row["faithful"] + row["not_faithful"] + row["inconclusive"] == pytest.approx(1.0)
        assert row["queries_per_input"] > plan.n_samples  # the rows it was built from, then its check
        assert row["seconds"] > 0
    for name in ("counterfactual:guided", "counterfactual:guided:no_reference"):
        flips = rows[name]
        assert flips["inputs"] == 4 and 0.0 <= flips["flip_rate"] <= 1.0 and flips["flip_rate_ci"].startswith("[")
        if flips["flip_rate"]:
            assert flips["queries_per_flip"] == pytest.approx(flips["queries_per_input"] / flips["flip_rate"])
            assert flips["median_edit"] >= 1 and flips["fluency_change"] is not None

