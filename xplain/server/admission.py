"""Admission of synchronous method calls against the capacity of the backend.

Calls run at most `slots` at a time; the others wait in a bounded first-come-first-served queue. A call that
cannot start in time to finish within the synchronous budget is told so at once (503 with Retry-After), instead of
running beside all the others until every one of them hits the budget with nothing to show: side by side, N calls
on one CPU each take about N times as long.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from xplain.errors import Busy

#: Weight of the newest call in the running mean of call durations.
SMOOTHING = 0.3


@dataclass(eq=False)
class Waiter:
    method: str
    start_by: float  # the latest start (monotonic) from which the call can still finish within the budget
    turn: asyncio.Future[None]


class Admission:
    """`slots` calls at once, `queue` more waiting in order. A call must be able to start in time to finish within
    `budget_s`, judged by how long calls of its method have been taking (a running mean): one that cannot is refused
    on arrival, or as soon as the queue ahead of it turns out slower than hoped."""

    def __init__(self, slots: int, queue: int, budget_s: float) -> None:
        self.slots = slots
        self.queue = queue
        self.budget_s = budget_s
        self.running = 0
        self.waiting: deque[Waiter] = deque()
        self.seconds: dict[str, float] = {}  # running mean of a call's duration, per method

    def expected_s(self, method: str) -> float:
        """A call's expected duration: its method's mean, else the slowest mean seen (0 before any call ended)."""
        return self.seconds.get(method, max(self.seconds.values(), default=0.0))

    def start_estimate_s(self, ahead: int) -> float:
        """Seconds until a call with `ahead` calls waiting before it starts, `slots` calls at a time."""
        if self.running + ahead < self.slots:
            return 0.0
        mean = max(self.seconds.values(), default=0.0)
        return (self.running + ahead - self.slots + 1) / self.slots * mean

    @asynccontextmanager
    async def admit(self, method: str) -> AsyncIterator[None]:
        """Hold a slot for one call of `method`; Busy if it cannot start in time, or if the queue is full."""
        if self.running < self.slots and not self.waiting:
            self.running += 1
        else:
            await self._wait_turn(method)
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            before = self.seconds.get(method)
            self.seconds[method] = took if before is None else (1 - SMOOTHING) * before + SMOOTHING * took
            self._release()

    async def _wait_turn(self, method: str) -> None:
        start_by = time.monotonic() + self.budget_s - self.expected_s(method)
        estimate = self.start_estimate_s(len(self.waiting))
        if len(self.waiting) >= self.queue or time.monotonic() + estimate > start_by:
            raise self._busy(estimate)
        waiter = Waiter(method, start_by, asyncio.get_running_loop().create_future())
        self.waiting.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.turn), timeout=max(start_by - time.monotonic(), 0.0))
        except BaseException as error:  # refused, timed out, or the client went away
            if waiter in self.waiting:
                self.waiting.remove(waiter)
            elif waiter.turn.done() and waiter.turn.exception() is None:
                self._release()  # the slot reached this call as it gave up: pass it on
            if isinstance(error, TimeoutError):
                raise self._busy(self.start_estimate_s(len(self.waiting))) from None
            raise

    def _release(self) -> None:
        """Hand the slot to the first waiter (`running` stays as it is), or free it; then refuse at once the waiters
        that, by the durations now known, can no longer start in time."""
        if self.waiting:
            self.waiting.popleft().turn.set_result(None)
        else:
            self.running -= 1
        now, mean = time.monotonic(), max(self.seconds.values(), default=0.0)
        for position, waiter in enumerate(list(self.waiting), start=1):
            if now + position / self.slots * mean > waiter.start_by:
                self.waiting.remove(waiter)
                waiter.turn.set_exception(self._busy(len(self.waiting) / self.slots * mean))

    def _busy(self, wait_s: float) -> Busy:
        return Busy(
            f"the server is busy: {self.running} synchronous call(s) running and {len(self.waiting)} waiting, so this "
            f"one could not finish within {self.budget_s:g} s (XPLAIN_SYNC_TIMEOUT_S); send it again after "
            "Retry-After seconds, or submit it as a job with POST /jobs, which waits its turn without a time limit",
            retry_after_s=max(wait_s, 1.0),
        )
