"""What a client can send never gives a 5xx: bounded query integers, a body that is not JSON, NaN options, a black
box that fails inside itself, invisible texts, names that differ by case; a bug's 500 keeps the connection usable.
Each case asserts the status, the message, and that nothing changed."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

FIXTURES = "tests.unit.blackbox_fixtures"
LINE_BREAKERS = ["a warm\u0085 and funny film", "dull\u2028and lifeless", "superb\u2029cast"]


@pytest.fixture
def settings(tmp_path) -> Settings:
    (tmp_path / "data").mkdir()
    return Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        classifier_dir=tmp_path / "classifiers",
        data_dir=tmp_path / "data",
        trusted_import_prefixes=[FIXTURES],
    )


@pytest.fixture
def api(settings):
    with TestClient(create_app(settings, llm=LLM(FakeBackend(default="ok")), register_demo_models=True)) as client:
        yield client


def wait(api, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while (job := api.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_a_huge_offset_is_a_422_that_names_the_bound(api):
    job = api.post("/jobs", json={"model": "reviews", "method": "predict", "rows": ["fine"]}).json()
    response = api.get(f"/jobs/{job['id']}/results", params={"offset": 10**20})
    assert response.status_code == 422
    problem = {"where": "offset", "problem": "Input should be less than or equal to 2147483647"}
    assert response.json()["detail"] == [problem]
    assert api.get(f"/jobs/{job['id']}/results", params={"offset": 0}).status_code == 200


def test_a_body_that_is_not_json_is_a_415_that_says_what_to_send(api):
    models = api.get("/models").json()
    for media in ("text/plain", "application/x-www-form-urlencoded"):
        response = api.post("/models", content='{"name": "m"}', headers={"Content-Type": media})
        assert response.status_code == 415
        assert response.json()["error"] == "the body must be JSON: send it with Content-Type: application/json"
    assert api.get("/models").json() == models
    assert api.post("/jobs/x/cancel").status_code == 404, "a POST without a body still reaches its route"


def test_nan_and_infinite_options_are_named_as_such(api):
    for value, said in ((float("nan"), "NaN"), (float("-inf"), "-Infinity")):
        body = json.dumps({"model": "breast_cancer", "rows": [[0.0] * 30], "options": {"sigma": value}})
        response = api.post("/methods/posthoc", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422
        [problem] = response.json()["detail"]
        assert problem["problem"].endswith(f"sigma: must be a finite number, not {said}"), problem


def test_a_black_box_that_fails_inside_itself_is_a_502_that_names_it(api):
    registration = {"name": "one-text", "kind": "module", "source": {"import_path": f"{FIXTURES}:one_text_length"}}
    assert api.post("/models", json=registration).status_code == 201
    for path, body in (("/models/one-text/predict", {"inputs": ["a dog", "a cat"]}),
                       ("/methods/predict", {"model": "one-text", "rows": ["a dog", "a cat"]})):  # fmt: skip
        response = api.post(path, json=body)
        assert response.status_code == 502
        assert response.json() == {
            "error": f"the model import:{FIXTURES}:one_text_length raised AttributeError on a batch of 2 input(s): "
            "'list' object has no attribute 'split'",
            "detail": "BlackBoxFailedError",
        }


def test_a_text_of_only_invisible_characters_fails_that_row_alone(api):
    rows = ["\u200b\u200d\u200b", "a fine film"]
    response = api.post("/methods/lime", json={"model": "reviews", "rows": rows, "options": {"n_samples": 20}})
    assert response.status_code == 200
    blank, fine = response.json()["results"]
    assert not blank["ok"] and "not only spaces or invisible characters" in blank["error"]
    assert fine["ok"]


@pytest.mark.parametrize("method", ["lime", "kernelshap"])
def test_a_text_of_only_punctuation_fails_that_row_alone(api, method):
    body = {"model": "reviews", "rows": ["!!!", "a fine film", "... ?!"], "options": {"n_samples": 20}}
    response = api.post(f"/methods/{method}", json=body)
    assert response.status_code == 200
    punctuation, fine, more = response.json()["results"]
    message = f"bad input: {method} weighs a text's words, and this one has none (only punctuation or symbols)"
    assert not punctuation["ok"] and punctuation["error"] == message and more["error"] == message
    alone = api.post(f"/methods/{method}", json={**body, "rows": ["a fine film"]}).json()["results"][0]
    assert fine["ok"] and fine["result"]["weights"] == alone["result"]["weights"], "the other rows are untouched"


def test_model_names_are_unique_regardless_of_case(api):
    registration = {"kind": "text", "source": {"import_path": f"{FIXTURES}:keyword_model"}}
    assert api.post("/models", json={"name": "Keywords", **registration}).status_code == 201
    clash = api.post("/models", json={"name": "KEYWORDS", **registration})
    assert clash.status_code == 409 and clash.json()["error"] == (
        "a model named 'Keywords' is already registered (names ignore case)"
    )
    demo = api.post("/models", json={"name": "REVIEWS", **registration})
    assert demo.status_code == 403 and "'reviews' is the name of a demo model" in demo.json()["error"]
    names = [m["name"] for m in api.get("/models").json()]
    assert "Keywords" in names and "KEYWORDS" not in names and "REVIEWS" not in names


def test_a_job_whose_row_is_bad_completes_and_is_not_told_to_resume(api):
    job = api.post("/jobs", json={"model": "reviews", "method": "predict", "rows": ["a fine film", 17]}).json()
    job = wait(api, job["id"])
    assert job["status"] == "completed" and job["progress"]["failed"] == 1
    assert job["error"] == "1 row(s) failed on their input; each row's error says why"


def test_line_separators_inside_texts_go_through_a_job_and_its_download(api, settings):
    data = settings.data_dir / "odd.jsonl"
    lines = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in LINE_BREAKERS)
    data.write_text(lines, encoding="utf-8")
    body = {"model": "reviews", "method": "lime", "file": "odd.jsonl", "column": "text", "options": {"n_samples": 20}}
    job = wait(api, api.post("/jobs", json=body).json()["id"])
    assert job["status"] == "completed" and job["progress"]["done"] == 3
    download = api.get(f"/jobs/{job['id']}/results.jsonl").text
    lines = download.split("\n")
    assert lines[-1] == "" and [json.loads(line)["index"] for line in lines[:-1]] == [0, 1, 2]
    assert len(download.splitlines()) == 3, "JSON escapes the separators in the download: any reader splits right"


def test_a_500_keeps_the_keep_alive_connection_usable(settings):
    app = create_app(settings, llm=LLM(FakeBackend(default="ok")))

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        crashed = client.get("/crash")
        assert crashed.status_code == 500
        assert crashed.json() == {"error": "internal error (RuntimeError); the log has the details", "detail": "RuntimeError"}
        assert client.get("/health").status_code == 200, "the same connection answers the next request"
        assert crashed.headers.get("connection") != "close"
