"""Sync entry points (scikit-learn's fit / predict, `xplain.run`) share one event loop: an OpenAI-compatible client
works only on the loop it first ran on, so a classifier fitted on one loop and asked to predict on a new one failed
("attached to a different loop") on every vLLM or OpenAI-compatible server."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd

from xplain.llm.loop_thread import run_sync
from xplain.methods.lml_dap import LMLDAPClassifier
from xplain.settings import Settings
from xplain.testing.openai_stub import StubConfig, run_stub


def test_an_estimator_on_an_openai_compatible_server_fits_then_predicts_again_and_again():
    X = pd.DataFrame({"a": np.arange(8.0), "b": np.arange(8.0)[::-1]})
    y = np.array(["low"] * 4 + ["high"] * 4)
    with run_stub(StubConfig()) as (url, stub):
        settings = Settings(llm_backend="openai", llm_base_url=url, llm_model="stub-model", cache_enabled=False)
        classifier = LMLDAPClassifier(llm=settings).fit(X, y)
        first = classifier.predict(X.iloc[:3])
        again = classifier.predict(X.iloc[:3])
        assert list(first) == list(again) and set(first) <= {"low", "high"}
        assert len(stub.requests) >= 2, "both predictions reached the server"


def test_a_sync_call_from_inside_a_running_loop_does_not_nest_it():
    """A notebook cell runs inside a loop; the call goes to the shared loop's thread instead of nesting."""

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def notebook_cell() -> int:
        return run_sync(answer)

    assert asyncio.run(notebook_cell()) == 42
