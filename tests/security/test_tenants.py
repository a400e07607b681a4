"""Each API key is a principal: its jobs, results, registered models and conversations are its own. Another key
gets 404 (as if they did not exist) and changes nothing; an admin key sees and cancels every job; demos are shared."""

from __future__ import annotations

import shutil
import sqlite3
import time

import pytest
from fastapi.testclient import TestClient

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings

A, B, ADMIN = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}, {"Authorization": "Bearer key-admin"}
FIXTURES = "tests.unit.blackbox_fixtures"


@pytest.fixture
def database(tmp_path):
    return tmp_path / "db.sqlite"


@pytest.fixture
def api(tmp_path, database):
    settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{database}",
        classifier_dir=tmp_path / "classifiers",
        trusted_import_prefixes=[FIXTURES],
        api_keys=["key-a", "key-b"],
        admin_api_keys=["key-admin"],
        job_concurrency=1,
        job_chunk_size=1,
    )
    backend = FakeBackend(default="ok", delay_s=0.02)  # a 40-row job runs for about a second
    with TestClient(create_app(settings, llm=LLM(backend), register_demo_models=True)) as client:
        yield client


def submit(api, headers, rows=40) -> str:
    body = {"model": "reviews", "method": "zero_shot", "rows": [f"review {i}" for i in range(rows)]}
    response = api.post("/jobs", json=body, headers=headers)
    assert response.status_code == 202
    return response.json()["id"]


def test_another_key_cannot_see_read_cancel_or_resume_a_job(api):
    job_id = submit(api, A)
    missing = {"error": f"no job {job_id!r}", "detail": "JobNotFound"}
    for method, path in (
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/results"),
        ("GET", f"/jobs/{job_id}/results.jsonl"),
        ("GET", f"/jobs/{job_id}/results.parquet"),
        ("GET", f"/jobs/{job_id}/events"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("POST", f"/jobs/{job_id}/resume"),
    ):
        response = api.request(method, path, headers=B)
        assert (response.status_code, response.json()) == (404, missing), f"{method} {path}"
    assert api.get(f"/jobs/{job_id}", headers=A).json()["status"] in ("queued", "running"), "B's cancel did nothing"
    assert job_id not in [job["id"] for job in api.get("/jobs", headers=B).json()]
    assert job_id in [job["id"] for job in api.get("/jobs", headers=A).json()]


def test_an_admin_key_lists_and_cancels_every_keys_jobs(api):
    of_a, of_b = submit(api, A), submit(api, B, rows=2)
    listed = [job["id"] for job in api.get("/jobs", headers=ADMIN).json()]
    assert of_a in listed and of_b in listed
    assert api.get(f"/jobs/{of_b}", headers=ADMIN).status_code == 200
    cancelled = api.post(f"/jobs/{of_a}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.get(f"/jobs/{of_a}", headers=A).json()["status"] == "cancelled"
    assert [job["id"] for job in api.get("/jobs", headers=A).json()] == [of_a], "an admin's view is not a user's"


def test_a_registered_model_is_its_keys_alone_and_names_are_per_key(api):
    registration = {"name": "mine", "kind": "text", "source": {"import_path": f"{FIXTURES}:keyword_model"}}
    assert api.post("/models", json=registration, headers=A).status_code == 201
    missing = {"error": "no model named 'mine'; POST /models registers one", "detail": "ModelNotFound"}
    for method, path, body in (
        ("GET", "/models/mine", None),
        ("DELETE", "/models/mine", None),
        ("POST", "/models/mine/predict", {"inputs": ["great"]}),
        ("POST", "/methods/predict", {"model": "mine", "rows": ["great"]}),
        ("POST", "/jobs", {"model": "mine", "method": "predict", "rows": ["great"]}),
    ):
        response = api.request(method, path, json=body, headers=B)
        assert (response.status_code, response.json()) == (404, missing), f"{method} {path}"
    assert "mine" not in [m["name"] for m in api.get("/models", headers=B).json()]
    assert not api.get("/jobs", headers=B).json(), "the refused job left no trace"
    assert api.get("/models/mine", headers=A).status_code == 200, "B's delete removed nothing"

    # B's own model of the same name is another model: each key's predictions come from its own
    other = {"name": "mine", "kind": "module", "source": {"import_path": f"{FIXTURES}:animal_words"}}
    assert api.post("/models", json=other, headers=B).status_code == 201
    assert api.get("/models/mine", headers=A).json()["kind"] == "text"
    assert api.get("/models/mine", headers=B).json()["kind"] == "module"
    for headers in (A, B):  # the demos are everyone's
        assert {"reviews", "breast_cancer"} <= {m["name"] for m in api.get("/models", headers=headers).json()}


def test_a_conversation_of_the_same_session_id_is_another_keys_own(api, database):
    body = {"model": "reviews", "session_id": "s1", "message": "What does row 0 say?"}
    for headers in (A, B):
        with api.stream("POST", "/chat/stream", json=body, headers=headers) as stream:
            assert stream.status_code == 200
            list(stream.iter_lines())
    with sqlite3.connect(database) as db:
        sessions = [row[0] for row in db.execute("SELECT DISTINCT session_id FROM chat_messages")]
    assert len(sessions) == 2 and "s1" not in sessions, "one conversation per key, neither under the bare id"
    assert api.get("/chat/models", headers=B).json()["models"] == api.get("/chat/models", headers=A).json()["models"]


def test_jobs_of_a_server_without_keys_are_everyones(tmp_path):
    settings = Settings(llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'open.sqlite'}")
    with TestClient(create_app(settings, llm=LLM(FakeBackend(default="ok")), register_demo_models=True)) as api:
        job_id = submit(api, {}, rows=2)
        deadline = time.monotonic() + 30
        while api.get(f"/jobs/{job_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [job["id"] for job in api.get("/jobs").json()] == [job_id]


def test_a_saved_classifier_is_its_keys_alone_and_names_are_per_key(api, tmp_path):
    training = [{"row": [float(i), float(i % 2)], "label": "odd" if i % 2 else "even"} for i in range(8)]
    fit = {"rows": training, "options": {"name": "parity", "kind": "lml"}}
    assert api.post("/methods/classifier_fit", json=fit, headers=A).status_code == 200
    folder = tmp_path / "classifiers"
    saved = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert saved, "A's classifier is on disk"

    assert api.get("/classifiers", headers=A).json() == ["parity"]
    assert api.get("/classifiers", headers=B).json() == []
    predict = {"rows": [[3.0, 1.0]], "options": {"classifier": "parity"}}
    response = api.post("/methods/classifier_predict", json=predict, headers=B)
    missing = {"error": "no classifier named 'parity'; the classifier_fit method fits one", "detail": "NotFound"}
    assert (response.status_code, response.json()) == (404, missing)
    assert api.post("/methods/classifier_predict", json=predict, headers=A).status_code == 200

    # B's fit of the same name (no `replace`) is B's own classifier: A's files are untouched
    assert api.post("/methods/classifier_fit", json=fit, headers=B).status_code == 200
    assert {p: p.read_bytes() for p in saved} == saved
    assert api.get("/classifiers", headers=B).json() == ["parity"]
    listed = api.get("/classifiers", headers=ADMIN).json()
    assert len(listed) == 2 and all(name.endswith("/parity") for name in listed), "an admin key sees every key's"

    # the operator's classifiers (saved in the directory itself) are shared: each key reads them
    shutil.copytree(next(p.parent for p in saved if p.name == "model.json"), folder / "common")
    for headers in (A, B):
        assert "common" in api.get("/classifiers", headers=headers).json()
        shared = {"rows": [[3.0, 1.0]], "options": {"classifier": "common"}}
        assert api.post("/methods/classifier_predict", json=shared, headers=headers).status_code == 200
