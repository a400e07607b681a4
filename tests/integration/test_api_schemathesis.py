"""Property-based requests generated from the app's own OpenAPI schema, with API keys on: whatever arrives — with
the key, without it, or with its body sent chunked — no 5xx comes back."""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.server.guards import is_public
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.schemathesis]

KEY = "schemathesis-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis")
    for name in ("models", "data", "classifiers"):
        (root / name).mkdir()
    app_settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{root / 'db.sqlite'}",
        trusted_model_dir=root / "models",
        data_dir=root / "data",
        classifier_dir=root / "classifiers",
        max_batch_rows=20,
        api_keys=[KEY],
        sync_timeout_s=5,  # options that ask for much work are stopped and sent to /jobs, within the client's wait
    )
    app = create_app(app_settings, llm=LLM(FakeBackend(default="ok")), register_demo_models=True)
    with serve_in_thread(app) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH)


schema = schemathesis.pytest.from_fixture("api_schema")


def no_server_error(response, case) -> None:
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_server_fail(case):
    no_server_error(case.call(headers=AUTH, timeout=30), case)


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_without_a_key_every_operation_is_refused(case):
    response = case.call(headers={"X-API-Key": "not-the-key"}, timeout=30)
    no_server_error(response, case)
    if not is_public(case.path):
        assert response.status_code == 401, f"{case.method} {case.formatted_path} answered {response.status_code}"


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_chunked_bodies_are_read_like_any_other(case):
    """The same requests with the body sent `Transfer-Encoding: chunked` (no Content-Length)."""
    request = case.as_transport_kwargs(headers=AUTH)
    body = request.pop("json", None)
    if body is None:
        return
    encoded = json.dumps(body).encode()

    def pieces():
        for start in range(0, len(encoded), 64):
            yield encoded[start : start + 64]

    # our key only: the schema's bearer scheme makes schemathesis add an Authorization header of its own
    headers = {k: v for k, v in request["headers"].items() if k.lower() not in ("content-length", "authorization")}
    response = httpx.request(
        request["method"], request["url"], params=request["params"], headers=headers, content=pieces(), timeout=30
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    no_server_error(response, case)
