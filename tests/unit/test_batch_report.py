"""The batch report: each input beside its result, failed checks first, chart specs the page draws, summary figures."""

from __future__ import annotations

import json
import re

from tests.unit.result_samples import posthoc, samples
from xplain.batch.report import write_report
from xplain.batch.runner import RowOutcome


def outcome(index, result):
    return RowOutcome(index=index, ok=True, result=result.model_dump(mode="json"))


def page_of(tmp_path, outcomes, inputs=None):
    path = tmp_path / "report.html"
    write_report(path, "posthoc on reviews", outcomes, 2.0, inputs)
    return path.read_text()


def specs_of(page):
    return json.loads(re.search(r'<script type="application/json" id="specs">(.*?)</script>', page, re.S).group(1))


def test_failed_checks_come_first_then_errors_then_the_rest_by_row(tmp_path):
    outcomes = [
        outcome(0, posthoc()),
        outcome(1, posthoc(pgi=0.01, pgu=0.3)),
        RowOutcome(index=2, ok=False, error="LLM backend: down"),
        outcome(3, posthoc(pgi=None, pgu=None)),
        outcome(4, posthoc(pgi=0.0, pgu=0.5)),
    ]
    page = page_of(tmp_path, outcomes)
    order = re.findall(r"<tr data-status='([a-z ]+)' data-order='\d' data-index='(\d+)'>", page)
    assert order == [("fail", "1"), ("fail", "4"), ("error", "2"), ("inconclusive", "3"), ("pass", "0")]
    assert "<option value='fail'>fail (2)</option>" in page


def test_each_row_shows_its_input_answer_check_and_chart(tmp_path):
    inputs = [{"text": "a <b>dreadful</b> film", "id": 7}]
    page = page_of(tmp_path, [outcome(0, posthoc())], inputs)
    assert "a &lt;b&gt;dreadful&lt;/b&gt; film" in page  # the input, escaped
    assert "the LLM (perturbation) names <b>debt</b>" in page
    assert "PGI / PGU: 0.310 / 0.040" in page
    assert "data-chart='r0'" in page
    assert specs_of(page)["r0"]["labels"] == ["debt", "age"]
    assert "xplainCharts" in page
    assert not re.search(r"<script[^>]* src=|<link ", page)  # everything inline: works offline, no CDN


def test_the_input_falls_back_to_the_one_in_the_result(tmp_path):
    page = page_of(tmp_path, [outcome(0, posthoc())])
    assert "<div class='clip'>[0.5, 1.0, 2.0]</div>" in page


def test_summary_figures_count_checks_labels_and_mean_effects(tmp_path):
    results = list(samples().values())
    page = page_of(tmp_path, [outcome(i, r) for i, r in enumerate(results)] + [outcome(99, posthoc(0.0, 0.2))])
    figures = {spec["title"]: spec for key, spec in specs_of(page).items() if key.startswith("s")}
    checks = figures["Checks"]
    assert dict(zip(checks["labels"], checks["series"][0]["values"])) == {"fail": 1, "pass": len(results)}
    assert "Black-box labels" in figures
    effects = dict(zip(figures["Mean feature effect"]["labels"], figures["Mean feature effect"]["series"][0]["values"]))
    assert effects["debt"] < 0 < effects["age"]


def test_a_result_the_display_does_not_know_is_shown_plainly(tmp_path):
    plain = RowOutcome(index=0, ok=True, result={"blackbox": {"label": "pos"}, "llm_label": "neg", "agrees": False})
    page = page_of(tmp_path, [plain])
    assert "data-status='no check'" in page and "llm_label: <b>neg</b>" in page
    figures = {spec["title"] for key, spec in specs_of(page).items() if key.startswith("s")}
    assert "LLM agrees with the black box" in figures


def test_bidirectional_controls_in_inputs_and_errors_are_shown_not_obeyed(tmp_path):
    """A right-to-left override in a row would reverse the text after it on the page; the report writes each
    control as its code point instead."""
    inputs = ["fine \u202egnitseretni\u202c film", "\u2067isolated\u2069"]
    outcomes = [outcome(0, posthoc()), RowOutcome(index=1, ok=False, error="bad input: \u202eesrever")]
    page = page_of(tmp_path, outcomes, inputs)
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", page)
    assert "fine [U+202E]gnitseretni[U+202C] film" in page and "[U+2067]isolated[U+2069]" in page
    assert "bad input: [U+202E]esrever" in page


def test_bidirectional_controls_in_chart_labels_are_shown_not_obeyed(tmp_path):
    """A feature named with an override would reverse the chart's axis label once the page draws it."""
    named = posthoc()
    named.features[0].feature = "\u202etbed"
    page = page_of(tmp_path, [outcome(0, named)])
    labels = json.dumps(specs_of(page), ensure_ascii=False)
    assert "[U+202E]tbed" in labels and not re.search("[\u202a-\u202e\u2066-\u2069]", labels)


def repaired_posthoc():
    """A posthoc answer whose LLM proposal ('income') failed its check; 'debt' came from the evidence."""
    from xplain.methods.checks import Check
    from xplain.methods.posthoc import CheckedFeatures, FeatureAttribution

    failed = Check(estimate=0.004, interval=(-0.012, 0.021), confidence=0.95, n=7, verdict="inconclusive",
                   budget_exhausted=True, method="paired t")  # fmt: skip
    return posthoc().model_copy(update={
        "features": [FeatureAttribution(feature="debt", direction="-", rationale="measured", source="evidence"),
                     FeatureAttribution(feature="age", direction="+", rationale="older", source="llm")],
        "proposed": CheckedFeatures(features=[FeatureAttribution(feature="income", direction="+", rationale="")],
                                    pgi=0.02, pgu=0.02, faithfulness=failed),
    })  # fmt: skip


def test_a_repaired_posthoc_answer_is_not_shown_as_the_llms_and_its_proposal_is_shown_with_its_verdict(tmp_path):
    """The card read "the LLM names weeks, after" and the chart "LLM's top features" when both words came from the
    evidence after the LLM's proposal ("my") failed its check."""
    page = page_of(tmp_path, [outcome(0, repaired_posthoc()), outcome(1, posthoc())])
    assert "verified: <b>debt</b> (-), <b>age</b> (+) (1 of 2 proposed by the LLM)" in page
    assert "the LLM (perturbation) first proposed <b>income</b> (+) (inconclusive)" in page
    assert specs_of(page)["r0"]["title"] == "Verified top features for '0'"
    assert specs_of(page)["r1"]["title"] == "LLM's top features for '0'"  # kept as proposed: the LLM's own
    assert page.count("the LLM (perturbation) names") == 1


def test_the_chats_answer_for_a_repaired_posthoc_says_verified_and_what_the_llm_first_named():
    from xplain.methods.catalog import get_method

    answer = get_method("posthoc").chat.answer
    repaired = answer(repaired_posthoc().model_dump(mode="json") | {"row": 3})
    assert repaired.startswith("For row 3 the verified features are: debt (-), age (+) (1 of 2 proposed by the LLM, "
                               "which first named income (+): inconclusive).")  # fmt: skip
    kept = answer(posthoc().model_dump(mode="json") | {"row": 3})
    assert kept.startswith("For row 3 the LLM names these features: debt (-), age (+).")


def test_an_empty_cell_of_a_row_shows_as_null_not_nan(tmp_path):
    page = page_of(tmp_path, [outcome(0, posthoc())], [{"city": "Lille", "job": float("nan"), "income": 2632.0}])
    assert "{&quot;city&quot;: &quot;Lille&quot;, &quot;job&quot;: null, &quot;income&quot;: 2632.0}" in page
    assert "NaN" not in page
