"""Jobs survive a killed server and a backend that goes away: every row ends exactly once, none finished is redone."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.openai_stub import OpenAIStub, StubConfig
from xplain.testing.serve import free_port, serve_in_thread

pytestmark = pytest.mark.integration


def start_server(tmp_path: Path, port: int) -> subprocess.Popen:
    env = os.environ | {
        "XPLAIN_LLM_BACKEND": "fake",
        "XPLAIN_LLM_FAKE_DELAY_S": "0.3",
        "XPLAIN_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        "XPLAIN_JOB_CHUNK_SIZE": "4",
        "XPLAIN_JOB_CONCURRENCY": "4",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # the server runs this checkout's code
    }
    log = (tmp_path / "server.log").open("a")
    process = subprocess.Popen(
        [sys.executable, "-m", "xplain.cli", "serve", "--port", str(port)], env=env, stdout=log, stderr=log, cwd=tmp_path
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError((tmp_path / "server.log").read_text()[-3000:])


def finished_rows(db: Path, job_id: str) -> dict[int, float]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT row_index, finished_at FROM job_rows WHERE job_id = ? AND status = 'done'", (job_id,)
        ).fetchall()
    return dict(rows)


def test_kill_9_mid_batch_then_restart_resumes_without_redoing_rows(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    rows = [f"review number {i}: a film with moments" for i in range(200)]
    try:
        job_id = httpx.post(f"{url}/jobs", json={"model": "reviews", "method": "zero_shot", "rows": rows}).json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/jobs/{job_id}").json()["progress"]["done"] < 40:
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()

    before = finished_rows(tmp_path / "jobs.sqlite", job_id)
    assert 40 <= len(before) < 200, "the kill must land mid-run"

    server = start_server(tmp_path, port)
    try:
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/jobs/{job_id}").json())["status"] != "completed":
            assert job["status"] == "running" and time.monotonic() < deadline, job
            time.sleep(0.1)
        results = []
        offset = 0
        while page := httpx.get(f"{url}/jobs/{job_id}/results", params={"offset": offset, "limit": 1000}).json()["results"]:
            results += page
            offset += len(page)
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert sorted(r["index"] for r in results) == list(range(200)), "every row exactly once"
    assert all(r["ok"] for r in results)
    after = finished_rows(tmp_path / "jobs.sqlite", job_id)
    assert {i: after[i] for i in before} == before, "rows finished before the kill were not run again"


def test_backend_down_mid_batch_fails_rows_with_a_reason_and_resume_finishes(tmp_path):
    stub_port = free_port()
    config = StubConfig(delay_s=0.05)
    settings = Settings(
        llm_backend="openai",
        llm_base_url=f"http://127.0.0.1:{stub_port}/v1",
        llm_max_retries=1,
        llm_retry_base_delay_s=0.01,
        cache_enabled=False,
        database_url=f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        job_chunk_size=2,
        job_concurrency=2,
    )
    rows = [f"text {i}" for i in range(60)]
    with serve_in_thread(create_app(settings, register_demo_models=True)) as url, httpx.Client(base_url=url) as api:
        with serve_in_thread(OpenAIStub(config).app, port=stub_port):
            job_id = api.post("/jobs", json={"model": "reviews", "method": "zero_shot", "rows": rows}).json()["id"]
            deadline = time.monotonic() + 30
            while api.get(f"/jobs/{job_id}").json()["progress"]["done"] < 10:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        # the LLM server is gone from here on
        deadline = time.monotonic() + 60
        while (job := api.get(f"/jobs/{job_id}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job["status"] == "failed" and "resume" in job["error"]
        done_before = job["progress"]["done"]
        assert 10 <= done_before < 60 and job["progress"]["failed"] == 60 - done_before
        results = api.get(f"/jobs/{job_id}/results", params={"limit": 1000}).json()["results"]
        failed = [r for r in results if not r["ok"]]
        assert failed and all("LLM backend" in r["error"] and "is the server running" in r["error"] for r in failed)
        kept = finished_rows(tmp_path / "jobs.sqlite", job_id)

        with serve_in_thread(OpenAIStub(config).app, port=stub_port):
            api.post(f"/jobs/{job_id}/resume")
            deadline = time.monotonic() + 60
            while (job := api.get(f"/jobs/{job_id}").json())["status"] not in ("completed", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert job["status"] == "completed" and job["progress"]["done"] == 60
        after = finished_rows(tmp_path / "jobs.sqlite", job_id)
        assert {i: after[i] for i in kept} == kept, "finished rows were kept, not redone"
