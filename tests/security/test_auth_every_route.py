"""With API keys set, every route in the app's own route table refuses a request without a key or with a wrong
one, and lets the right key through — except liveness and the documents that hold no data (README: "API keys")."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.routing import Mount, Route

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

pytestmark = pytest.mark.integration

KEY = "k-123"
#: What may be read without a key: liveness, the API's description and docs pages, the chat page and its assets.
EXPECTED_PUBLIC = {
    "GET /health",
    "GET /",
    "GET /docs",
    "GET /docs/oauth2-redirect",
    "GET /redoc",
    "GET /openapi.json",
    "GET /chat",
    "GET /chat/static/{name}",
    "GET /static-offline-docs",
}


def concrete(path: str) -> str:
    """A path with every parameter filled in, so that the request reaches the route."""
    return re.sub(r"\{[^}]+\}", "x", path)


def flat_routes(routes) -> list:
    """The route table with included routers opened up (FastAPI keeps each included router as one entry; the
    routers here carry their prefix themselves and are included without another)."""
    flat = []
    for route in routes:
        included = getattr(route, "original_router", None)
        flat.extend(flat_routes(included.routes) if included is not None else [route])
    return flat


def endpoints(app) -> list[tuple[str, str, str]]:
    """(method, route path, path to request) for every route the app serves."""
    found = []
    for route in flat_routes(app.routes):
        if isinstance(route, Mount):
            found.append(("GET", route.path, route.path + "/swagger-ui.css"))
        elif isinstance(route, Route):
            for method in sorted(route.methods - {"HEAD"}):
                path = "/chat/static/chat.js" if route.path == "/chat/static/{name}" else concrete(route.path)
                found.append((method, route.path, path))
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{root / 'db.sqlite'}",
        classifier_dir=root / "classifiers",
        api_keys=[KEY, "other-key"],
    )
    app = create_app(settings, llm=LLM(FakeBackend(default="ok")), register_demo_models=True)
    with serve_in_thread(app) as url:
        yield app, url


def test_every_route_needs_a_key_but_the_public_ones(served):
    app, url = served
    public, checked = set(), 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for method, route_path, path in endpoints(app):
            if route_path == "/models/{name}" and method == "DELETE":
                path = "/models/not-there"  # the right key must not remove a demo on the way
            without = client.request(method, path)
            wrong = client.request(method, path, headers={"X-API-Key": "nope"})
            right = client.request(method, path, headers={"Authorization": f"Bearer {KEY}"})
            checked += 1
            assert right.status_code != 401, f"{method} {path}: the right key is refused"
            if without.status_code != 401:
                public.add(f"{method} {route_path}")
                assert without.status_code < 500 and wrong.status_code == without.status_code
                continue
            assert wrong.status_code == 401, f"{method} {path}: a wrong key gets {wrong.status_code}"
            assert "API key" in without.json()["error"] and without.headers["www-authenticate"] == "Bearer"
    assert public == EXPECTED_PUBLIC
    assert checked > 30  # the walk saw the whole table, not an empty app


def test_the_stream_routes_need_a_key_and_answer_with_one(served):
    _, url = served
    body = {"model": "reviews", "session_id": "s1", "message": "What does row 0 say?"}
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/chat/stream", json=body).status_code == 401
        with client.stream("POST", "/chat/stream", json=body, headers={"X-API-Key": KEY}) as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            events = [line for line in stream.iter_lines() if line.startswith("event: ")]
        assert events and events[-1] in ("event: answer", "event: error")
        job = client.post(
            "/jobs", json={"model": "reviews", "method": "predict", "rows": ["a fine film"]}, headers={"X-API-Key": KEY}
        ).json()
        assert client.get(f"/jobs/{job['id']}/events").status_code == 401
        with client.stream("GET", f"/jobs/{job['id']}/events", headers={"X-API-Key": KEY}) as stream:
            assert stream.status_code == 200
            assert any(line == "event: end" for line in stream.iter_lines())


def test_the_schema_declares_the_key_on_every_guarded_operation(served):
    _, url = served
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            guarded = f"{method.upper()} {path}" not in EXPECTED_PUBLIC
            assert bool(operation.get("security")) == guarded, f"{method} {path}"
