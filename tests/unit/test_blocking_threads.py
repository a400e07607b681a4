"""A job whose rows block their threads (a model waiting on a slow LLM) must not hold up a request on another
model: the server's pool of blocking threads is sized for waiting, not for cores."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from tests.unit import blackbox_fixtures
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings

FIXTURES = "tests.unit.blackbox_fixtures"


def test_a_predict_answers_while_a_jobs_rows_hold_more_threads_than_the_cores_allow(tmp_path):
    settings = Settings(
        llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", trusted_import_prefixes=[FIXTURES],
        job_chunk_size=1, job_concurrency=40,
    )  # fmt: skip
    blackbox_fixtures.gate.set()  # open while the models register (registration asks the model once)
    try:
        with TestClient(create_app(settings, llm=LLM(FakeBackend()))) as api:
            for name, function in [("slow", "gated_classifier"), ("fast", "row_sum_classifier")]:
                body = {"name": name, "kind": "tabular", "feature_names": ["a", "b"],
                        "source": {"import_path": f"{FIXTURES}:{function}"}}  # fmt: skip
                assert api.post("/models", json=body).status_code == 201
            blackbox_fixtures.gate.clear()
            # 40 rows, each its own chunk blocking a thread: more than Python's default pool holds on any machine
            rows = [[float(i), 0.0] for i in range(40)]
            job = api.post("/jobs", json={"model": "slow", "method": "predict", "rows": rows}).json()
            time.sleep(0.5)
            answered: list[int] = []
            ask = threading.Thread(target=lambda: answered.append(
                api.post("/models/fast/predict", json={"inputs": [[1.0, 1.0]]}).status_code))  # fmt: skip
            ask.start()
            ask.join(timeout=10)
            done_before_release = list(answered)
            blackbox_fixtures.gate.set()
            ask.join()
            assert done_before_release == [200], "the predict waited for the job's blocked threads"
            deadline = time.monotonic() + 30
            while api.get(f"/jobs/{job['id']}").json()["status"] != "completed" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert api.get(f"/jobs/{job['id']}").json()["progress"]["done"] == 40
    finally:
        blackbox_fixtures.gate.set()
