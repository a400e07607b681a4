"""Overload: N concurrent synchronous `POST /methods/posthoc` calls (one row each) against a backend of fixed
throughput, without admission control (every call runs at once, as before) and with it; beside them, the same rows
as one job. Prints, for each way, how many calls finished, were refused at once with 503 + Retry-After, or ran out of
the synchronous budget (422), and the rows/s of the finished ones as a ratio of the job's (target >= 0.8).

The backend plays the embedded model on a CPU: each LLM request is WORK seconds of computation, and the CPU is
shared evenly by the requests in flight (so ten at once each take ten times as long, as llama.cpp's workers do on a
few cores). The budget is small so that the calls' total work is over it, as 40 posthoc calls on the embedded
model are over 120 s. `--embedded` runs the same three ways on the embedded model itself (SmolLM2 through llama.cpp,
the server's defaults otherwise; give it a budget in the tens of seconds).

Measured with `--embedded --calls 40 --budget 120` on 2 quiet cores (SmolLM2, demo reviews, k=2): every call at
once, 12 finished and 28 got 422 after 120 s (0.100 rows/s, 0.52 of the job's rate); with admission (2 at once,
queue 8), the 10 admitted finished in 26.2 s and 30 got 503 with Retry-After: 1 at once (0.382 rows/s, 1.98 of the
job's); one job of the 40 rows took 207 s (0.193 rows/s: its 8 chunks run side by side on the same two cores).

    PYTHONPATH=. python bench/sync_overload.py [--calls 40] [--work 0.08] [--budget 3] [--slots 2] [--queue 8]
    PYTHONPATH=. python bench/sync_overload.py --embedded --calls 20 --budget 60
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from xplain.data.demo import demo_blackbox
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend, plumbing_reply
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

TICK_S = 0.005


@dataclass
class SharedCpuBackend(FakeBackend):
    """The fake's replies, each request after `work_s` seconds of a CPU that the requests in flight share evenly."""

    work_s: float = 0.08

    def __post_init__(self) -> None:
        super().__post_init__()
        self.in_flight = 0

    async def _compute(self, requests: int) -> None:
        self.in_flight += requests
        try:
            remaining = self.work_s * requests
            while remaining > 0:
                await asyncio.sleep(TICK_S)
                remaining -= TICK_S * requests / self.in_flight
        finally:
            self.in_flight -= requests

    async def generate(self, requests):
        await self._compute(len(requests))
        return await super().generate(requests)

    async def score(self, requests):
        await self._compute(len(requests))
        return await super().score(requests)


OPTIONS = {"k": 2}


def texts(n: int) -> list[str]:
    return [f"review {i}: the plot drags but the actors are wonderful" for i in range(n)]


def settings_for(workdir: Path, args: argparse.Namespace, *, slots: int, queue: int) -> Settings:
    return Settings(
        llm_backend="llamacpp" if args.embedded else "fake",
        cache_enabled=False,
        database_url=f"sqlite:///{workdir / f'db-{slots}.sqlite'}",
        sync_timeout_s=args.budget,
        sync_concurrency=slots,
        sync_queue=queue,
    )


def app_for(settings: Settings, work_s: float):
    if settings.llm_backend != "fake":
        return create_app(settings, register_demo_models=True)
    backend = SharedCpuBackend(default=plumbing_reply, work_s=work_s)
    return create_app(settings, llm=LLM(backend), register_demo_models=True)


async def burst(url: str, n: int) -> tuple[Counter, float, list[str]]:
    """N calls at once; (statuses, seconds until the last answer, Retry-After values)."""
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=n)) as client:
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(
                client.post("/methods/posthoc", json={"model": "reviews", "rows": [text], "options": OPTIONS})
                for text in texts(n)
            )
        )
        elapsed = time.perf_counter() - started
    statuses = Counter(
        "ok" if a.status_code == 200 and a.json()["results"][0]["ok"] else str(a.status_code) for a in answers
    )
    return statuses, elapsed, [a.headers["retry-after"] for a in answers if "retry-after" in a.headers]


def sync_way(settings: Settings, n: int, work_s: float) -> tuple[Counter, float, list[str]]:
    with serve_in_thread(app_for(settings, work_s)) as url:
        return asyncio.run(burst(url, n))


def job_way(settings: Settings, n: int, work_s: float) -> float:
    with serve_in_thread(app_for(settings, work_s)) as url, httpx.Client(base_url=url) as api:
        body = {"model": "reviews", "method": "posthoc", "rows": texts(n), "options": OPTIONS}
        started = time.perf_counter()
        job_id = api.post("/jobs", json=body).json()["id"]
        while (job := api.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    assert job["progress"]["done"] == n, job
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--work", type=float, default=0.08, help="CPU seconds of one LLM request")
    parser.add_argument("--budget", type=float, default=3.0, help="XPLAIN_SYNC_TIMEOUT_S")
    parser.add_argument("--slots", type=int, default=2, help="XPLAIN_SYNC_CONCURRENCY with admission")
    parser.add_argument("--queue", type=int, default=8, help="XPLAIN_SYNC_QUEUE with admission")
    parser.add_argument("--embedded", action="store_true", help="the embedded model instead of the shared-CPU fake")
    args = parser.parse_args()
    demo_blackbox("reviews")  # train the demo model outside the timings
    table = Table("way", "finished", "503 + Retry-After", "422 over budget", "other", "seconds", "rows / s", "/ job")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        open_door = settings_for(workdir, args, slots=10_000, queue=10_000)
        job_s = job_way(open_door, args.calls, args.work)
        job_rate = args.calls / job_s
        ways = {
            "every call at once (no admission)": open_door,
            f"admission: {args.slots} at once, queue {args.queue}": settings_for(
                workdir, args, slots=args.slots, queue=args.queue
            ),
        }
        for way, settings in ways.items():
            statuses, seconds, retry_after = sync_way(settings, args.calls, args.work)
            finished = statuses.pop("ok", 0)
            busy, late = statuses.pop("503", 0), statuses.pop("422", 0)
            rate = finished / seconds
            table.add_row(
                way, str(finished), f"{busy} (after {', '.join(sorted(set(retry_after), key=int)) or '-'} s)",
                str(late), str(dict(statuses)) if statuses else "0", f"{seconds:.1f}", f"{rate:.3f}",
                f"{rate / job_rate:.2f}",
            )  # fmt: skip
        job_row = (f"one job of {args.calls} rows", str(args.calls), "-", "-", "0", f"{job_s:.1f}", f"{job_rate:.3f}")
        table.add_row(*job_row, "1.00")
    console = Console(width=160)
    console.print(table)
    console.print(
        ("backend: the embedded model; " if args.embedded else
         f"backend: {args.work} CPU s per LLM request, shared by the requests in flight; ")
        + f"budget {args.budget:g} s; "
        f"{args.calls} concurrent calls of one row"
    )


if __name__ == "__main__":
    main()
