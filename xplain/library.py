"""The Python front of the catalog: `xplain.run("posthoc", model, rows, k=3)` beside the method functions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import xplain.display  # noqa: F401  (the results of `run` show themselves in notebooks)
from xplain.blackbox import BlackBox, from_estimator
from xplain.llm import LLM, make_llm
from xplain.methods.catalog import get_method
from xplain.methods.llm_estimator import run_sync
from xplain.service import OpenedModel, method_context, open_spec, run_method
from xplain.settings import get_settings


def as_blackbox(model: Any) -> BlackBox | None:
    """A BlackBox from what a Python user holds: a BlackBox, a fitted scikit-learn estimator, or a spec string
    (`demo:NAME`, a .skops file, `pkg.mod:obj`, a URL)."""
    opened = opened_model(model)
    return None if opened is None else opened.blackbox


def opened_model(model: Any, reference: Any = None) -> OpenedModel | None:
    """The model as the service runs methods on it; a demo spec brings its reference rows, `reference` others."""
    if model is None:
        return None
    if isinstance(model, str | Path):
        opened = open_spec(str(model), get_settings())
    else:
        opened = OpenedModel(model if isinstance(model, BlackBox) else from_estimator(model))
    if reference is not None:
        opened.reference = reference
    return opened


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
    settings = get_settings()
    if classifier_dir is not None:
        settings = settings.model_copy(update={"classifier_dir": Path(classifier_dir)})
    opened = opened_model(model, reference)
    box_llm = opened.blackbox.llm if opened is not None else None
    if llm is None and box_llm is not None and not box_llm.backend.binds_event_loop:
        llm = box_llm  # an LLM classifier on an in-process model explains itself without loading it twice
    context = method_context(chosen, opened, llm=llm, settings=settings)

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
    return results
