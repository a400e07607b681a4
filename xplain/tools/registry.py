"""The tool registry: every module in `xplain/tools/` registers factories that turn a `ProbeContext` into LangChain
tools, so a method becomes available to the agent by adding one module, without touching the agent.

A factory returns None when its tool does not apply to the context (e.g. a text-only method on a table).
"""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
import re
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, ValidationError

from xplain.blackbox import BlackBoxError
from xplain.errors import plain_validation_error
from xplain.tools.context import ProbeContext

ToolFactory = Callable[[ProbeContext], BaseTool | None]

_factories: dict[str, ToolFactory] = {}
#: Families of tools read when tools are built, not when a module is imported (the catalog's methods, so that a
#: method joining the catalog later is a tool too).
_sources: list[Callable[[], dict[str, ToolFactory]]] = []
_discovered = False


def register_tool(name: str) -> Callable[[ToolFactory], ToolFactory]:
    """Decorator: `@register_tool("predict")` on a `ProbeContext -> BaseTool | None` factory."""

    def add(factory: ToolFactory) -> ToolFactory:
        if name in _factories and _factories[name] is not factory:
            raise ValueError(f"a tool named {name!r} is already registered")
        _factories[name] = factory
        return factory

    return add


def register_tool_source(source: Callable[[], dict[str, ToolFactory]]) -> None:
    """A family of tools named when tools are built: `source()` gives each tool's name and factory."""
    _sources.append(source)


def _all_factories() -> dict[str, ToolFactory]:
    _discover()
    found: dict[str, ToolFactory] = {}
    for source in _sources:
        found.update(source())
    clash = sorted(found.keys() & _factories.keys())
    if clash:
        raise ValueError(f"tool name(s) {', '.join(clash)} registered twice")
    return {**found, **_factories}


def registered_tool_names() -> list[str]:
    return sorted(_all_factories())


def build_tools(context: ProbeContext, names: list[str] | None = None) -> list[BaseTool]:
    """The tools that apply to `context` (all registered ones, or those named), in registration order."""
    factories = _all_factories()
    unknown = sorted(set(names or ()) - set(factories))
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(unknown)}; registered: {', '.join(sorted(factories))}")
    chosen = [n for n in factories if names is None or n in names]
    return [tool for tool in (factories[n](context) for n in chosen) if tool is not None]


def _discover() -> None:
    """Import every module of this package once, so their `@register_tool` factories run."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("xplain.tools")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"xplain.tools.{module.name}")
    _discovered = True


def to_json(payload: Any) -> str:
    """Compact JSON for the model to read: no spaces, floats already rounded by the tool; NaN and infinities, which
    JSON has no words for, as null (as pydantic writes them)."""
    return json.dumps(_finite(payload), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def rounded(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def make_tool(
    name: str,
    description: str,
    args_schema: type[BaseModel],
    run: Callable[[Any], Awaitable[dict[str, Any]]],
) -> StructuredTool:
    """A LangChain tool whose body takes the validated arguments model and returns a dict sent as compact JSON.

    A bad argument (ValueError) or a black-box failure comes back to the model as `{"error": ...}` so it can
    correct itself, instead of ending the conversation.
    """

    async def call(**arguments: Any) -> str:
        try:
            return to_json(await run(args_schema(**arguments)))
        except (ValueError, BlackBoxError) as error:
            raise ToolException(plain_error(error)) from error

    return StructuredTool.from_function(
        coroutine=call,
        name=name,
        description=description,
        args_schema=args_schema,
        handle_tool_error=lambda error: to_json({"error": str(error)}),
        handle_validation_error=lambda error: to_json({"error": f"invalid arguments: {plain_error(error)}"}),
    )


def plain_error(error: BaseException) -> str:
    """An error as one plain sentence for a person or a model to read: pydantic's field errors as `field: message`,
    without its type codes and documentation URLs."""
    if isinstance(error, ValidationError):
        return plain_validation_error(error, most=5)
    return PYDANTIC_URL.sub("", str(error)).strip()


PYDANTIC_URL = re.compile(r"\s*For further information visit https://errors\.pydantic\.dev\S*")
