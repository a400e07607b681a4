"""Bad and hostile requests against a real uvicorn server on 127.0.0.1 (fake LLM, API keys on): each case asserts
the status, that the error body says what was wrong (and never echoes internals), and — after all of them — that
no file outside the configured directories was written, changed or removed."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

pytestmark = pytest.mark.integration

KEY = "right-key"
AUTH = {"X-API-Key": KEY}
MAX_BODY = 20_000
CONFIGURED = ("state", "models", "data", "classifiers")


# -- a small model endpoint that misbehaves on purpose ------------------------------------------------------------


class Endpoint(BaseHTTPRequestHandler):
    """/ok answers outputs; /redirect sends elsewhere (counting visits there); /broken fails with a secret body."""

    visits: dict[str, int] = {}

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        Endpoint.visits[self.path] = Endpoint.visits.get(self.path, 0) + 1
        length = int(self.headers.get("content-length", 0))
        inputs = json.loads(self.rfile.read(length))["inputs"]
        if self.path == "/redirect":
            self.send_response(307)
            self.send_header("Location", "/target")
            self.end_headers()
            return
        if self.path == "/broken":
            body = b"SECRET-INTERNAL-STACKTRACE at /srv/app.py line 12"
            self.send_response(500)
        else:
            body = json.dumps({"outputs": [[0.3, 0.7] for _ in inputs]}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# -- the server under attack ---------------------------------------------------------------------------------------


@dataclass
class Target:
    url: str
    root: Path
    endpoint: str
    extra: dict[str, Any] = field(default_factory=dict)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` outside the configured directories, with a digest of its bytes."""
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in CONFIGURED or path.is_dir():
            continue
        files[str(relative)] = "link" if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
    return files


@pytest.fixture(scope="module")
def target(tmp_path_factory, endpoint):
    root = tmp_path_factory.mktemp("attack")
    for name in CONFIGURED:
        (root / name).mkdir()
    outside = root / "outside"
    outside.mkdir()
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]], [0, 1, 0, 1])
    joblib.dump(model, outside / "evil.joblib")
    (outside / "rows.csv").write_text("text\nsecret row\n")
    (outside / "secret.txt").write_text("do not read me")
    os.symlink(outside / "evil.joblib", root / "models" / "link.joblib")
    os.symlink(outside / "rows.csv", root / "data" / "link.csv")
    (root / "data" / "ok.csv").write_text("text\na fine film\n")
    settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{root / 'state' / 'db.sqlite'}",
        trusted_model_dir=root / "models",
        data_dir=root / "data",
        classifier_dir=root / "classifiers",
        api_keys=[KEY],
        max_body_bytes=MAX_BODY,
        max_batch_rows=50,
        allowed_model_hosts=["127.0.0.1", "no-such-host.invalid"],
    )
    before = snapshot(root)
    app = create_app(settings, llm=LLM(FakeBackend(default="ok")), register_demo_models=True)
    with serve_in_thread(app) as url:
        yield Target(url=url, root=root, endpoint=endpoint)
    assert snapshot(root) == before, "a file outside the configured directories changed"


def chunked(total: int, piece: int = 1000):
    """A body sent with Transfer-Encoding: chunked (no Content-Length), `total` bytes of a JSON document."""
    body = b'{"inputs": ["' + b"x" * (total - 16) + b'"]}'
    for start in range(0, len(body), piece):
        yield body[start : start + piece]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# name, method, path, request keyword arguments, expected status, words the error must hold
CASES: list[tuple[str, str, str, dict[str, Any], int, list[str]]] = [
    # -- authentication
    ("no key", "GET", "/models", {"headers": {}}, 401, ["API key"]),
    ("wrong key", "GET", "/models", {"headers": {"X-API-Key": "wrong"}}, 401, ["API key"]),
    ("wrong bearer", "GET", "/jobs", {"headers": {"Authorization": "Bearer wrong"}}, 401, ["API key"]),
    ("empty bearer", "GET", "/jobs", {"headers": {"Authorization": "Bearer"}}, 401, ["API key"]),
    ("basic auth instead", "GET", "/jobs", {"headers": {"Authorization": "Basic cmlnaHQta2V5Og=="}}, 401, ["API key"]),
    ("non-ascii key", "GET", "/models", {"headers": {"X-API-Key": "r\xe9ght".encode("latin-1")}}, 401, ["API key"]),
    ("key as query", "GET", f"/models?api_key={KEY}", {"headers": {}}, 401, ["API key"]),
    ("chat without key", "POST", "/chat/stream",
     {"headers": {}, "json": {"model": "reviews", "session_id": "s", "message": "hi"}}, 401, ["API key"]),
    ("chat models without key", "GET", "/chat/models", {"headers": {}}, 401, ["API key"]),
    ("job events without key", "GET", "/jobs/abc/events", {"headers": {}}, 401, ["API key"]),
    ("readiness without key", "GET", "/ready", {"headers": {}}, 401, ["API key"]),
    ("unknown path without key", "GET", "/admin", {"headers": {}}, 401, ["API key"]),
    ("delete without key", "DELETE", "/models/reviews", {"headers": {}}, 401, ["API key"]),
    # -- body size, read as it streams
    ("body over the limit", "POST", "/models/reviews/predict",
     {"content": b'{"inputs": ["' + b"x" * MAX_BODY + b'"]}'}, 413, ["XPLAIN_MAX_BODY_BYTES"]),
    ("chunked body over the limit", "POST", "/models/reviews/predict",
     {"content": chunked(3 * MAX_BODY)}, 413, ["XPLAIN_MAX_BODY_BYTES"]),
    ("chunked body under the limit", "POST", "/models/reviews/predict",
     {"content": chunked(MAX_BODY // 2), "headers": AUTH | {"Content-Type": "application/json"}}, 200, []),
    # -- malformed bodies
    ("bad json", "POST", "/models/reviews/predict", {"content": b'{"inputs": [', "json_type": True}, 422, ["not valid JSON"]),
    ("json is a string", "POST", "/models/reviews/predict", {"json": "inputs"}, 422, ["dictionary"]),
    ("wrong content type", "POST", "/models/reviews/predict",
     {"content": b'{"inputs": ["a"]}', "headers": AUTH | {"Content-Type": "text/plain"}}, 415,
     ["Content-Type: application/json"]),
    ("form body", "POST", "/models/reviews/predict", {"data": {"inputs": "a"}}, 415, ["the body must be JSON"]),
    ("huge integer", "POST", "/models/reviews/predict",
     {"content": b'{"inputs": [' + b"9" * 5000 + b"]}", "json_type": True}, 400, ["parsing the body"]),
    ("deep nesting", "POST", "/models/reviews/predict", {"content": nested(5000), "json_type": True}, 400, []),
    ("infinite number", "POST", "/models/breast_cancer/predict",
     {"content": b'{"inputs": [[1e999, 1, 2]]}', "json_type": True}, 200, []),
    ("empty inputs", "POST", "/models/reviews/predict", {"json": {"inputs": []}}, 422, ["inputs"]),
    ("null byte in text", "POST", "/models/reviews/predict", {"json": {"inputs": ["a\x00b"]}}, 200, []),
    ("negative page", "GET", "/jobs?limit=-5", {}, 422, ["limit"]),
    ("huge page", "GET", "/jobs?limit=99999999999999999999", {}, 422, ["limit"]),
    # -- strict options, messages for people
    ("unknown top-level key", "POST", "/models",
     {"json": {"name": "m1", "source": {"demo": "wine"}, "sorce": 1}}, 422, ["unknown key 'sorce'", "source"]),
    ("unknown nested key", "POST", "/models",
     {"json": {"name": "m1", "source": {"demo": "wine", "path": "/etc"}}}, 422, ["unknown key 'path'", "import_path"]),
    ("misspelled method option", "POST", "/methods/zero_shot",
     {"json": {"model": "reviews", "rows": ["a"], "options": {"labelnames": {}}}}, 422,
     ["unknown option(s) labelnames", "label_names"]),
    ("misspelled classifier option", "POST", "/methods/classifier_fit",
     {"json": {"rows": [{"text": "a", "label": "x"}], "options": {"kind": "tbm", "name": "c", "featurenames": []}}},
     422, ["featurenames", "feature_names"]),
    # -- names
    ("classifier named ..", "POST", "/methods/classifier_fit", {"json": {"rows": [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], "options": {"kind": "tbm", "name": ".."}}}, 422, ["name"]),
    ("classifier named ../x", "POST", "/methods/classifier_fit", {"json": {"rows": [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], "options": {"kind": "tbm", "name": "../x"}}}, 422, ["name"]),
    ("classifier named .hidden", "POST", "/methods/classifier_fit", {"json": {"rows": [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}], "options": {"kind": "tbm", "name": ".hidden"}}}, 422, ["name"]),
    ("predict with classifier ..", "POST", "/methods/classifier_predict",
     {"json": {"rows": ["a"], "options": {"classifier": ".."}}}, 422, ["classifier"]),
    ("predict with classifier ../../outside", "POST", "/methods/classifier_predict",
     {"json": {"rows": ["a"], "options": {"classifier": "../../outside"}}}, 422, ["classifier"]),
    ("method path %2e%2e", "POST", "/methods/%2e%2e", {"json": {"rows": ["a"]}}, 404, []),
    ("model named a/b", "POST", "/models", {"json": {"name": "a/b", "source": {"demo": "wine"}}}, 422, ["name"]),
    ("model named ..", "POST", "/models", {"json": {"name": "..", "source": {"demo": "wine"}}}, 422, ["name"]),
    ("model name too long", "POST", "/models", {"json": {"name": "m" * 101, "source": {"demo": "wine"}}}, 422, ["name"]),
    ("model name with newline", "POST", "/models", {"json": {"name": "m\n", "source": {"demo": "wine"}}}, 422, ["name"]),
    # -- paths
    ("model file ../", "POST", "/models",
     {"json": {"name": "evil", "source": {"file": "../outside/evil.joblib"}}}, 403, ["outside the trusted model directory"]),
    ("model file absolute", "POST", "/models",
     {"json": {"name": "evil", "source": {"file": "/etc/passwd"}}}, 403, ["outside"]),
    ("model file symlink out", "POST", "/models",
     {"json": {"name": "evil", "source": {"file": "link.joblib"}}}, 403, ["outside"]),
    ("data file ../", "POST", "/jobs",
     {"json": {"model": "reviews", "method": "predict", "file": "../outside/rows.csv", "column": "text"}}, 403, ["outside"]),
    ("data file absolute", "POST", "/jobs",
     {"json": {"model": "reviews", "method": "predict", "file": "/etc/passwd"}}, 403, ["outside"]),
    ("data file symlink out", "POST", "/jobs",
     {"json": {"model": "reviews", "method": "predict", "file": "link.csv", "column": "text"}}, 403, ["outside"]),
    ("data file missing", "POST", "/jobs",
     {"json": {"model": "reviews", "method": "predict", "file": "none.csv"}}, 404, ["no data file"]),
    ("data file fine", "POST", "/jobs",
     {"json": {"model": "reviews", "method": "predict", "file": "ok.csv", "column": "text"}}, 202, []),
    ("import path not trusted", "POST", "/models",
     {"json": {"name": "imp", "source": {"import_path": "os:system"}, "kind": "text"}}, 403, ["XPLAIN_TRUSTED_IMPORT_PREFIXES"]),
    # -- registration
    ("demo replaced", "POST", "/models",
     {"json": {"name": "reviews", "source": {"demo": "wine"}, "replace": True}}, 403, ["demo"]),
    ("demo taken", "POST", "/models", {"json": {"name": "wine", "source": {"demo": "wine"}}}, 409, ["replace"]),
    ("demo deleted", "DELETE", "/models/reviews", {}, 403, ["demo"]),
    # -- URL models (allowed: 127.0.0.1 by address, localhost by name)
    ("url to metadata", "POST", "/models",
     {"json": {"name": "u1", "kind": "tabular", "source": {"url": "http://169.254.169.254/latest/meta-data"}}}, 403,
     ["not in XPLAIN_ALLOWED_MODEL_HOSTS"]),
    ("url to a private net", "POST", "/models",
     {"json": {"name": "u2", "kind": "tabular", "source": {"url": "http://10.0.0.1/"}}}, 403, ["XPLAIN_ALLOWED_MODEL_HOSTS"]),
    ("url ipv6 loopback", "POST", "/models",
     {"json": {"name": "u4", "kind": "tabular", "source": {"url": "http://[::1]:9/"}}}, 403, ["XPLAIN_ALLOWED_MODEL_HOSTS"]),
    ("url ipv4-mapped metadata", "POST", "/models",
     {"json": {"name": "u5", "kind": "tabular", "source": {"url": "http://[::ffff:169.254.169.254]/"}}}, 403,
     ["XPLAIN_ALLOWED_MODEL_HOSTS"]),
    ("url decimal ip", "POST", "/models",
     {"json": {"name": "u6", "kind": "tabular", "source": {"url": "http://2852039166/"}}}, 403, ["XPLAIN_ALLOWED_MODEL_HOSTS"]),
    ("url file scheme", "POST", "/models",
     {"json": {"name": "u7", "kind": "tabular", "source": {"url": "file:///etc/passwd"}}}, 422, ["url"]),
    ("url unresolvable", "POST", "/models",
     {"json": {"name": "u8", "kind": "tabular", "source": {"url": "http://no-such-host.invalid/"}}}, 422,
     ["cannot resolve"]),
]


@pytest.mark.parametrize(("name", "method", "path", "options", "status", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_request(target, name, method, path, options, status, words):
    options = dict(options)
    headers = options.pop("headers", AUTH)
    if options.pop("json_type", False):
        headers = headers | {"Content-Type": "application/json"}
    response = httpx.request(method, target.url + path, headers=headers, timeout=30, **options)
    assert response.status_code == status, response.text[:500]
    text = response.text
    assert "errors.pydantic.dev" not in text and "Traceback" not in text
    if status >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"}, body
        for word in words:
            assert word in json.dumps(body), f"{word!r} not in {body}"


def test_url_models_go_only_where_allowed_and_never_echo_or_follow(target):
    with httpx.Client(base_url=target.url, headers=AUTH, timeout=30) as api:
        for name, path in (("good", "/ok"), ("redirecting", "/redirect"), ("broken", "/broken")):
            body = {"name": name, "kind": "tabular", "classes": ["a", "b"], "source": {"url": target.endpoint + path}}
            assert api.post("/models", json=body).status_code == 201, name
        good = api.post("/models/good/predict", json={"inputs": [[1.0, 2.0]]}).json()
        assert good["predictions"][0]["label"] == "b"
        redirected = api.post("/models/redirecting/predict", json={"inputs": [[1.0, 2.0]]})
        assert redirected.status_code == 502 and "redirects are not followed" in redirected.json()["error"]
        assert Endpoint.visits.get("/target", 0) == 0
        broken = api.post("/models/broken/predict", json={"inputs": [[1.0, 2.0]]})
        assert broken.status_code == 502 and "HTTP 500" in broken.json()["error"] and "SECRET" not in broken.text


def test_url_models_are_off_without_an_allow_list(tmp_path, endpoint):
    settings = Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    with serve_in_thread(create_app(settings, llm=LLM(FakeBackend(default="ok")))) as url:
        body = {"name": "m", "kind": "tabular", "source": {"url": endpoint + "/ok"}}
        refused = httpx.post(f"{url}/models", json=body, timeout=30)
    assert refused.status_code == 403 and "registered by URL are off" in refused.json()["error"]


def test_a_slow_request_stops_at_the_budget_and_points_to_jobs(tmp_path):
    settings = Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", sync_timeout_s=0.5)
    backend = FakeBackend(default="ok", delay_s=3)
    with serve_in_thread(create_app(settings, llm=LLM(backend), register_demo_models=True)) as url:
        started = time.monotonic()
        body = {"model": "reviews", "rows": ["a fine film"]}
        response = httpx.post(f"{url}/methods/zero_shot", json=body, timeout=30)
        took = time.monotonic() - started
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    assert response.status_code == 422 and "POST /jobs" in response.json()["error"]
    assert took < 2.5, took


def test_work_stops_when_the_client_goes_away(tmp_path):
    """The client gives up after 0.3 s of a 1.5 s LLM call: the handler is cancelled, so nothing after that
    call (the second round) ever reaches the backend."""
    settings = Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    backend = FakeBackend(default="not json", delay_s=1.5)  # posthoc re-asks: three rounds if left to run
    with serve_in_thread(create_app(settings, llm=LLM(backend), register_demo_models=True)) as url:
        features = httpx.get(f"{url}/models/wine").json()["feature_names"]
        body = {"model": "wine", "rows": [[1.0] * len(features)]}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/methods/posthoc", json=body, timeout=0.3)
        time.sleep(4)
        sent = len(backend.batches) + len(backend.score_batches)
    assert sent == 1, f"{sent} LLM rounds ran for a client that had gone"


def test_a_body_length_over_the_limit_is_refused_before_it_is_read(target):
    """A Content-Length over the limit (here with almost no body behind it) is answered at once."""
    import socket

    host, port = target.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /models/reviews/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n{"
        )
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "XPLAIN_MAX_BODY_BYTES" in reply
