"""The Python front of the catalog: `xplain.run("posthoc", model, rows, k=3)` beside the method functions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

import xplain.display  # noqa: F401  (the results of `run` show themselves in notebooks)
from xplain.blackbox import BlackBox, from_estimator
from xplain.llm import LLM, make_llm
from xplain.methods.catalog import get_method
from xplain.llm.loop_thread import run_sync
from xplain.service import OpenedModel, method_context, open_spec, run_method, with_reference
from xplain.settings import get_settings
from xplain.validation import rows_of


def as_blackbox(model: Any) -> BlackBox | None:
    """A BlackBox from what a Python user holds: a BlackBox, a fitted scikit-learn estimator, or a spec string
    (`demo:NAME`, a .skops file, `pkg.mod:obj`, a URL)."""
    opened = opened_model(model)
    return None if opened is None else opened.blackbox


def opened_model(model: Any, reference: Any = None, columns: dict[str, Any] | None = None) -> OpenedModel | None:
    """The model as the service runs methods on it; a demo spec brings its reference rows, `reference` others
    (from which a table learns its columns' kinds, categories and ranges; `columns` overrides them)."""
    if model is None:
        return None
    if isinstance(model, str | Path):
        opened = open_spec(str(model), get_settings())
    else:
        opened = OpenedModel(model if isinstance(model, BlackBox) else from_estimator(model))
    return with_reference(opened, reference, columns)


class Results(list):
    """What `xplain.run` returns: one result per input, in order (a set method: its one result), and
    `to_frame()`: every result's frame stacked under the input's own index (a DataFrame's index, else 0..n-1)."""

    def __init__(self, results: Sequence[Any], index: Any = None) -> None:
        super().__init__(results)
        self.index = index

    def to_frame(self) -> pd.DataFrame:
        keys = list(self.index) if self.index is not None and len(self.index) == len(self) else list(range(len(self)))
        frames = [pd.DataFrame([{"error": str(r)}]) if isinstance(r, Exception) else _numbered(r.to_frame()) for r in self]
        name = getattr(self.index, "name", None) or "input"
        return pd.concat(frames, keys=keys, names=[name, "item"])


def _numbered(frame: pd.DataFrame) -> pd.DataFrame:
    """A result's frame numbered 0..n-1, its own index (e.g. the features) kept as a column."""
    return frame.reset_index(drop=isinstance(frame.index, pd.RangeIndex))


def run(
    method: str,
    model: Any = None,
    inputs: Sequence[Any] = (),
    *,
    llm: LLM | None = None,
    reference: Any = None,
    columns: dict[str, Any] | None = None,
    classifier_dir: str | Path | None = None,
    errors: Literal["raise", "keep"] = "raise",
    **options: Any,
) -> Results:
    """Run catalog method `method` on `inputs` against `model`; one result per input row (a set method such as
    `iprompt` or `sasc`: a list with its one result). Rows may be a DataFrame, records, a 2-D array or lists.
    `reference` gives rows like the training data (a DataFrame or the like; a demo spec brings its own), from
    which a tabular model also learns its columns' kinds, categories and ranges; `columns` overrides those.
    With `errors="keep"`, a row that failed holds its exception in place instead of raising."""
    chosen = get_method(method)
    parsed = chosen.parse_options(options)
    settings = get_settings()
    if classifier_dir is not None:
        settings = settings.model_copy(update={"classifier_dir": Path(classifier_dir)})
    opened = opened_model(model, reference, columns)
    box_llm = opened.blackbox.llm if opened is not None else None
    if llm is None and box_llm is not None and not box_llm.backend.binds_event_loop:
        llm = box_llm  # an LLM classifier on an in-process model explains itself without loading it twice
    context = method_context(chosen, opened, llm=llm, settings=settings)
    index = inputs.index if isinstance(inputs, pd.DataFrame) and chosen.unit == "row" else None
    inputs = rows_of(inputs)

    async def work() -> list[Any]:
        client = context.llm = llm or make_llm(settings)
        try:
            return await run_method(chosen, context, list(inputs), parsed)
        finally:
            if llm is None:
                await client.aclose()

    results = run_sync(work)
    failed = next((r for r in results if isinstance(r, Exception)), None)
    if errors == "raise" and failed is not None:
        raise failed
    return Results(results, index)
