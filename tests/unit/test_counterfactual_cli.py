"""`xplain counterfactual` on the fake LLM: the diff view, JSON output and its error paths."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from xplain.cli import app
from xplain.cli.common import console
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend, request_text
from xplain.settings import get_settings

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")
SPEC = "tests.unit.test_counterfactual_cli"


def keyword_model(texts):
    p = np.array([0.9 if "great" in t else 0.1 for t in texts])
    return np.column_stack([1 - p, p])


_X = pd.DataFrame({"income": [10.0, 20, 30, 40, 50, 60], "age": [30.0, 40, 50, 30, 40, 50]})
credit_model = LogisticRegression().fit(_X, [0, 0, 0, 1, 1, 1])


def reply(request):
    text = request_text(request)
    if '"proposals"' in text:
        return json.dumps({"proposals": [{"changes": [{"feature": "income", "value": 90}]}]})
    edited = re.search(r"<data>\n(.*?)\n</data>", text, re.DOTALL).group(1).replace("awful", "great")
    return json.dumps({"edits": [edited]})


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "fake")
    monkeypatch.setattr("xplain.cli.common.make_llm", lambda settings: LLM(FakeBackend(default=reply)))
    monkeypatch.setattr(console, "width", 200)  # keep the table on one line per row
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_text_counterfactual_shows_the_changed_words_and_verification(runner):
    result = runner.invoke(app, ["counterfactual", f"{SPEC}:keyword_model", "--text", "an awful film", "--strategy", "llm", "--mode", "target"])
    assert result.exit_code == 0, result.output
    assert "great" in result.output and "flips (confirmed)" in result.output


def test_text_counterfactual_json_carries_the_black_box_verdict(runner):
    result = runner.invoke(app, ["counterfactual", f"{SPEC}:keyword_model", "--text", "an awful film", "--json", "--strategy", "llm", "--mode", "target"])
    assert result.exit_code == 0, result.output
    [explanation] = json.loads(result.output)["explanations"]
    best = explanation["counterfactuals"][0]
    assert best["text"] == "an great film" and best["valid"] and best["prediction"] == 1


def test_tabular_counterfactual_respects_immutable_features(runner):
    row = json.dumps({"income": 20, "age": 40})
    result = runner.invoke(
        app,
        [
            "counterfactual",
            f"{SPEC}:credit_model",
            "--row",
            row,
            "--constraints",
            '{"age": {"immutable": true}}',
            "--strategy",
            "llm",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    [explanation] = json.loads(result.output)["explanations"]
    assert all(c["values"]["age"] == 40 for c in explanation["counterfactuals"])
    assert explanation["counterfactuals"][0]["valid"]


def test_tabular_guided_search_takes_values_from_the_data_file_and_keeps_immutables(runner, tmp_path):
    _X.to_csv(tmp_path / "rows.csv", index=False)
    row = json.dumps({"income": 20, "age": 40})
    arguments = ["--row", row, "--data", str(tmp_path / "rows.csv"), "--constraints", '{"age": {"immutable": true}}']
    result = runner.invoke(app, ["counterfactual", f"{SPEC}:credit_model", *arguments, "--json"])
    assert result.exit_code == 0, result.output
    [explanation] = json.loads(result.output)["explanations"]
    best = explanation["counterfactuals"][0]
    assert best["valid"] and [c["feature"] for c in best["changes"]] == ["income"] and best["values"]["age"] == 40
    assert best["values"]["income"] in set(_X.income)  # a value seen in the data
    shown = runner.invoke(app, ["counterfactual", f"{SPEC}:credit_model", *arguments])
    assert shown.exit_code == 0 and "flips (confirmed)" in shown.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--row", '{"income": 1}'], "exactly the features"),
        (["--row", '{"income": 1, "age": 2}', "--constraints", '{"zip": {"min": 0}}'], "unknown feature"),
        (["--row", "{not json"], "not valid JSON"),
    ],
)
def test_bad_tabular_input_is_a_clear_error(runner, arguments, message):
    result = runner.invoke(app, ["counterfactual", f"{SPEC}:credit_model", *arguments])
    assert result.exit_code == 2 and message in result.output


def test_text_and_row_together_are_refused(runner):
    result = runner.invoke(app, ["counterfactual", f"{SPEC}:keyword_model", "--text", "x", "--row", "{}"])
    assert result.exit_code == 2 and "either --text" in result.output


def test_a_text_models_data_file_gives_the_guided_search_its_texts(runner, tmp_path):
    """`--data` on a text model: the file's `text` column is the reference texts the search takes words from (it
    was read as a table, so the search saw only its column names)."""
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["a great cast", "a dull plot", "great fun", "so dull"], "stars": [5, 1, 4, 2]}).to_csv(data)
    result = runner.invoke(app, ["counterfactual", f"{SPEC}:keyword_model", "--text", "an awful film", "--json", "--data", str(data)])
    assert result.exit_code == 0, result.output
    [explanation] = json.loads(result.output)["explanations"]
    assert "great" in explanation["goal_words"]
    assert any(c["valid"] and "great" in c["text"] for c in explanation["counterfactuals"])


def test_a_text_models_data_file_without_a_text_column_is_refused(runner, tmp_path):
    data = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["a great cast"], "stars": [5]}).to_csv(data, index=False)
    result = runner.invoke(app, ["counterfactual", f"{SPEC}:keyword_model", "--text", "an awful film", "--data", str(data)])
    assert result.exit_code != 0
    assert "column named 'text'" in result.output
