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


def test_check_hides_the_api_key_and_reports_the_backend(monkeypatch):
    monkeypatch.setenv("XPLAIN_LLM_API_KEY", "sk-secret")
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "sk-secret" not in result.output
    assert "backend ready" in result.output and "fake" in result.output


def test_unreachable_server_ends_with_a_message_not_a_trace(monkeypatch):
    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "openai")
    monkeypatch.setenv("XPLAIN_LLM_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("XPLAIN_LLM_MAX_RETRIES", "0")
    result = runner.invoke(app, ["ask", "hi"])
    assert result.exit_code == 2
    assert "error:" in result.output and "XPLAIN_LLM_BASE_URL" in result.output
    assert "Traceback" not in result.output
