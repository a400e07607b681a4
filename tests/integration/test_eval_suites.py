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
    assert any(m.startswith("llm") for m in methods) and {"lime", "kernelshap"} <= methods
    for row in rows:
        assert 0 <= row["FA"] <= 1 and 0 <= row["RA"] <= 1
        assert row["PGI"] is not None and row["PGU"] is not None and row["bb_queries"] > 0
