"""Every row method of the catalog as an agent tool, generated from its declaration: the arguments are the method's
own options plus the data set row to work on, and the result comes back as LangChain content and artifact — a short
JSON text for the model to read, the full result (plot data included) as the artifact the chat page draws."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field, create_model

from xplain.batch.runner import to_json
from xplain.errors import XplainError
from xplain.methods.catalog import Method, MethodContext, catalog, plain_errors, run_units
from xplain.tools.context import ProbeContext
from xplain.tools.registry import register_tool, to_json as compact

#: Option fields a front fills from its own data (the chat's reference rows), never asked of the agent.
FRONT_DATA = "front_data"
BRIEF_ITEMS = 5
BRIEF_CHARS = 200
HIDDEN = {"prompt_versions", "cost", "instance", "rejected", "weights"}
#: Catalog methods whose agent form is a probe that does more (predict also takes values of the user's own).
PROBE_FORMS = {"predict"}


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


def arguments_model(method: Method) -> type[BaseModel]:
    """The method's options, less the fields the front fills, plus the row the agent asks about."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in method.options.model_fields.items()
        if not (info.json_schema_extra or {}).get(FRONT_DATA)
    }
    fields["row"] = (int, Field(ge=0, description="The data set row to work on."))
    return create_model(f"{method.name.title().replace('_', '')}Arguments", **fields)


def catalog_tool(method: Method, context: ProbeContext) -> BaseTool | None:
    applies = method.unit == "row" and method.needs_model and context.blackbox.kind in method.model_kinds()
    if not applies or (method.uses_llm and context.llm is None):
        return None
    arguments = arguments_model(method)

    async def call(**given: Any) -> tuple[str, dict[str, Any]]:
        try:
            row = given.pop("row")
            options = method.parse_options(given)
            unit = context.row(row)
            ctx = MethodContext(llm=context.llm, blackbox=context.blackbox, reference=context.rows)
            [result] = await run_units(method, ctx, [unit.tolist() if hasattr(unit, "tolist") else unit], options)
        except (XplainError, ValueError) as error:
            raise ToolException(str(error)) from error
        if isinstance(result, Exception):
            raise ToolException(str(result))
        full = to_json(result)
        return compact({"row": row, **brief(full)}), {"method": method.name, "row": row, "result": full}

    return StructuredTool.from_function(
        coroutine=call,
        name=method.name,
        description=method.description,
        args_schema=arguments,
        response_format="content_and_artifact",
        handle_tool_error=lambda error: compact({"error": str(error)}),
        handle_validation_error=lambda error: compact({"error": f"invalid arguments: {plain_errors(error)}"}),
    )


for _method in catalog().values():
    if _method.name in PROBE_FORMS:
        continue
    register_tool(_method.name)(lambda context, _m=_method: catalog_tool(_m, context))

