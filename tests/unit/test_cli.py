"""The CLI on the fake backend: each command's output and its error path."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from xplain.cli import app
from xplain.testing.serve import free_port

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("fake_llm_env")


def test_ask_prints_the_completion_as_json():
    result = runner.invoke(app, ["ask", "echo me back", "--json"])
    assert result.exit_code == 0, result.output
    completion = json.loads(result.output)
    assert completion["text"] == "echo me back"
    assert completion["usage"]["calls"] == 1


def test_score_ranks_and_reports_json():
    result = runner.invoke(app, ["score", "The capital of France is", " Paris", " a banana", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["continuations"] == [" Paris", " a banana"] and data["token_counts"] == [1, 2]
    assert all(lp < 0 for lp in data["logprobs"])


def test_check_hides_the_api_keys_and_reports_the_backend(monkeypatch):
    monkeypatch.setenv("XPLAIN_LLM_API_KEY", "sk-secret")
    monkeypatch.setenv("XPLAIN_API_KEYS", "client-key-1,client-key-2")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "sk-secret" not in result.output and "client-key" not in result.output
    assert "backend ready" in result.output and "fake" in result.output


def test_a_mistyped_setting_is_named_with_the_one_meant(monkeypatch):
    """XPLAIN_API_KEY (no S) would otherwise be ignored in silence and leave the API open."""
    monkeypatch.setenv("XPLAIN_API_KEY", "s3cret")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "XPLAIN_API_KEY is not an xplain setting" in " ".join(result.output.split())
    assert "did you mean XPLAIN_API_KEYS?" in " ".join(result.output.split())


def test_only_unknown_variables_are_reported():
    from xplain.settings import unknown_environment

    environ = {
        "XPLAIN_API_KEY": "x",
        "XPLAIN_LLM_BACKEND": "fake",
        "XPLAIN_CONFIG": "xplain.toml",
        "XPLAIN_TEST_VLLM_MODEL": "/models/m",
        "XPLAIN_NONSENSE_THING": "1",
        "HOME": "/root",
    }
    lines = unknown_environment(environ)
    assert len(lines) == 2
    assert lines[0].startswith("XPLAIN_API_KEY ") and "XPLAIN_API_KEYS" in lines[0]
    assert lines[1].startswith("XPLAIN_NONSENSE_THING ") and "xplain check" in lines[1]


def test_unreachable_server_ends_with_a_message_not_a_trace(monkeypatch):
    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "openai")
    monkeypatch.setenv("XPLAIN_LLM_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("XPLAIN_LLM_MAX_RETRIES", "0")
    result = runner.invoke(app, ["ask", "hi"])
    assert result.exit_code == 2
    assert "error:" in result.output and "XPLAIN_LLM_BASE_URL" in result.output
    assert "Traceback" not in result.output
