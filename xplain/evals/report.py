"""Every eval prints one table and writes JSON (DESIGN.md §6); this is that table, and the suite registry."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from xplain.llm import LLM

Size = Literal["small", "full"]


class EvalTable(BaseModel):
    """One eval's result: named columns, rows of values, and notes on how it was run."""

    suite: str
    columns: list[str]
    rows: list[list[Any]] = Field(default_factory=list)
    notes: dict[str, Any] = Field(default_factory=dict)

    def add(self, **values: Any) -> None:
        unknown = set(values) - set(self.columns)
        if unknown:
            raise ValueError(f"{self.suite}: no column(s) {sorted(unknown)}; columns are {self.columns}")
        self.rows.append([values.get(c) for c in self.columns])

    def as_records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def print(self, console: Console | None = None) -> None:
        table = Table(*self.columns, title=f"xplain eval {self.suite}")
        for row in self.rows:
            table.add_row(*(_cell(v) for v in row))
        (console or Console()).print(table)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


SuiteRunner = Callable[[LLM, Size], Awaitable[EvalTable]]
_SUITES: dict[str, SuiteRunner] = {}


def suite(name: str) -> Callable[[SuiteRunner], SuiteRunner]:
    """Register `async def run(llm, size) -> EvalTable` as `xplain eval NAME`."""

    def register(runner: SuiteRunner) -> SuiteRunner:
        _SUITES[name] = runner
        return runner

    return register


def available_suites() -> dict[str, SuiteRunner]:
    """Every registered suite, after importing each module of `xplain.evals` (which registers them)."""
    package = importlib.import_module("xplain.evals")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"xplain.evals.{module.name}")
    return dict(sorted(_SUITES.items()))
