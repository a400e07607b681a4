"""The one service behind every front: it opens the model a spec names (under the configured query budget, with
its reference rows), builds what a catalog method runs against, and runs the method.

REST routes and jobs, `xplain batch` (local and Ray), `xplain run`, `xplain.run`, the MCP server and the agent's
tools call `method_context` and `run_method`; none of them builds a `MethodContext` or parses options itself, so a
model, a limit or a setting reaches every front at once. Errors leave each front through `xplain.errors.describe`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from xplain.blackbox import BlackBox
from xplain.data.demo import open_model, reference_for_spec
from xplain.llm import LLM
from xplain.methods.catalog import Method, MethodContext, run_units, units_for
from xplain.settings import Settings


@dataclass
class OpenedModel:
    """A black box and the rows like its training data that come with it (a demo's held-out rows), if any, with
    their true labels where known (a demo's, a registered reference file's label column)."""

    blackbox: BlackBox
    reference: Any = None
    labels: Any = None


def open_spec(spec: str, settings: Settings, *, kind: str | None = None, llm: LLM | None = None) -> OpenedModel:
    """The model a spec names: `demo:NAME`, a .skops file, `pkg.mod:obj`, a URL or `llm:FILE` (pickles only from the
    trusted directory; an LLM classifier on `llm` when given), counting its queries against
    `XPLAIN_BLACKBOX_QUERY_BUDGET`."""
    blackbox = open_model(
        spec,
        trusted_dir=settings.trusted_model_dir,
        kind=kind,
        query_budget=settings.blackbox_query_budget,
        llm=llm,
        settings=settings,
    )
    reference = reference_for_spec(spec)
    return OpenedModel(blackbox, *((reference.rows, reference.labels) if reference is not None else ()))


def with_reference(opened: OpenedModel, reference: Any = None, columns: dict[str, Any] | None = None) -> OpenedModel:
    """The model with `reference` rows like its training data (a DataFrame, records or lists; a demo keeps its own
    otherwise), from which a table learns its columns' kinds, categories and ranges, `columns` overriding them. A
    text model's rows are texts: from a DataFrame, its `text` column (or its only column)."""
    if opened.blackbox.kind == "text" and isinstance(reference, pd.DataFrame):
        reference = reference_texts(reference)
    if reference is not None:
        opened.reference, opened.labels = reference, None  # a demo's labels belong to its own rows
    if opened.blackbox.kind == "tabular" and (reference is not None or columns):
        opened.blackbox.infer_schema(reference, columns)
    return opened


def reference_texts(table: pd.DataFrame) -> list[str]:
    """A text model's reference rows from a table: the `text` column, or the only column there is."""
    if "text" in table.columns:
        return table["text"].astype(str).tolist()
    if len(table.columns) == 1:
        return table.iloc[:, 0].astype(str).tolist()
    raise ValueError(
        f"a text model's reference file needs a column named 'text' (or a single column); it has "
        f"{', '.join(map(str, table.columns[:10]))}"
    )


def method_context(
    method: Method,
    model: OpenedModel | None,
    *,
    llm: LLM | None,
    settings: Settings,
    progress: Callable[[float, str], None] | None = None,
    owner: str = "",
) -> MethodContext:
    """What `method` runs against: the model (refused here, before any work, if the method cannot use it; left
    out for a method that brings its own), its reference rows and their labels, `owner`'s classifier directory and the LLM."""
    used = model if method.needs_model else None
    method.check_model(used.blackbox if used is not None else None)
    return MethodContext(
        llm=llm,
        blackbox=used.blackbox if used is not None else None,
        reference=used.reference if used is not None else None,
        reference_labels=used.labels if used is not None else None,
        classifier_dir=classifier_dir_of(settings, owner),
        shared_classifier_dir=settings.classifier_dir if owner else None,
        progress=progress,
    )


#: The folder under the classifier directory that holds each API key's own classifiers; a classifier name cannot
#: start with a dot, so it never meets one of the operator's (shared) classifiers.
KEYS_FOLDER = ".keys"


def classifier_dir_of(settings: Settings, owner: str) -> Path:
    """Where `owner`'s classifiers are saved: the classifier directory itself for the operator (owner ""), a
    folder of its own for each API key."""
    return settings.classifier_dir / KEYS_FOLDER / owner if owner else settings.classifier_dir


async def run_method(
    method: Method, context: MethodContext, items: Sequence[Any], options: BaseModel | dict[str, Any] | None
) -> list[Any]:
    """`method` over the items a front received (rows, or a set method's one input list): one result or exception
    per unit of work, in order. Options are parsed here (unknown keys refused in words)."""
    return await run_units(method, context, units_for(method, items), method.parse_options(options))
