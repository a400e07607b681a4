"""Results show themselves: a card with the check and a figure, `.plot()` figures, frames, JSON round trips."""

from __future__ import annotations

import json
from html import escape

import matplotlib
import pytest
from matplotlib.figure import Figure

from tests.unit.result_samples import posthoc, samples, tabular_explanation, text_explanation
from xplain.display import chart_spec, check, describe
from xplain.methods.base import load_result

matplotlib.use("Agg")
SAMPLES = samples()


@pytest.mark.parametrize("name", SAMPLES)
def test_card_holds_the_answer_its_check_the_cost_and_a_figure(name):
    result = SAMPLES[name]
    card = result._repr_html_()
    outcome = check(result)
    assert outcome.status == "pass"
    assert f"check: {outcome.name}" in card.replace("&amp;", "&")
    assert ">pass</span>" in card
    assert "cost:" in card
    assert "<svg" in card and "</svg>" in card


@pytest.mark.parametrize(
    ("result", "status"),
    [
        (posthoc(pgi=0.02, pgu=0.2), "fail"),
        (posthoc(pgi=None, pgu=None), "inconclusive"),
        (tabular_explanation(valid=False), "fail"),
        (text_explanation(valid=False), "fail"),
    ],
)
def test_a_failed_or_unmeasured_check_says_so_on_the_card(result, status):
    assert check(result).status == status
    assert f">{status}</span>" in result._repr_html_()


@pytest.mark.parametrize("name", SAMPLES)
def test_plot_returns_a_figure_with_a_bar_per_label(name):
    result = SAMPLES[name]
    figure = result.plot()
    assert isinstance(figure, Figure)
    spec = chart_spec(result)
    bars = sum(len(container) for container in figure.axes[0].containers)
    assert bars == len(spec["labels"]) * len(spec["series"]) > 0


def test_plot_draws_on_the_axes_it_is_given():
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert SAMPLES["posthoc"].plot(ax=right) is figure
    assert right.containers and not left.containers


@pytest.mark.parametrize("name", SAMPLES)
def test_json_round_trip_gives_an_equal_result_of_the_same_class(name, tmp_path):
    result = SAMPLES[name]
    again = load_result(result.to_json())
    assert type(again) is type(result) and again == result
    path = tmp_path / "result.json"
    path.write_text(result.to_json(indent=2))
    assert load_result(path) == result


def test_json_from_the_api_without_a_kind_loads_by_its_method():
    sasc = SAMPLES["sasc"]
    assert load_result(sasc.model_dump_json()) == sasc
    assert type(load_result(SAMPLES["baseline"].model_dump_json())).__name__ == "BaselineExplanation"


def test_unknown_kind_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown result kind 'Nope'.*PosthocExplanation"):
        load_result(json.dumps({"kind": "Nope"}))
    with pytest.raises(ValueError, match="no result kind fits this JSON"):
        load_result(json.dumps({"llm_label": "pos"}))


def test_comparison_puts_the_llm_beside_lime_and_kernelshap_by_feature_name():
    comparison = SAMPLES["comparison"]
    spec = chart_spec(comparison)
    assert [s["name"] for s in spec["series"]] == ["LLM (perturbation)", "lime", "kernelshap"]
    assert spec["labels"] == ["debt", "age", "income"]  # the LLM's features first, then the baselines' others
    json.dumps(spec)  # the browser draws the same spec
    frame = comparison.to_frame()
    assert list(frame.columns) == ["LLM (perturbation)", "lime", "kernelshap"]
    assert frame.loc["debt", "LLM (perturbation)"] == -1.0 and frame.loc["debt", "lime"] == -1.0
    assert frame.loc["income", "LLM (perturbation)"] == 0.0


def test_frames_list_one_row_per_item():
    assert list(SAMPLES["posthoc"].to_frame()["feature"]) == ["debt", "age"]
    counterfactuals = SAMPLES["tabular_counterfactuals"].to_frame()
    assert list(counterfactuals["input"]) == [0, 1, 2]
    assert list(counterfactuals["valid"]) == [True, False, True]
    assert list(SAMPLES["iprompt"].to_frame()["heldout_accuracy"].isna()) == [False, True]
    assert SAMPLES["lml_dap"].to_frame()["p(yes)"].tolist() == [0.8, 0.4]


def test_the_chart_is_described_in_words_beside_the_picture():
    result = SAMPLES["posthoc"]
    words = describe(chart_spec(result))
    assert words == "LLM's top features for '0' (direction × rank (1 = named first)): debt -1, age +0.5"
    assert f"aria-label='{escape(words)}'" in result._repr_html_()
    comparison = describe(chart_spec(SAMPLES["comparison"]))
    assert "; lime: debt -1, age +0.3, income -0.025; kernelshap:" in comparison


def test_text_counterfactual_card_shows_the_word_diff():
    card = SAMPLES["text_counterfactual"]._repr_html_()
    assert "line-through'>dreadful</span>" in card and "underline'>wonderful</span>" in card
