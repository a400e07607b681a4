"""The OpenAI-compatible stub in a process of its own, so a benchmark measures the client and not a shared GIL."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager

from xplain.testing.openai_stub import StubConfig, run_stub


def _serve_stub(config_json: str, conn) -> None:
    with run_stub(StubConfig.model_validate_json(config_json)) as (url, stub):
        conn.send(url)
        conn.recv()  # until the benchmark is done
        conn.send({"peak_in_flight": stub.max_seen_in_flight, "requests": len(stub.generation_requests)})


@contextmanager
def stub_in_another_process(config: StubConfig) -> Iterator[tuple[str, dict]]:
    """Yields (base URL with /v1, stats); `stats` fills in on exit with the peak in flight and request count."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve_stub, args=(config.model_dump_json(), theirs))
    process.start()
    stats: dict = {}
    try:
        yield ours.recv(), stats
    finally:
        ours.send("stop")
        stats.update(ours.recv())
        process.join(timeout=10)
