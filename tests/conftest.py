import os

import pytest

# Nothing in the test suite may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture
def fake_llm_env(monkeypatch):
    """Commands read their settings from the environment: point them at the fake backend, read afresh."""
    from xplain.settings import get_settings

    monkeypatch.setenv("XPLAIN_LLM_BACKEND", "fake")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
