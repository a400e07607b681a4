"""Floors point down (DESIGN.md, section 2): every package of xplain has a floor and imports only the floors below
it, and no modules import each other in a circle. Imports inside functions count (they run too); imports under
`if TYPE_CHECKING:` count as well, since they are still a dependency of the code that names them."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "xplain"

#: Lowest first. A floor may import its own package and the floors below it, never beside or above it.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "settings"),
    ("prompts",),
    ("llm",),
    ("blackbox",),  # a black box may be an LLM behind a prompt (blackbox/llm_classifier.py)
    ("validation", "data"),
    ("methods",),
    ("display",),  # draws results; the results never import it
    ("service",),  # builds a method's context and runs it, for every front
    ("batch",),
    ("tools",),
    ("agent",),
    ("evals", "server"),
    ("mcp", "library"),
    ("cli",),
    ("testing",),  # stand-in servers for tests and benchmarks: nothing of xplain imports them
)
FLOOR_OF = {part: level for level, parts in enumerate(FLOORS) for part in parts}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str] | None = None) -> set[str]:
    """The absolute module names `path` imports; `from a.b import c` names `a.b.c` where that is a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & (modules or set())
            names.update(submodules if len(submodules) == len(node.names) else {node.module, *submodules})
    return names


def module_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at `root` -> the modules of that package it imports (the package itself, every
    module's parent, left out: Python runs it first whatever a module imports)."""
    paths = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    modules = set(paths)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in paths.items():
        found = {owner(imported) for imported in imported_modules(path, modules)}
        graph[name] = found - {None, name, root.name}
    return graph


def floor_part(module: str) -> str:
    """`xplain.methods.posthoc` -> `methods`, `xplain.settings` -> `settings`."""
    return module.split(".")[1]


GRAPH = module_graph(PACKAGE)


def test_every_package_and_module_has_a_floor():
    parts = {floor_part(name) for name in GRAPH if name != PACKAGE.name}
    assert parts - FLOOR_OF.keys() == set(), "give each new package or top-level module its floor in FLOORS"


@pytest.mark.parametrize("part", sorted(FLOOR_OF))
def test_a_floor_imports_only_the_floors_below_it(part):
    offending = [
        f"{module} imports {imported}"
        for module, imports in sorted(GRAPH.items())
        if module != PACKAGE.name and floor_part(module) == part
        for imported in sorted(imports)
        if floor_part(imported) != part and FLOOR_OF[floor_part(imported)] >= FLOOR_OF[part]
    ]
    assert not offending, "\n".join(offending)


def test_the_package_itself_imports_nothing_when_imported():
    """`import xplain` stays light: its `run` loads the Python front on first use (PEP 562)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    named = [alias.name for node in top_level for alias in node.names] + [
        node.module for node in top_level if isinstance(node, ast.ImportFrom) and node.module
    ]
    assert not [name for name in named if name.startswith("xplain")]


def test_no_modules_import_each_other_in_a_circle():
    try:
        tuple(TopologicalSorter(GRAPH).static_order())
    except CycleError as error:
        pytest.fail(f"an import circle: {' -> '.join(error.args[1])}")


def test_the_reader_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from xplain.server.app import create_app\n")
    assert "xplain.server.app" in imported_modules(sample)


def test_the_graph_finds_a_circle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "results").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "results" / "__init__.py").write_text("def show(self):\n    from pkg.drawing import card\n")
    (package / "drawing.py").write_text("from pkg.results import show\n")
    graph = module_graph(package)
    assert graph == {"pkg": set(), "pkg.results": {"pkg.drawing"}, "pkg.drawing": {"pkg.results"}}
    with pytest.raises(CycleError):
        tuple(TopologicalSorter(graph).static_order())
