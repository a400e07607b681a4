"""The catalog's methods as agent tools, generated from their declarations: the arguments are the method's own
options plus what to work on — the data set row (row methods), the rows (set methods on the chat's model) or the
examples (iPrompt) — and the result comes back as LangChain content and artifact: a short JSON text for the model to
read, the full result (with the row it is about) as the artifact the chat answers from and the page draws.

The classifier methods are no tools: they save and load classifiers by name, which a chat does not manage."""

from __future__ import annotations

from functools import partial
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field, create_model

from xplain.batch.runner import to_json
from xplain.errors import XplainError, describe, plain_validation_error
from xplain.methods.catalog import FRONT_DATA, Method, catalog, run_units
from xplain.service import OpenedModel, method_context
from xplain.settings import get_settings
from xplain.tools.context import ProbeContext
from xplain.tools.registry import ToolFactory, register_tool_source, to_json as compact

BRIEF_ITEMS = 5
BRIEF_CHARS = 200
HIDDEN = {"prompt_versions", "cost", "instance", "rejected", "weights"}
#: Catalog methods whose agent form is a probe that does more (predict also takes values of the user's own).
PROBE_FORMS = {"predict"}
#: Methods that manage saved classifiers, which a chat does not.
NOT_TOOLS = {"classifier_fit", "classifier_predict"}


def brief(value: Any) -> Any:
    """A result cut down for the model to read: rounded numbers, the first few items, short strings."""
    if isinstance(value, dict):
        return {k: brief(v) for k, v in value.items() if k not in HIDDEN and v not in (None, [], {})}
    if isinstance(value, list):
        return [brief(v) for v in value[:BRIEF_ITEMS]]
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, str):
        return value[:BRIEF_CHARS]
    return value


def subject(method: Method) -> tuple[str, Any]:
    """What the agent names to work on: a row id, a list of row ids, or the examples themselves."""
    if not method.needs_model:
        return "inputs", (list[dict[str, str]], Field(min_length=1, max_length=200, description="The examples."))
    if method.unit == "set":
        return "rows", (list[int], Field(min_length=1, max_length=50, description="The data set rows to use."))
    return "row", (int, Field(ge=0, description="The data set row to work on."))


def arguments_model(method: Method) -> type[BaseModel]:
    """The method's options, less the fields the front fills, plus what to work on."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in method.options.model_fields.items()
        if not (info.json_schema_extra or {}).get(FRONT_DATA)
    }
    name, field = subject(method)
    fields[name] = field
    return create_model(f"{method.name.title().replace('_', '')}Arguments", **fields)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def catalog_tool(method: Method, context: ProbeContext) -> BaseTool | None:
    fits = not method.needs_model or context.blackbox.kind in method.model_kinds()
    if method.name in NOT_TOOLS or not fits or (method.uses_llm and context.llm is None):
        return None
    arguments = arguments_model(method)
    key, _ = subject(method)

    async def call(**given: Any) -> tuple[str, dict[str, Any]]:
        try:
            chosen = given.pop(key)
            options = method.parse_options(given)
            if key == "row":
                units = [_plain(context.row(chosen))]
            elif key == "rows":
                units = [[_plain(context.row(i)) for i in chosen]]
            else:
                units = [chosen]
            opened = OpenedModel(context.blackbox, context.rows)
            ctx = method_context(method, opened, llm=context.llm, settings=get_settings())
            [result] = await run_units(method, ctx, units, options)
        except (XplainError, ValueError) as error:
            raise ToolException(describe(error)[1]) from error
        if isinstance(result, Exception):
            raise ToolException(str(result))
        full = to_json(result)
        head = {key: chosen} if key != "inputs" else {}
        return compact({**head, **brief(full)}), {"method": method.name, **full, **head}

    return StructuredTool.from_function(
        coroutine=call,
        name=method.name,
        description=method.description,
        args_schema=arguments,
        response_format="content_and_artifact",
        handle_tool_error=lambda error: compact({"error": str(error)}),
        handle_validation_error=lambda error: compact({"error": f"invalid arguments: {plain_validation_error(error)}"}),
    )


def catalog_tools() -> dict[str, ToolFactory]:
    """A tool factory per catalog method, read from the catalog each time tools are built."""
    return {
        method.name: partial(catalog_tool, method)
        for method in catalog().values()
        if method.name not in PROBE_FORMS
    }


register_tool_source(catalog_tools)

