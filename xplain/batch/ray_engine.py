"""The same batch over Ray Data, for many machines: each worker builds its own LLM (the OpenAI-compatible backend, or
vLLM on the worker's GPU) and black box once, then runs the row method on the batches Ray hands it. Results stream
back to the driver, which stores them in the same JSONL sink as the local engine, so resuming works the same way.
Optional: `pip install 'xplain[ray]'`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from xplain.methods.catalog import get_method, run_units
from xplain.batch.runner import RowOutcome, outcomes_of
from xplain.service import method_context, open_spec, with_reference
from xplain.settings import Settings


class RayRowWorker:
    """A Ray actor's state: one LLM, one black box, one event loop (LLM clients are bound to the loop they start on)."""

    def __init__(
        self, method: str, model: str, options: dict[str, Any], settings: Settings, reference: str | None = None
    ) -> None:
        from xplain.batch.sources import read_table
        from xplain.llm import make_llm

        self.method = get_method(method)
        self.options = self.method.parse_options(options)
        self.loop = asyncio.new_event_loop()
        opened = open_spec(model, settings) if model else None
        if opened is not None and reference is not None:
            with_reference(opened, read_table(Path(reference)))
        self.context = method_context(self.method, opened, llm=make_llm(settings), settings=settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = [json.loads(text) for text in batch["row"]]
        try:
            results = self.loop.run_until_complete(run_units(self.method, self.context, rows, self.options))
        except Exception as error:  # reported per row, like the local engine does
            results = [error] * len(rows)
        outcomes = outcomes_of([int(i) for i in batch["index"]], results)
        return {"outcome": [o.model_dump_json() for o in outcomes]}


def run_rows_on_ray(
    method: str,
    model: str,
    rows: Sequence[tuple[int, Any]],
    options: BaseModel,
    *,
    settings: Settings,
    record: Callable[[list[RowOutcome]], None],
    workers: int,
    batch_size: int,
    reference: Path | None = None,
) -> None:
    """Map the method over `rows` on the Ray cluster `ray.init()` connects to (a local one if none is running)."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("the ray engine needs Ray: pip install 'xplain[ray]'") from error
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    dataset = ray.data.from_items([{"index": i, "row": json.dumps(row)} for i, row in rows])
    mapped = dataset.map_batches(
        RayRowWorker,
        fn_constructor_kwargs={
            "method": method,
            "model": model,
            "options": options.model_dump(mode="json"),
            "settings": settings,
            "reference": None if reference is None else str(reference),
        },
        batch_size=batch_size,
        concurrency=workers,
        batch_format="numpy",
    )
    for batch in mapped.iter_batches(batch_size=batch_size, batch_format="numpy"):
        record([RowOutcome.model_validate_json(text) for text in batch["outcome"]])
