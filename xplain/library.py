"""The Python front of the catalog: `xplain.run("posthoc", model, rows, k=3)` beside the method functions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from xplain.blackbox import BlackBox, from_estimator
from xplain.data.demo import open_model, reference_for_spec
from xplain.llm import LLM, make_llm
from xplain.methods.catalog import MethodContext, get_method, run_units, units_for
from xplain.methods.llm_estimator import run_sync
from xplain.settings import get_settings
from xplain.validation import rows_of


def as_blackbox(model: Any, reference: Any = None, columns: dict[str, Any] | None = None) -> BlackBox | None:
    """A BlackBox from what a Python user holds: a BlackBox, a fitted scikit-learn estimator, or a spec string
    (`demo:NAME`, a .skops file, `pkg.mod:obj`, a URL). A tabular model learns its columns from itself and the
    `reference` rows, `columns` overriding them (column -> fields of `xplain.blackbox.Column`)."""
    if model is None:
        return None
    if isinstance(model, BlackBox):
        blackbox = model
    elif isinstance(model, str | Path):
        blackbox = open_model(str(model), trusted_dir=get_settings().trusted_model_dir)
    else:
        return from_estimator(model, reference=reference, columns=columns)
    if blackbox.kind == "tabular" and (reference is not None or columns):
        blackbox.infer_schema(reference, columns)
    return blackbox


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
    if reference is None and isinstance(model, str):
        reference = reference_for_spec(model)
    blackbox = as_blackbox(model, reference, columns)
    chosen.check_model(blackbox if chosen.needs_model else None)
    index = inputs.index if isinstance(inputs, pd.DataFrame) and chosen.unit == "row" else None
    inputs = rows_of(inputs)
    directory = Path(classifier_dir) if classifier_dir is not None else get_settings().classifier_dir

    async def work() -> list[Any]:
        client = llm or make_llm(get_settings())
        try:
            context = MethodContext(llm=client, blackbox=blackbox, reference=reference, classifier_dir=directory)
            return await run_units(chosen, context, units_for(chosen, list(inputs)), parsed)
        finally:
            if llm is None:
                await client.aclose()

    results = run_sync(work)
    failed = next((r for r in results if isinstance(r, Exception)), None)
    if errors == "raise" and failed is not None:
        raise failed
    return Results(results, index)
