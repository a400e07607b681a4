"""The eval suites run end to end at their small size on the embedded model and write their table."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from xplain.cli import app
from xplain.settings import get_settings

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def embedded_model(monkeypatch):
    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "llamacpp")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run_suite(name: str, tmp_path) -> list[dict]:
    out = tmp_path / f"{name}.json"
    result = CliRunner().invoke(app, ["eval", name, "--size", "small", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    return [dict(zip(table["columns"], row)) for row in table["rows"]]


def test_posthoc_suite_compares_llm_lime_and_shap_with_checks(tmp_path):
    rows = run_suite("posthoc", tmp_path)
    methods = {row["method"] for row in rows}
    assert any(m.startswith("llm-text") for m in methods) and "lime-text" in methods
    assert any(m.startswith("llm") and not m.startswith("llm-text") for m in methods)
    assert {"lime", "kernelshap"} <= methods
    assert {row["model"] for row in rows if row["method"] == "lime-text"} == {"tfidf_logistic_regression"}
    for row in rows:
        stage = row["method"].endswith((":proposed", ":evidence_only"))
        # a stage of the LLM's explanation is checked on that explanation's draws: it has no queries of its own
        assert row["bb_queries"] is None if stage else row["bb_queries"] > 0
        if row["method"].startswith("llm") and row["PGI"] is None:
            continue  # the embedded model gave no usable answer: no claim, so nothing to score
        assert 0 <= row["FA"] <= 1 and 0 <= row["RA"] <= 1
        assert row["PGI"] is not None and row["PGU"] is not None


def test_lml_suite_compares_lml_dap_with_tabular_baselines(tmp_path):
    rows = run_suite("lml", tmp_path)
    assert rows
    for row in rows:
        assert 0 <= row["lml_dap"] <= 1 and 0 <= row["logistic"] <= 1 and 0 <= row["gradient_boosting"] <= 1
        assert 0 <= row["fallback_rate"] <= 1 and row["llm_calls"] > 0 and row["completion_tokens"] > 0


def test_tbm_suite_reports_every_data_set_with_a_score_or_a_note(tmp_path):
    rows = run_suite("tbm", tmp_path)
    assert {row["data"] for row in rows} == {"synthetic_concepts", "rotten_tomatoes"}
    for row in rows:
        assert 0 <= row["tfidf_logistic"] <= 1 and row["llm_calls"] > 0
        assert (row["tbm"] is not None and 0 <= row["tbm"] <= 1 and row["concepts"]) or "concept" in row["note"]
    assert next(r for r in rows if r["data"] == "synthetic_concepts")["known_found"] != "-"
