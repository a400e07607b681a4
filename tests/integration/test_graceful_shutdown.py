"""SIGTERM while a job runs and a client holds an event stream open: the server exits at once, the job stays
'running' in the store, and the next start finishes it with every row stored exactly once."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.integration.test_job_durability import finished_rows, start_server
from xplain.testing.serve import free_port

pytestmark = pytest.mark.integration


def test_sigterm_drains_quickly_and_the_job_resumes_with_each_row_once(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rows = [f"review number {i}: a film with moments" for i in range(600)]
    server = start_server(tmp_path, port)
    try:
        job_id = httpx.post(f"{url}/jobs", json={"model": "reviews", "method": "zero_shot", "rows": rows}).json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/jobs/{job_id}").json()["progress"]["done"] < 40:
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.05)

        def watch_events() -> None:  # an open stream the shutdown must not wait on for long
            try:
                with httpx.stream("GET", f"{url}/jobs/{job_id}/events", timeout=30) as stream:
                    for _ in stream.iter_lines():
                        pass
            except httpx.HTTPError:
                pass

        threading.Thread(target=watch_events, daemon=True).start()
        time.sleep(0.3)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if server.poll() is None:
            server.kill()
    # the open event stream ends at its next tick: the shutdown does not wait out the 3 s grace time for it
    assert took < 2.5, f"SIGTERM took {took:.1f} s"
    assert "Traceback" not in (tmp_path / "server.log").read_text(), "a clean stop logs no traceback"
    before = finished_rows(tmp_path / "jobs.sqlite", job_id)
    assert 40 <= len(before) < 600, "the signal must land mid-run"

    server = start_server(tmp_path, port)
    try:
        assert httpx.get(f"{url}/jobs/{job_id}").json()["status"] == "running"  # resumed, not failed or lost
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{url}/jobs/{job_id}").json())["status"] != "completed":
            assert job["status"] == "running" and time.monotonic() < deadline, job
            time.sleep(0.1)
        results = httpx.get(f"{url}/jobs/{job_id}/results", params={"limit": 1000}).json()["results"]
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert sorted(r["index"] for r in results) == list(range(600)), "every row exactly once"
    after = finished_rows(tmp_path / "jobs.sqlite", job_id)
    assert {i: after[i] for i in before} == before, "rows finished before the signal were not run again"
    print(f"SIGTERM to exit: {took:.2f} s; rows stored before it: {len(before)}")
