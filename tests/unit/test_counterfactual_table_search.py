"""Counterfactuals for mixed-type rows by search (the catalog's `counterfactual`, strategies guided and search) on a
Pipeline of OneHotEncoder + StandardScaler + LogisticRegression fitted to a label that needs two columns at once for
the rows asked about: `workclass = Self-emp` and about 45 `hours` or more. The fewest columns that flip them are
known, so minimality, immutables and categories can be asserted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from xplain.blackbox import from_estimator
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.catalog import MethodContext, get_method, run_units
from xplain.methods.counterfactual_table_search import QUANTILES

CATEGORIES = {"workclass": {"Private", "Self-emp", "Gov"}, "colour": {"red", "green", "blue"}}


def make_table(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "workclass": rng.choice(["Private", "Self-emp", "Gov"], n),
            "age": rng.integers(18, 70, n),
            "hours": rng.normal(40, 8, n).round(1),
            "married": rng.random(n) < 0.5,
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )
    logit = 6.0 * (table.workclass == "Self-emp") + 0.8 * (table.hours - 45) - 6.0
    label = (logit > 0).astype(int).to_numpy()
    return table, label


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table()[0]


@pytest.fixture(scope="module")
def pipe(table):
    _, label = make_table()
    encode = ColumnTransformer(
        [("categories", OneHotEncoder(handle_unknown="ignore"), ["workclass", "married", "colour"]),
         ("numbers", StandardScaler(), ["age", "hours"])]
    )  # fmt: skip
    return Pipeline([("encode", encode), ("model", LogisticRegression(C=100.0, max_iter=2000))]).fit(table, label)


def rows_of(table: pd.DataFrame, workclass: str, low_hours: bool) -> pd.DataFrame:
    hours = (table.hours < 38) if low_hours else table.hours.between(46, 50)
    chosen = table[(table.workclass == workclass) & hours]
    return chosen.head(3)


async def counterfactuals(blackbox, rows, reference, llm=None, **options):
    method = get_method("counterfactual")
    ctx = MethodContext(llm=llm or LLM(FakeBackend()), blackbox=blackbox, reference=reference)
    units = rows.to_dict("records")
    return await run_units(method, ctx, units, method.parse_options(options))


async def test_guided_flips_with_the_fewest_columns_and_keeps_categories_in_their_categories(pipe, table):
    blackbox = from_estimator(pipe, reference=table)
    rows = rows_of(table, "Gov", low_hours=True)  # needs two changes: workclass and hours
    results = await counterfactuals(blackbox, rows, table, max_rounds=3)
    for explanation in results:
        assert explanation.original_prediction == 0
        best = explanation.counterfactuals[0]
        assert best.valid and best.edit_size == 2  # no single column flips it, and the search found two that do
        assert {c.feature for c in best.changes} == {"workclass", "hours"}
        assert best.values["workclass"] == "Self-emp" and best.values["hours"] > 45
        assert not any(c.valid and c.edit_size == 1 for c in explanation.counterfactuals)
        for candidate in explanation.counterfactuals:  # every value stays one the column knows
            assert candidate.values["workclass"] in CATEGORIES["workclass"]
            assert candidate.values["colour"] in CATEGORIES["colour"]
            assert isinstance(candidate.values["married"], bool)
        # the guide found the two columns that matter, and the LLM's proposals are reported beside the result
        assert set(list(explanation.guide_columns)[:2]) == {"workclass", "hours"}
        assert set(explanation.proposed) >= {"hours"} and explanation.llm_requests >= 1
        assert explanation.cost.blackbox_queries > 0 and explanation.cost.seconds > 0 and explanation.cost.llm.calls > 0


async def test_a_single_change_that_flips_is_returned_alone(pipe, table):
    blackbox = from_estimator(pipe, reference=table)
    rows = rows_of(table, "Private", low_hours=False)  # only workclass is missing
    for explanation in await counterfactuals(blackbox, rows, table):
        best = explanation.counterfactuals[0]
        assert best.valid and [(c.feature, c.new) for c in best.changes] == [("workclass", "Self-emp")]


@pytest.mark.parametrize("strategy", ["guided", "search"])
async def test_immutable_columns_never_change(pipe, table, strategy):
    # hours immutable by constraint: rows with low hours cannot flip; workclass immutable in the schema likewise
    blackbox = from_estimator(pipe, reference=table)
    rows = rows_of(table, "Gov", low_hours=True)
    results = await counterfactuals(blackbox, rows, table, strategy=strategy, constraints={"hours": {"immutable": True}})
    schema_fixed = from_estimator(pipe, reference=table, columns={"workclass": {"immutable": True}})
    results += await counterfactuals(schema_fixed, rows, table, strategy=strategy)
    fixed_hours, fixed_class = results[:3], results[3:]
    assert not any(c.valid for e in fixed_hours for c in e.counterfactuals)  # these rows need more hours to flip
    assert all("hours" not in {c.feature for k in e.counterfactuals for c in k.changes} for e in fixed_hours)
    assert all("workclass" not in {c.feature for k in e.counterfactuals for c in k.changes} for e in fixed_class)


async def test_the_search_strategy_needs_no_llm_and_prunes_every_change_the_flip_does_not_need(pipe, table):
    blackbox = from_estimator(pipe, reference=table)
    rows = rows_of(table, "Gov", low_hours=True)
    results = await counterfactuals(blackbox, rows, table, llm=LLM(FakeBackend()), strategy="search")
    for explanation, (_, row) in zip(results, rows.iterrows()):
        best = explanation.counterfactuals[0]
        assert best.valid and pipe.predict(pd.DataFrame([best.values]))[0] == 1
        for change in best.changes:  # each change is needed: put back alone, the model decides as before
            reverted = {**best.values, change.feature: row[change.feature]}
            assert pipe.predict(pd.DataFrame([reverted]))[0] == 0
        assert explanation.cost.llm.calls == 0 and explanation.proposed == {}


@pytest.mark.parametrize("liked, by_llm", [("5", True), ("2", False)])
async def test_the_llms_proposals_are_reported_and_marked_on_the_changes_returned(pipe, table, liked, by_llm):
    """A fake LM that likes values starting with `liked` makes them its proposal: the proposals show the LM's pick,
    and each change returned says whether the LLM proposed it or the black box's evidence did."""
    blackbox = from_estimator(pipe, reference=table)
    rows = rows_of(table, "Gov", low_hours=True)
    likes = FakeBackend(token_logprob=lambda previous, token: -0.1 if token[:1] in (liked, "S") else -5.0)
    [explanation, *_] = await counterfactuals(blackbox, rows, table, llm=LLM(likes), candidates_per_round=1)
    [first] = explanation.proposed["hours"]
    assert str(first).startswith(liked)
    best = explanation.counterfactuals[0]
    hours = next(c for c in best.changes if c.feature == "hours")
    assert best.valid and hours.new > 45 and hours.proposed_by_llm is by_llm


async def test_the_smallest_move_of_a_number_that_still_flips_is_returned(pipe, table, monkeypatch):
    """With a beam of one edit, the search grows from the largest hours alone (the LM and the evidence pick it too)
    and flips with Self-emp; of the values hours may take, the one nearest the row's own that still flips with the
    best's other changes is what comes back."""
    from xplain.methods import counterfactual_table_search

    monkeypatch.setattr(counterfactual_table_search, "BEAM", 1)
    blackbox = from_estimator(pipe, reference=table)
    rows = rows_of(table, "Gov", low_hours=True)
    reference = table[table.hours.between(38, 53)]
    likes_high = FakeBackend(token_logprob=lambda previous, token: -0.1 if token[:1] in ("5", "S") else -5.0)
    results = await counterfactuals(blackbox, rows, reference, llm=LLM(likes_high), candidates_per_round=1)
    candidates = sorted(set(np.percentile(reference.hours, QUANTILES, method="nearest")))
    tightened = 0
    for explanation, (_, row) in zip(results, rows.iterrows()):
        best = explanation.counterfactuals[0]
        assert best.valid and "hours" in {c.feature for c in best.changes}
        flipping = [v for v in candidates if pipe.predict(pd.DataFrame([{**best.values, "hours": v}]))[0]]
        assert best.values["hours"] == min(flipping, key=lambda v: abs(v - row.hours))
        tightened += best.values["hours"] < max(flipping)  # not the largest value, which both proposers picked
    assert tightened
