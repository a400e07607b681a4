"""Batch throughput: rows through xplain's batch engine against a server that answers after a fixed delay.

The `zero_shot` method costs one LLM request per label per row (2 here). A local OpenAI-compatible stub, in its own
process, answers each request after DELAY seconds with at most C in flight. The ideal time is
requests / C x DELAY; each line prints ideal / measured (1.0 = the server never waits for the client; target
>= 0.8 for 500 rows). Three ways, in this one process:
  - the batch engine with a JSONL sink (`xplain batch`),
  - a job through the REST API with its SQLite store (`POST /jobs`),
  - one row at a time, each request awaited before the next (what a plain loop over a dataset does).

    python bench/batch_throughput.py [--rows 500] [--concurrency 16] [--delay 0.05] [--loop-rows 100]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from xplain.methods.catalog import MethodContext, get_method
from xplain.methods.predict import ZeroShotOptions
from xplain.batch.runner import run_rows
from xplain.batch.sources import JsonlSink
from xplain.data.demo import demo_blackbox
from xplain.llm import make_llm
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.openai_stub import StubConfig
from xplain.testing.serve import serve_in_thread
from xplain.testing.stub_process import stub_in_another_process

LABELS = {"negative": "bad", "positive": "good"}


def rows(n: int) -> list[str]:
    return [f"review {i}: the plot drags but the actors are wonderful" for i in range(n)]


def settings_for(url: str, concurrency: int, workdir: Path) -> Settings:
    return Settings(
        llm_backend="openai",
        llm_base_url=url,
        llm_max_concurrency=concurrency,
        cache_enabled=False,
        database_url=f"sqlite:///{workdir / 'jobs.sqlite'}",
        job_concurrency=concurrency,
        job_chunk_size=4,
    )


async def engine_run(settings: Settings, n: int, out: Path) -> float:
    llm = make_llm(settings)
    await llm.check()
    sink = JsonlSink(out)
    started = time.perf_counter()
    await run_rows(
        get_method("zero_shot"),
        MethodContext(llm=llm, blackbox=demo_blackbox("reviews")),
        list(enumerate(rows(n))),
        ZeroShotOptions(label_names=LABELS),
        sink=sink,
        concurrency=settings.job_concurrency,
        chunk_size=settings.job_chunk_size,
    )
    elapsed = time.perf_counter() - started
    sink.close()
    assert sum(o.ok for o in sink.outcomes()) == n
    await llm.aclose()
    return elapsed


def rest_job_run(settings: Settings, n: int) -> float:
    with serve_in_thread(create_app(settings, register_demo_models=True)) as url, httpx.Client(base_url=url) as api:
        api.get("/ready").raise_for_status()
        body = {"model": "reviews", "method": "zero_shot", "rows": rows(n), "options": {"label_names": LABELS}}
        started = time.perf_counter()
        job_id = api.post("/jobs", json=body).json()["id"]
        while (job := api.get(f"/jobs/{job_id}").json())["status"] in ("queued", "running"):
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    assert job["status"] == "completed" and job["progress"]["done"] == n, job
    return elapsed


async def loop_run(settings: Settings, n: int) -> float:
    llm = make_llm(settings)
    await llm.check()
    method, context = get_method("zero_shot"), MethodContext(llm=llm, blackbox=demo_blackbox("reviews"))
    started = time.perf_counter()
    for row in rows(n):
        await method.run(context, [row], ZeroShotOptions(label_names=LABELS))
    elapsed = time.perf_counter() - started
    await llm.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--loop-rows", type=int, default=100, help="rows for the one-at-a-time loop (it is slow)")
    args = parser.parse_args()
    requests_per_row = len(LABELS)
    demo_blackbox("reviews")  # train the demo model outside the timings

    def ideal(n: int) -> float:
        return n * requests_per_row / args.concurrency * args.delay

    table = Table("way", "rows", "LLM requests", "ideal s", "measured s", "ideal / measured", "rows / s")
    config = StubConfig(delay_s=args.delay, max_in_flight=args.concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        measured = {}
        with stub_in_another_process(config) as (url, _):
            settings = settings_for(url, args.concurrency, workdir)
            measured["batch engine -> JSONL (xplain batch)"] = (args.rows, asyncio.run(engine_run(settings, args.rows, workdir / "out.jsonl")))
            measured["REST job -> SQLite (POST /jobs)"] = (args.rows, rest_job_run(settings, args.rows))
            # A plain loop awaits each request in turn: one slot of the server in use.
            loop_settings = settings.model_copy(update={"llm_max_concurrency": 1})
            measured["one row at a time"] = (args.loop_rows, asyncio.run(loop_run(loop_settings, args.loop_rows)))
    for way, (n, seconds) in measured.items():
        table.add_row(way, str(n), str(n * requests_per_row), f"{ideal(n):.2f}", f"{seconds:.2f}", f"{ideal(n) / seconds:.2f}", f"{n / seconds:.1f}")
    console = Console(width=140)
    console.print(table)
    console.print(f"server: {args.concurrency} requests in flight at most, {args.delay} s each")
    engine_rate = measured["batch engine -> JSONL (xplain batch)"][0] / measured["batch engine -> JSONL (xplain batch)"][1]
    loop_rate = measured["one row at a time"][0] / measured["one row at a time"][1]
    console.print(f"speed-up of the batch engine over the loop: {engine_rate / loop_rate:.1f}x")


if __name__ == "__main__":
    main()
