"""Floors point down: the lower packages never import the fronts or the evals (DESIGN.md, section 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "xplain"
LOWER = ("methods", "llm", "blackbox", "data", "prompts", "display")
UPPER = ("evals", "server", "agent", "tools", "batch", "cli", "mcp")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("floor", LOWER)
def test_lower_floor_imports_nothing_above_it(floor):
    offending = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / floor).rglob("*.py"))
        for name in imported_modules(path)
        if any(name == f"xplain.{up}" or name.startswith(f"xplain.{up}.") for up in UPPER)
    ]
    assert not offending, "\n".join(offending)


def test_the_reader_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from xplain.server.app import create_app\n")
    assert "xplain.server.app" in imported_modules(sample)
