"""`xplain explain` on the fake LLM: table, JSON with the model's check, the PNG chart, and input errors."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from xplain.cli import app
from xplain.cli.common import console
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.settings import get_settings

ROW = json.dumps({"x0": 1.0, "x1": -0.5, "x2": 0.2, "x3": 0.0, "x4": 0.1, "x5": -0.1})
ANSWER = json.dumps(
    {
        "features": [
            {"feature": "A", "direction": "+", "rationale": "r"},
            {"feature": "B", "direction": "-", "rationale": "r"},
        ]
    }
)


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "fake")
    monkeypatch.setattr(
        "xplain.cli.common.make_llm", lambda settings: LLM(FakeBackend(default=ANSWER))
    )
    monkeypatch.setattr(console, "width", 200)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_one_row_prints_letters_mapped_back_and_the_pgi_check(runner, tmp_path):
    plot = tmp_path / "chart.png"
    result = runner.invoke(
        app,
        ["explain", "demo:synthetic", "--row", ROW, "--k", "2", "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    # letters are shuffled per row, so A and B stand for two of the six features; both are printed by name
    assert sum(f"x{i}" in result.output for i in range(6)) >= 2 and "PGI" in result.output
    assert "A" not in result.output.split("PGI")[0].split("feature")[-1].split()  # never a bare letter
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_csv_of_rows_gives_one_checked_result_each(runner, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("x0,x1,x2,x3,x4,x5\n1,0,0,0,0,0\n-1,1,0,0,0,0\n0,0,1,1,0,0\n")
    result = runner.invoke(
        app, ["explain", "demo:synthetic", "--rows", str(rows), "--k", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    explanations = json.loads(result.output)
    assert len(explanations) == 3
    assert all(
        e["pgi"] is not None and e["cost"]["blackbox_queries"] > 0 for e in explanations
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--row", '{"x0": 1}'], "exactly the features"),
        (["--row", ROW, "--strategy", "guess"], "--strategy must be one of"),
        ([], "either --row"),
    ],
)
def test_bad_input_is_a_clear_error(runner, arguments, message):
    result = runner.invoke(app, ["explain", "demo:synthetic", *arguments])
    assert result.exit_code == 2 and message in result.output


def test_text_is_explained_by_its_own_words_with_the_removal_check(monkeypatch, runner):
    def own_words(request):
        allowed = request.json_schema["$defs"]["RankedFeature"]["properties"][
            "feature"
        ]["enum"]
        return json.dumps(
            {"features": [{"feature": allowed[2], "direction": "+", "rationale": "r"}]}
        )

    monkeypatch.setattr(
        "xplain.cli.common.make_llm",
        lambda settings: LLM(FakeBackend(rules=[(r".", own_words)])),
    )
    text = "A warm, funny and wise film"
    result = runner.invoke(
        app, ["explain", "demo:reviews", "--text", text, "--k", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    [explanation] = json.loads(result.output)
    assert explanation["instance"] == text
    assert [f["feature"] for f in explanation["features"]] == ["funny"]
    assert explanation["pgi"] is not None and explanation["pgu"] is not None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["demo:reviews", "--text", "good", "--row", ROW], "takes no --row"),
        (
            ["demo:reviews", "--text", "good", "--strategy", "instruction"],
            "--strategy must be one of",
        ),
        (["demo:reviews", "--row", ROW], "give the text with --text"),
        (["demo:synthetic", "--text", "good film"], "needs a text classifier"),
    ],
)
def test_text_input_errors_are_clear(runner, arguments, message):
    result = runner.invoke(app, ["explain", *arguments])
    assert result.exit_code == 2 and message in result.output


def test_the_printed_explanation_says_where_each_feature_came_from_and_the_checks_verdict(monkeypatch, runner):
    """The table printed features without saying which came from the evidence after the LLM's failed, and the
    check without its verdict or interval."""

    def filler(request):
        allowed = request.json_schema["$defs"]["RankedFeature"]["properties"]["feature"]["enum"]
        return json.dumps({"features": [{"feature": allowed[0], "direction": "+", "rationale": "r"}]})

    monkeypatch.setattr("xplain.cli.common.make_llm", lambda settings: LLM(FakeBackend(rules=[(r".", filler)])))
    result = runner.invoke(app, ["explain", "demo:reviews", "--text", "A warm, funny and wise film", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert re.search(r"│ 1\s+│ \w+\s+│ [+-]\s+│ (llm|evidence)\s+│", result.output)
    assert re.search(r"PGI above PGU: (faithful|not faithful|inconclusive) \(PGI - PGU in \[", result.output)


def test_the_proposal_flag_chooses_how_the_llm_proposes(runner):
    """`--proposal choose` scores the text's candidate words (nothing generated); `generate` asks for JSON."""
    text = "A warm, funny and wise film"
    found = {}
    for proposal in ("choose", "generate"):
        result = runner.invoke(
            app, ["explain", "demo:reviews", "--text", text, "--k", "2", "--proposal", proposal, "--json"]
        )
        assert result.exit_code == 0, result.output
        [explanation] = json.loads(result.output)
        found[proposal] = explanation
    assert found["choose"]["proposal"] == "choice" and found["choose"]["choice_scores"]
    assert found["generate"]["proposal"] == "generated" and found["generate"]["choice_scores"] is None
    bad = runner.invoke(app, ["explain", "demo:reviews", "--text", text, "--proposal", "guess"])
    assert bad.exit_code == 2 and "--proposal must be one of" in bad.output
