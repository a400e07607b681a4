"""Synchronous calls are admitted against capacity: `slots` at once, a bounded queue served in order, and a call
that could not finish within the budget is refused at once with a time to retry after."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from xplain.errors import Busy
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.admission import Admission
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread


async def call(admission: Admission, seconds: float, started: list[int], number: int, method: str = "m") -> str:
    try:
        async with admission.admit(method):
            started.append(number)
            await asyncio.sleep(seconds)
        return "done"
    except Busy as error:
        return f"busy {error.retry_after_s}"


async def test_calls_start_in_arrival_order_and_a_full_queue_refuses_at_once():
    admission, started = Admission(slots=1, queue=2, budget_s=60), []
    tasks = []
    for number in range(4):
        tasks.append(asyncio.create_task(call(admission, 0.05, started, number)))
        await asyncio.sleep(0)  # arrive one after another
    results = await asyncio.gather(*tasks)
    assert results[:3] == ["done"] * 3 and results[3].startswith("busy")
    assert started == [0, 1, 2]
    assert admission.running == 0 and not admission.waiting


async def test_a_call_that_could_not_finish_in_the_budget_is_refused_on_arrival():
    admission, started = Admission(slots=1, queue=10, budget_s=0.5), []
    assert await call(admission, 0.2, started, 0) == "done"  # calls now take about 0.2 s
    running = asyncio.create_task(call(admission, 0.2, started, 1))
    await asyncio.sleep(0)
    second = asyncio.create_task(call(admission, 0.2, started, 2))  # starts in ~0.2 s, ends by ~0.4 s: admitted
    await asyncio.sleep(0)
    third = await call(admission, 0.2, started, 3)  # would end at ~0.6 s: over the budget
    assert third.startswith("busy ") and not running.done(), "refused at once, not after waiting for a slot"
    assert await running == "done" and await second == "done"
    assert started == [0, 1, 2]


async def test_a_waiter_that_goes_away_leaves_the_queue_and_the_slot_passes_on():
    admission, started = Admission(slots=1, queue=5, budget_s=60), []
    first = asyncio.create_task(call(admission, 0.05, started, 0))
    await asyncio.sleep(0)
    gone = asyncio.create_task(call(admission, 0.05, started, 1))
    await asyncio.sleep(0)
    last = asyncio.create_task(call(admission, 0.05, started, 2))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == "done" and await last == "done"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert started == [0, 2] and admission.running == 0 and not admission.waiting


def test_the_api_answers_503_with_retry_after_when_at_capacity(tmp_path):
    settings = Settings(
        llm_backend="fake", database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", sync_concurrency=1, sync_queue=0
    )
    app = create_app(settings, llm=LLM(FakeBackend(default="ok", delay_s=2.0)), register_demo_models=True)
    body = {"model": "reviews", "rows": ["a fine film"]}
    with serve_in_thread(app) as url:
        slow = threading.Thread(target=lambda: httpx.post(f"{url}/methods/zero_shot", json=body, timeout=30))
        slow.start()
        time.sleep(0.3)
        refused = httpx.post(f"{url}/methods/zero_shot", json=body, timeout=30)
        answered_at_once = slow.is_alive()  # refused while the call holding the slot still ran, not after it
        slow.join()
        assert refused.status_code == 503 and answered_at_once
        assert int(refused.headers["retry-after"]) >= 1
        assert "the server is busy" in refused.json()["error"] and "POST /jobs" in refused.json()["error"]
        assert httpx.post(f"{url}/methods/zero_shot", json=body, timeout=30).status_code == 200
