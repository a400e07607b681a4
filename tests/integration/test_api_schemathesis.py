"""Property-based requests generated from the app's own OpenAPI schema: whatever arrives, no 5xx comes back."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.schemathesis]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    (root / "models").mkdir()
    (root / "data").mkdir()
    app_settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{root / 'db.sqlite'}",
        trusted_model_dir=root / "models",
        data_dir=root / "data",
        max_batch_rows=20,
    )
    app = create_app(app_settings, llm=LLM(FakeBackend(default="ok")), register_demo_models=True)
    with serve_in_thread(app) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case):
    response = case.call(timeout=30)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
