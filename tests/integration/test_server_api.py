"""Every route through a real uvicorn server on 127.0.0.1 (httpx), on the scripted fake LLM."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import joblib
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

pytestmark = pytest.mark.integration

REVIEWS = ["a warm , funny and moving film", "dull , lifeless and far too long", "the cast is superb"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    models = tmp_path / "models"
    data = tmp_path / "data"
    models.mkdir()
    data.mkdir()
    return Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        trusted_model_dir=models,
        data_dir=data,
        job_chunk_size=2,
        job_concurrency=2,
        max_batch_rows=50,
        max_body_bytes=20_000,
    )


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend(default="ok")


@pytest.fixture
def api(settings, backend):
    with serve_in_thread(create_app(settings, llm=LLM(backend), register_demo_models=True)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


def wait_for_job(api: httpx.Client, job_id: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = api.get(f"/jobs/{job_id}").json()
        if info["status"] in ("completed", "failed", "cancelled"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {info}")


def test_health_and_readiness(api):
    assert api.get("/health").json()["status"] == "ok"
    ready = api.get("/ready").json()
    assert ready["ready"] is True and "fake" in ready["llm"]


def test_readiness_reports_a_down_backend(tmp_path):
    settings = Settings(
        llm_backend="openai",
        llm_base_url="http://127.0.0.1:9/v1",
        llm_max_retries=0,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )
    with serve_in_thread(create_app(settings)) as url:
        response = httpx.get(f"{url}/ready", timeout=30)
    assert response.status_code == 503
    assert response.json()["ready"] is False and "127.0.0.1:9" in response.json()["reason"]


def test_demo_models_are_listed_and_described(api):
    names = [m["name"] for m in api.get("/models").json()]
    assert names == ["breast_cancer", "diabetes", "reviews", "synthetic", "wine"]
    info = api.get("/models/breast_cancer").json()
    assert info["kind"] == "tabular" and info["classes"] == ["benign", "malignant"] and len(info["feature_names"]) == 30


def test_predict_answers_good_rows_and_names_bad_ones(api):
    body = api.post("/models/reviews/predict", json={"inputs": [REVIEWS[0], 42, {"text": REVIEWS[1]}]}).json()
    assert body["errors"][1] and body["predictions"][1] is None
    first, third = body["predictions"][0], body["predictions"][2]
    assert first["label"] == "positive" and third["label"] == "negative"
    assert sum(first["probabilities"].values()) == pytest.approx(1.0)


def test_registering_files_only_from_the_trusted_directory(api, settings, tmp_path):
    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]], [0, 1, 0, 1])
    skops.io.dump(model, settings.trusted_model_dir / "lr.skops")
    joblib.dump(model, settings.trusted_model_dir / "lr.joblib")
    joblib.dump(model, tmp_path / "outside.joblib")

    created = api.post("/models", json={"name": "lr", "source": {"file": "lr.skops"}})
    assert created.status_code == 201 and created.json()["feature_names"] == ["x0", "x1"]
    assert api.post("/models", json={"name": "lr2", "source": {"file": "lr.joblib"}}).status_code == 201
    refused = api.post("/models", json={"name": "evil", "source": {"file": "../outside.joblib"}})
    assert refused.status_code == 403 and "outside the trusted model directory" in refused.json()["error"]
    assert api.get("/models/evil").status_code == 404, "a refused registration leaves nothing behind"
    predicted = api.post("/models/lr/predict", json={"inputs": [[0.0, 1.0], {"x0": 1.0, "x1": 0.0}]}).json()
    assert [p["label"] for p in predicted["predictions"]] == [0, 1]


def test_import_paths_need_an_operator_prefix(api):
    response = api.post("/models", json={"name": "sys", "source": {"import_path": "os:system"}, "kind": "module"})
    assert response.status_code == 403 and "XPLAIN_TRUSTED_IMPORT_PREFIXES" in response.json()["error"]


def test_bad_requests_get_json_errors_that_say_what_to_fix(api):
    both = api.post("/models", json={"name": "x", "source": {"demo": "reviews", "url": "http://a"}})
    assert both.status_code == 422 and "exactly one" in json.dumps(both.json()["detail"])
    assert api.post("/models", json={"name": "bad name!", "source": {"demo": "reviews"}}).status_code == 422
    missing = api.post("/models/nope/predict", json={"inputs": ["x"]})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    too_big = api.post("/models/reviews/predict", content=b'{"inputs": ["' + b"x" * 30_000 + b'"]}')
    assert too_big.status_code == 413 and "XPLAIN_MAX_BODY_BYTES" in too_big.json()["error"]


def test_remove_a_model_but_never_a_demo(api):
    assert api.post("/models", json={"name": "mine", "source": {"demo": "reviews"}}).status_code == 201
    assert api.delete("/models/mine").status_code == 204
    assert api.get("/models/mine").status_code == 404
    refused = api.delete("/models/reviews")
    assert refused.status_code == 403 and "demo" in refused.json()["error"]
    assert api.get("/models/reviews").status_code == 200


def test_a_taken_name_is_a_conflict_unless_replace_is_asked(api):
    assert api.post("/models", json={"name": "mine", "source": {"demo": "reviews"}}).status_code == 201
    taken = api.post("/models", json={"name": "mine", "source": {"demo": "wine"}})
    assert taken.status_code == 409 and '"replace": true' in taken.json()["error"]
    assert api.get("/models/mine").json()["kind"] == "text"
    replaced = api.post("/models", json={"name": "mine", "source": {"demo": "wine"}, "replace": True})
    assert replaced.status_code == 201 and api.get("/models/mine").json()["kind"] == "tabular"
    demo = api.post("/models", json={"name": "reviews", "source": {"demo": "wine"}, "replace": True})
    assert demo.status_code == 403 and api.get("/models/reviews").json()["kind"] == "text"


def test_methods_are_listed_and_each_has_a_route(api, backend):
    methods = {m["name"]: m for m in api.get("/methods").json()}
    assert {"predict", "zero_shot"} <= set(methods)
    assert methods["zero_shot"]["uses_llm"] and not methods["predict"]["uses_llm"]
    body = api.post(
        "/methods/zero_shot",
        json={"model": "reviews", "rows": REVIEWS[:2], "options": {"label_names": {"negative": "bad", "positive": "good"}}},
    ).json()
    assert [r["ok"] for r in body["results"]] == [True, True]
    result = body["results"][0]["result"]
    assert result["blackbox"]["label"] == "positive" and set(result["llm_probabilities"]) == {"negative", "positive"}
    assert result["agrees"] == (result["llm_label"] == "positive")
    assert len(backend.score_batches) == 1 and len(backend.score_batches[0]) == 2, "both rows in one scoring batch"
    assert " good" in backend.score_batches[0][0].continuations
    wrong = api.post("/methods/zero_shot", json={"model": "reviews", "rows": ["x"], "options": {"label_names": 3}})
    assert wrong.status_code == 422


def test_a_job_runs_and_its_results_page_and_download(api):
    rows = [REVIEWS[i % 3] for i in range(7)] + [17]
    submitted = api.post("/jobs", json={"model": "reviews", "method": "predict", "rows": rows})
    assert submitted.status_code == 202
    job = wait_for_job(api, submitted.json()["id"])
    assert job["status"] == "completed" and "1 row(s) failed on their input" in job["error"]
    assert job["progress"]["done"] == 7 and job["progress"]["failed"] == 1 and job["progress"]["total"] == 8

    page = api.get(f"/jobs/{job['id']}/results", params={"offset": 2, "limit": 3}).json()
    assert [r["index"] for r in page["results"]] == [2, 3, 4]
    lines = api.get(f"/jobs/{job['id']}/results.jsonl").text.split("\n")[:-1]
    assert [json.loads(line)["index"] for line in lines] == list(range(8))
    assert json.loads(lines[7])["error"].startswith("bad input")

    import io

    import pandas as pd

    frame = pd.read_parquet(io.BytesIO(api.get(f"/jobs/{job['id']}/results.parquet").content))
    assert list(frame["index"]) == list(range(8)) and frame["ok"].sum() == 7


def test_job_events_stream_progress_until_the_end(api):
    job_id = api.post("/jobs", json={"model": "reviews", "method": "predict", "rows": REVIEWS}).json()["id"]
    with api.stream("GET", f"/jobs/{job_id}/events", params={"interval": 0.05}) as stream:
        events = [line.removeprefix("event: ") for line in stream.iter_lines() if line.startswith("event: ")]
    assert events[-1] == "end"
    assert api.get(f"/jobs/{job_id}").json()["status"] == "completed"


def test_a_job_from_a_file_in_the_data_directory(api, settings):
    (settings.data_dir / "reviews.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in REVIEWS))
    body = {"model": "reviews", "method": "predict", "file": "reviews.jsonl", "column": "text"}
    job = wait_for_job(api, api.post("/jobs", json=body).json()["id"])
    assert job["status"] == "completed" and job["progress"]["done"] == 3
    outside = api.post("/jobs", json=body | {"file": "../db.sqlite"})
    assert outside.status_code == 403


def test_refused_jobs_store_nothing(api):
    assert api.post("/jobs", json={"model": "reviews", "method": "nope", "rows": ["x"]}).status_code == 422
    assert api.post("/jobs", json={"model": "ghost", "method": "predict", "rows": ["x"]}).status_code == 404
    assert api.post("/jobs", json={"model": "reviews", "method": "predict", "rows": ["x"] * 51}).status_code == 422
    assert api.post("/jobs", json={"model": "reviews", "method": "predict"}).status_code == 422
    assert api.get("/jobs").json() == []


def test_cancel_and_resume(settings):
    slow = FakeBackend(default="ok", delay_s=0.2)
    with serve_in_thread(create_app(settings, llm=LLM(slow), register_demo_models=True)) as url:
        api = httpx.Client(base_url=url, timeout=30)
        rows = [f"{REVIEWS[i % 3]} number {i}" for i in range(30)]
        job_id = api.post("/jobs", json={"model": "reviews", "method": "zero_shot", "rows": rows}).json()["id"]
        time.sleep(0.5)
        cancelled = api.post(f"/jobs/{job_id}/cancel").json()
        assert cancelled["status"] == "cancelled"
        done_then = cancelled["progress"]["done"]
        assert 0 < done_then < 30
        time.sleep(0.5)
        assert api.get(f"/jobs/{job_id}").json()["progress"]["done"] == done_then, "nothing runs after cancel"
        api.post(f"/jobs/{job_id}/resume")
        final = wait_for_job(api, job_id)
        assert final["status"] == "completed" and final["progress"]["done"] == 30
        api.close()


def test_api_keys_guard_everything_but_health(settings):
    settings = settings.model_copy(update={"api_keys": ["k1", "k2"]})
    with serve_in_thread(create_app(settings, llm=LLM(FakeBackend(default="ok")))) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        refused = httpx.get(f"{url}/models")
        assert refused.status_code == 401 and "API key" in refused.json()["error"]
        assert httpx.get(f"{url}/models", headers={"Authorization": "Bearer k2"}).status_code == 200
        assert httpx.get(f"{url}/models", headers={"X-API-Key": "k1"}).status_code == 200
        assert httpx.get(f"{url}/models", headers={"X-API-Key": "k3"}).status_code == 401


def test_registered_models_survive_a_restart(settings, backend):
    with serve_in_thread(create_app(settings, llm=LLM(backend))) as url:
        assert httpx.post(f"{url}/models", json={"name": "mine", "source": {"demo": "reviews"}}).status_code == 201
    with serve_in_thread(create_app(settings, llm=LLM(backend))) as url:
        assert httpx.get(f"{url}/models/mine").json()["kind"] == "text"


def test_the_chat_page_questions_the_registered_demo_models(api, backend):
    assert "<html" in api.get("/chat").text.lower()
    assert api.get("/chat/models").json()["models"] == ["breast_cancer", "diabetes", "reviews", "synthetic", "wine"]
    body = {"model": "reviews", "session_id": "s1", "message": "What does the model say about row 0?"}
    with api.stream("POST", "/chat/stream", json=body) as stream:
        events = [line.removeprefix("event: ") for line in stream.iter_lines() if line.startswith("event: ")]
    assert events[-1] == "answer"
    assert any("row 0" in request_text for request_text in map(str, backend.requests))
    assert api.post("/chat/stream", json=body | {"model": "ghost"}).status_code == 404


def test_sasc_and_iprompt_through_the_catalog_routes(settings, backend):
    settings = settings.model_copy(update={"trusted_import_prefixes": ["tests.unit"]})
    backend = FakeBackend(
        rules=[
            (r"common theme", "animals"),
            (r"nothing to do with", "a quiet sunny road\nthe bus was late"),
            (r"clearly about", "the dog and the cat\na horse and a bird"),
        ],
        default="The output is the input.",
    )
    corpus = [f"the {w} walked home" for w in ("dog", "cat", "man", "car", "bird", "road", "fish", "tree", "horse", "sky")]
    app = create_app(settings, llm=LLM(backend), register_demo_models=True)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as api:
        registered = api.post(
            "/models",
            json={"name": "animals", "source": {"import_path": "tests.unit.blackbox_fixtures:animal_words"}, "kind": "module"},
        )
        assert registered.status_code == 201, registered.text
        body = {"model": "animals", "rows": corpus, "options": {"n_candidates": 1, "n_texts": 2, "top_ngrams": 5, "subset_size": 5}}
        [outcome] = api.post("/methods/sasc", json=body).json()["results"]
        result = outcome["result"]
        assert result["top_ngrams"][0]["activation"] >= 1 and result["candidates"]
        best = result["candidates"][0]
        assert best["score"] > 0, "texts about the explanation excite the module more than texts that are not"
        refused = api.post("/methods/sasc", json=body | {"model": "no_such"})
        assert refused.status_code == 404
        wrong_kind = api.post("/methods/sasc", json=body | {"model": "reviews"})
        assert wrong_kind.status_code == 422 and "module" in wrong_kind.json()["error"]
        pairs = [{"input": i, "output": o} for i, o in zip(["1 2", "3 4", "5 6", "7 8", "2 2", "1 1"], ["3", "7", "11", "15", "4", "2"])]
        [found] = api.post("/methods/iprompt", json={"rows": pairs}).json()["results"]
        assert found["ok"] and found["result"]["candidates"]
        [bad] = api.post("/methods/iprompt", json={"rows": pairs[:5] + [{"input": "9"}]}).json()["results"]
        assert not bad["ok"] and '{"input": ..., "output": ...}' in bad["error"]


def test_fit_an_lml_dap_classifier_then_predict_with_reasons(settings, tmp_path):
    settings = settings.model_copy(update={"classifier_dir": tmp_path / "classifiers"})

    def predict_reply(request):
        value = float(request.messages[-1].content.split("new row: a=")[1].split(",")[0])
        return json.dumps({"label": "high" if value > 1.5 else "low", "confidence": 0.9, "reasons": ["a decides"]})

    backend = FakeBackend(
        rules=[
            (r"List up to 3 short patterns", json.dumps({"patterns": ["a is small"]})),
            (r"Give up to 3 conditions", json.dumps({"conditions": [{"feature": "a", "op": ">", "value": 1.5}]})),
            (r"Predict the label", predict_reply),
        ]
    )
    rows = [[0.0, 5.0], [0.2, 4.0], [0.1, 6.0], [3.0, 5.0], [3.2, 4.5], [2.9, 6.0]]
    labels = ["low", "low", "low", "high", "high", "high"]
    with serve_in_thread(create_app(settings, llm=LLM(backend))) as url, httpx.Client(base_url=url, timeout=60) as api:
        training = [{"row": r, "label": y} for r, y in zip(rows, labels)]
        options = {"name": "ab", "kind": "lml", "feature_names": ["a", "b"]}
        [fitted] = api.post("/methods/classifier_fit", json={"rows": training, "options": options}).json()["results"]
        assert fitted["ok"], fitted
        assert fitted["result"]["summaries"]["low"] == ["a is small"]
        assert api.get("/classifiers").json() == ["ab"]
        again = api.post("/methods/classifier_fit", json={"rows": training, "options": options})
        assert again.status_code == 409 and "replace" in again.json()["error"], "a saved classifier is not overwritten"
        answer = api.post("/methods/classifier_predict", json={"rows": [[3.1, 5.0], [0.05, 5.0], ["x"]], "options": {"classifier": "ab"}})
        first, second, bad = answer.json()["results"]
        assert [first["result"]["lml"]["label"], second["result"]["lml"]["label"]] == ["high", "low"]
        assert first["result"]["lml"]["reasons"] == ["a decides"] and first["result"]["lml"]["retrieved_rows"]
        assert not bad["ok"] and "numbers" in bad["error"], "a bad row fails alone"
        missing = api.post("/methods/classifier_predict", json={"rows": [[1.0, 2.0]], "options": {"classifier": "nope"}})
        assert missing.status_code == 404
        escape = api.post("/methods/classifier_fit", json={"rows": training, "options": options | {"name": ".."}})
        assert escape.status_code == 422 and not (tmp_path / "model.json").exists()
        mismatch = api.post("/methods/classifier_fit", json={"rows": training, "options": options | {"name": "x", "kind": "tbm"}})
        assert not mismatch.json()["results"][0]["ok"]
