"""`xplain batch` on the fake backend: results file, resume after a crash, the HTML report, bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from xplain.batch.runner import RowOutcome
from xplain.batch.sources import lines_of
from xplain.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("fake_llm_env")
TEXTS = ["a warm and funny film", "dull and lifeless", "superb cast", "a mess", "moving", "tedious"]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    return path


def run(*args):
    return runner.invoke(app, ["batch", *map(str, args)])


def read(path):
    return [RowOutcome.model_validate_json(line) for line in lines_of(path.read_text())]


def test_batch_writes_one_result_per_row_and_a_report(data, tmp_path):
    out, report = tmp_path / "out.jsonl", tmp_path / "report.html"
    result = run(data, "--model", "demo:reviews", "--method", "zero_shot", "--column", "text", "--out", out,
                 "--report", report, "--chunk-size", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    outcomes = read(out)
    assert sorted(o.index for o in outcomes) == list(range(len(TEXTS)))
    assert all(o.ok and set(o.result) >= {"blackbox", "llm_label", "agrees"} for o in outcomes)
    page = report.read_text()
    assert "<svg" in page and "LLM agrees with the black box" in page
    assert "dull and lifeless" in page  # each input beside its result
    assert f"<td>{len(TEXTS)}</td>" in page


def test_rerun_resumes_keeps_finished_rows_and_retries_failed_ones(data, tmp_path):
    out = tmp_path / "out.jsonl"
    in_order = ("--concurrency", "1")  # so the first three lines are rows 0-2
    assert run(data, "--model", "demo:reviews", "--method", "predict", "--column", "text", "--out", out, *in_order).exit_code == 0
    lines = lines_of(out.read_text())
    # A crash: rows 0-2 finished, row 3 stored as failed, row 4 cut off mid-write, row 5 never started.
    failed = RowOutcome(index=3, ok=False, error="LLM backend: down").model_dump_json()
    out.write_text("\n".join([*lines[:3], failed, lines[4][:20]]) + "\n")
    result = run(data, "--model", "demo:reviews", "--method", "predict", "--column", "text", "--out", out)
    assert result.exit_code == 0, result.output
    assert "resuming: 3 of 6" in result.output
    new_lines = lines_of(out.read_text())
    assert new_lines[:3] == lines[:3], "finished rows are kept as they were"
    assert sorted(o.index for o in read(out)) == list(range(6)) and all(o.ok for o in read(out))


def test_bad_rows_are_reported_and_the_exit_code_says_so(tmp_path):
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([[1.0, 2.0], "not a row"]))
    out = tmp_path / "out.jsonl"
    result = run(data, "--model", "demo:breast_cancer", "--method", "predict", "--out", out)
    assert result.exit_code == 1
    errors = [o.error for o in read(out)]
    assert "30 features" in errors[0] and "tabular row" in errors[1]


def test_unknown_method_and_bad_options_change_nothing(data, tmp_path):
    out = tmp_path / "out.jsonl"
    result = run(data, "--model", "demo:reviews", "--method", "nope", "--out", out)
    assert result.exit_code == 2 and "unknown method 'nope'" in result.output
    result = run(data, "--model", "demo:reviews", "--method", "zero_shot", "--out", out, "--options", '{"label_names": 1}')
    assert result.exit_code == 2
    assert not out.exists()


#: Characters that `str.splitlines()` splits at but JSON leaves unescaped: real reviews hold them.
LINE_BREAKERS = ["a warm\u0085 and funny film", "dull\u2028and lifeless", "superb\u2029cast"]


def test_line_separators_inside_texts_survive_the_output_a_rerun_and_the_report(tmp_path):
    data, out, report = tmp_path / "odd.jsonl", tmp_path / "out.jsonl", tmp_path / "report.html"
    lines = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in LINE_BREAKERS)
    data.write_text(lines, encoding="utf-8")
    args = (data, "--model", "demo:reviews", "--method", "lime", "--column", "text", "--options", '{"n_samples": 20}')
    first = run(*args, "--out", out, "--report", report)
    assert first.exit_code == 0, first.output
    written = out.read_text(encoding="utf-8")
    assert all(ch in written for ch in "\u0085\u2028\u2029"), "the method echoes its input, unescaped"
    assert "3 ok, 0 failed" in first.output
    again = run(*args, "--out", out)
    assert again.exit_code == 0, again.output
    assert "resuming: 3 of 3" in again.output and "3 ok, 0 failed" in again.output
    assert out.read_text(encoding="utf-8") == written, "the rerun kept every line as it was"
    page = report.read_text(encoding="utf-8")
    assert all(text in page for text in LINE_BREAKERS)
