"""The Python front of the catalog: `xplain.run("posthoc", model, rows, k=3)` beside the method functions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from xplain.blackbox import BlackBox, from_estimator
from xplain.data.demo import open_model, reference_for_spec
from xplain.llm import LLM, make_llm
from xplain.methods.catalog import MethodContext, get_method, run_units, units_for
from xplain.methods.llm_estimator import run_sync
from xplain.settings import get_settings


def as_blackbox(model: Any) -> BlackBox | None:
    """A BlackBox from what a Python user holds: a BlackBox, a fitted scikit-learn estimator, or a spec string
    (`demo:NAME`, a .skops file, `pkg.mod:obj`, a URL)."""
    if model is None or isinstance(model, BlackBox):
        return model
    if isinstance(model, str | Path):
        return open_model(str(model), trusted_dir=get_settings().trusted_model_dir)
    return from_estimator(model)


def run(
    method: str,
    model: Any = None,
    inputs: Sequence[Any] = (),
    *,
    llm: LLM | None = None,
    reference: Any = None,
    classifier_dir: str | Path | None = None,
    errors: Literal["raise", "keep"] = "raise",
    **options: Any,
) -> list[Any]:
    """Run catalog method `method` on `inputs` against `model`; one result per input row (a set method such as
    `iprompt` or `sasc`: a list with its one result). `reference` gives rows like the training data (a demo spec
    brings its own). With `errors="keep"`, a row that failed holds its exception in place instead of raising."""
    chosen = get_method(method)
    parsed = chosen.parse_options(options)
    blackbox = as_blackbox(model)
    chosen.check_model(blackbox if chosen.needs_model else None)
    if reference is None and isinstance(model, str):
        reference = reference_for_spec(model)
    directory = Path(classifier_dir) if classifier_dir is not None else get_settings().classifier_dir
    if llm is None and blackbox is not None and blackbox.llm is not None and not blackbox.llm.backend.binds_event_loop:
        llm = blackbox.llm  # an LLM classifier on an in-process model explains itself without loading it twice

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
    return results
