"""Shared plumbing for scikit-learn estimators built on the async LLM: sync entry points over async work, and
the LLM resolved at fit time when none was given."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from xplain.llm import LLM, make_llm

T = TypeVar("T")


def run_sync(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code; inside a running loop, on a worker thread with its own loop
    (so `fit` works from notebooks and async servers without nesting loops)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def resolve_llm(llm: LLM | None) -> LLM:
    """The given LLM, or one built from the settings (`llm=None` means "whatever the service is configured with")."""
    if llm is not None:
        return llm
    from xplain.settings import get_settings

    return make_llm(get_settings())
