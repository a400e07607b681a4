"""Sync code calling the async LLM: an event loop on a thread of its own, started on first use, that every such
call runs on. One persistent loop, not `asyncio.run` per call, because an OpenAI-compatible client (and any asyncio
lock or queue a backend holds) works only on the loop it first ran on: a classifier fitted with one loop and asked
to predict on a new one failed with "attached to a different loop"."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class EventLoopThread:
    """An event loop on a daemon thread of its own, started on first use. `run` hands it a coroutine from any
    thread (one with a running loop too) and waits for the answer; the coroutine runs in a fresh context."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, make_coroutine: Callable[[], Awaitable[T]]) -> T:
        loop = self._started()
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{self.name}: a call from its own loop would wait on itself")
        answer: Future = Future()

        def settle(task: asyncio.Task) -> None:
            if task.cancelled():
                answer.cancel()
            elif task.exception() is not None:
                answer.set_exception(task.exception())
            else:
                answer.set_result(task.result())

        def start() -> None:
            loop.create_task(make_coroutine()).add_done_callback(settle)

        loop.call_soon_threadsafe(start, context=contextvars.Context())
        return answer.result()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def stop(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


_sync_calls = EventLoopThread("xplain-sync")


def run_sync(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code (scikit-learn's `fit` / `predict`, `xplain.run`), from plain
    code, a notebook or a thread of an async server alike: always on the one shared loop, so an LLM those calls
    share keeps its loop from call to call."""
    return _sync_calls.run(make_coroutine)
