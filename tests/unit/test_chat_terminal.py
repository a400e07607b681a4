"""`xplain chat` through scripted terminal sessions on the fake backend: what the user sees of tool calls, plots,
what-if edits, grounding flags, memory across runs, and the errors for bad options."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import xplain.cli.common
from xplain.cli import app
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend, tool_call_reply

runner = CliRunner()
_rng = np.random.default_rng(0)
X = _rng.normal(size=(60, 3))
Y = np.where(X[:, 0] > 0, "yes", "no")
MODEL = LogisticRegression().fit(X, Y)  # loaded by import path: tests.unit.test_chat_terminal:MODEL
SPEC = f"{__name__}:MODEL"


@pytest.fixture(autouse=True)
def fake_settings(fake_llm_env):
    """Every session here reads its settings afresh, on the fake backend (the LLM itself is scripted per test)."""


@pytest.fixture
def data_csv(tmp_path):
    path = tmp_path / "rows.csv"
    lines = ["a,b,c,label", *(f"{r[0]},{r[1]},{r[2]},{y}" for r, y in zip(X, Y))]
    path.write_text("\n".join(lines))
    return path


def script(monkeypatch, *replies) -> FakeBackend:
    backend = FakeBackend(queue=list(replies))
    monkeypatch.setattr(xplain.cli.common, "make_llm", lambda settings: LLM(backend))
    return backend


def probability(row: int) -> float:
    return round(float(MODEL.predict_proba(X[row : row + 1])[0].max()), 4)


def test_a_scripted_session_shows_tools_plots_edits_and_flags(monkeypatch, data_csv, tmp_path):
    backend = script(
        monkeypatch,
        tool_call_reply("occlusion", row=0, top=3),
        f"Row 0 is predicted with {probability(0)}; but 0.123 is made up.",
        tool_call_reply("what_if", row=0, changes=[{"feature": "a", "value": -5.0}]),
        "Setting a to -5 gives no.",
    )
    db = tmp_path / "chat.sqlite"
    options = ["chat", "--model", SPEC, "--data", str(data_csv), "--label-column", "label", "--db", str(db)]
    result = runner.invoke(app, options, input="why row 0?\nwhat if a were -5?\nexit\n")

    assert result.exit_code == 0, result.output
    out = result.output
    assert "→ occlusion(row=0, top=3)" in out
    assert "Drop in P(" in out and "█" in out  # the bar chart
    assert "based on: occlusion" in out
    assert "not backed by any tool result: 0.123" in out and f"{probability(0)}," not in out.split("not backed")[1]
    assert "what if" in out and "prediction" in out and "-5.0" in out  # the edit as a before/after table
    # the second question reached the model with the first turn in its history
    second_turn = "\n".join(m.content for m in backend.requests[2].messages)
    assert "why row 0?" in second_turn and "what if a were -5?" in second_turn
    assert len(backend.requests) == 4


def test_the_conversation_continues_in_a_later_run(monkeypatch, data_csv, tmp_path):
    db = tmp_path / "chat.sqlite"
    options = [
        "chat",
        "--model",
        SPEC,
        "--data",
        str(data_csv),
        "--label-column",
        "label",
        "--db",
        str(db),
        "--session",
        "s-7",
    ]
    script(monkeypatch, "First answer.")
    assert runner.invoke(app, options, input="first question\n").exit_code == 0  # ends at end of input
    backend = script(monkeypatch, "Second answer.")
    result = runner.invoke(app, options, input="second question\nquit\n")
    assert result.exit_code == 0, result.output
    seen = "\n".join(m.content for m in backend.requests[0].messages)
    assert "first question" in seen and "First answer." in seen


def test_the_step_limit_is_reported(monkeypatch, data_csv):
    script(monkeypatch, *[tool_call_reply("predict", row=i) for i in range(5)])
    options = ["chat", "--model", SPEC, "--data", str(data_csv), "--label-column", "label", "--max-steps", "2"]
    result = runner.invoke(app, options, input="predict all\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("→ predict(") == 2 and "stopped at the step limit" in result.output


def test_a_demo_model_answers_without_any_file(monkeypatch):
    script(monkeypatch, tool_call_reply("describe_data"), "Done.")
    result = runner.invoke(app, ["chat", "--demo", "synthetic"], input="describe the data\n")
    assert result.exit_code == 0, result.output
    assert "demo:synthetic" in result.output and "→ describe_data()" in result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([], "exactly one of --model SPEC or --demo NAME"),
        (["--demo", "nope"], "unknown demo model 'nope'"),
        (["--model", SPEC], "--model needs --data"),
        (["--model", "no/such/file.skops", "--data", "{csv}"], "no skops file"),
    ],
)
def test_bad_options_end_with_a_message(monkeypatch, data_csv, options, message):
    script(monkeypatch)
    options = [o.replace("{csv}", str(data_csv)) for o in options]
    result = runner.invoke(app, ["chat", *options], input="")
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_tool_errors_are_shown_and_the_session_goes_on(monkeypatch, data_csv):
    script(monkeypatch, tool_call_reply("predict", row=999), "Row 999 does not exist.")
    options = ["chat", "--model", SPEC, "--data", str(data_csv), "--label-column", "label"]
    result = runner.invoke(app, options, input="row 999?\n")
    assert result.exit_code == 0, result.output
    assert "tool error: row 999 does not exist" in result.output


def test_the_planner_answers_a_why_a_what_if_and_a_follow_up_in_the_terminal(monkeypatch):
    backend = script(monkeypatch)  # nothing scripted: the rules decide every question here
    questions = "Why did the model predict this for row 3?\nwhat if mean radius doubled?\nand for row 5?\nexit\n"
    result = runner.invoke(app, ["chat", "--demo", "breast_cancer", "--mode", "planner"], input=questions)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "· planner" in out
    assert "→ occlusion(row=3)" in out and "Drop in P(benign)" in out and "█" in out
    assert "check (top 3): PGI" in out and "The model predicts benign for row 3" in out
    assert '→ what_if(row=3, changes=[{"feature": "mean radius"' in out and "what if" in out
    assert '→ what_if(row=5, changes=[{"feature": "mean radius"' in out  # the follow-up kept the edit
    assert out.count("based on: occlusion") == 1 and out.count("based on: what_if") == 2
    assert "not backed" not in out and "Traceback" not in out
    assert backend.requests == [] and backend.score_batches == []


def test_a_counterfactual_shows_each_changed_feature_from_and_to(monkeypatch):
    script(monkeypatch)
    question = "What would need to change for row 4 to be classified benign?\nexit\n"
    result = runner.invoke(app, ["chat", "--demo", "breast_cancer", "--mode", "planner"], input=question)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "→ counterfactual(row=4" in out and "counterfactuals" in out
    assert "The smallest change found that flips it: setting" in out and " → " in out
    assert "based on: counterfactual" in out and "not backed" not in out
