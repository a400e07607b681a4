"""The catalog's methods as agent tools, generated from their declarations: the arguments are the method's own
options plus what to work on — a data set row or a text (row methods), the rows (set methods that take some), or
the examples (iPrompt); a set method that questions the whole data takes none — and the result comes back as
LangChain content and artifact: a short JSON text for the model to read, the full result (with the row or text it
is about) as the artifact the chat answers from and the page draws.

The classifier methods are no tools: they save and load classifiers by name, which a chat does not manage."""

from __future__ import annotations

import json
import math
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field, create_model, model_validator

from xplain.batch.runner import to_json as result_json
from xplain.errors import XplainError, describe, plain_validation_error
from xplain.methods.catalog import FRONT_DATA, Method, catalog, run_units
from xplain.service import OpenedModel, method_context
from xplain.settings import get_settings
from xplain.tools.context import ProbeContext

BRIEF_ITEMS = 5
BRIEF_CHARS = 200
MAX_TEXT = 2000
HIDDEN = {"prompt_versions", "cost", "instance", "rejected", "weights"}
#: Methods that manage saved classifiers, which a chat does not.
NOT_TOOLS = {"classifier_fit", "classifier_predict"}


def brief(value: Any, top: bool = True) -> Any:
    """A result cut down for the model to read: rounded numbers, the first few items, short strings; the result's
    own bulky fields (`HIDDEN`) left out at its top level only (a class may be called "rejected")."""
    if isinstance(value, dict):
        hidden = HIDDEN if top else set()
        return {k: brief(v, False) for k, v in value.items() if k not in hidden and v not in (None, [], {})}
    if isinstance(value, list):
        return [brief(v, False) for v in value[:BRIEF_ITEMS]]
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, str):
        return value[:BRIEF_CHARS]
    return value


class TextOrRow(BaseModel):
    """A row method's subject on a text model: a row of the data, or a text of the user's own."""

    row: int | None = Field(None, ge=0, description="Row number in the data set (0-based); or give `text`.")
    text: str | None = Field(None, max_length=MAX_TEXT, description="A text to ask about; or give `row`.")

    @model_validator(mode="after")
    def _one_input(self) -> TextOrRow:
        if (self.row is None) == (self.text is None):
            raise ValueError("give exactly one of `row` (a row number) or `text`")
        return self


def subject(method: Method, kind: str) -> dict[str, Any]:
    """What the agent names to work on: a row id (or a text, on a text model), a list of row ids, the examples
    themselves, or nothing (a set method that questions the whole data)."""
    if not method.needs_model:
        return {"inputs": (list[dict[str, str]], Field(min_length=1, max_length=200, description="The examples."))}
    if method.unit == "set":
        if method.min_inputs == 0:
            return {}
        return {"rows": (list[int], Field(min_length=1, max_length=50, description="The data set rows to use."))}
    if kind == "text":
        return {name: (info.annotation, info) for name, info in TextOrRow.model_fields.items()}
    return {"row": (int, Field(ge=0, description="The data set row to work on."))}


def arguments_model(method: Method, kind: str) -> type[BaseModel]:
    """The method's options, less the fields the front fills, plus what to work on."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in method.options.model_fields.items()
        if not (info.json_schema_extra or {}).get(FRONT_DATA)
    }
    fields.update(subject(method, kind))
    base = TextOrRow if "text" in fields else None
    name = f"{method.name.title().replace('_', '')}{kind.title()}Arguments"
    return create_model(name, __base__=base, **fields) if base else create_model(name, **fields)


def catalog_tool(method: Method, context: ProbeContext) -> BaseTool | None:
    fits = not method.needs_model or context.blackbox.kind in method.model_kinds()
    if method.name in NOT_TOOLS or not fits or (method.uses_llm and context.llm is None):
        return None
    arguments = arguments_model(method, context.kind)
    keys = set(subject(method, context.kind))

    async def call(**given: Any) -> tuple[str, dict[str, Any]]:
        try:
            chosen = {key: given.pop(key) for key in keys if given.get(key) is not None}
            for key in keys:
                given.pop(key, None)
            options = method.parse_options(given)
            if "text" in chosen:
                units = [chosen["text"]]
            elif "row" in chosen:
                units = [context.as_input(chosen["row"])]
            elif "rows" in chosen:
                units = [[context.as_input(i) for i in chosen["rows"]]]
            elif "inputs" in chosen:
                units = [chosen["inputs"]]
            else:
                units = [[]]
            opened = OpenedModel(context.blackbox, context.rows, context.labels)
            ctx = method_context(method, opened, llm=context.llm, settings=get_settings())
            [result] = await run_units(method, ctx, units, options)
        except (XplainError, ValueError) as error:
            raise ToolException(describe(error)[1]) from error
        if isinstance(result, Exception):
            raise ToolException(str(result))
        full = result_json(result)
        head = {key: chosen[key] for key in ("row", "text") if key in chosen}
        return to_json({**head, **brief(full)}), {"method": method.name, **full, **head}

    return StructuredTool.from_function(
        coroutine=call,
        name=method.name,
        description=method.description,
        args_schema=arguments,
        response_format="content_and_artifact",
        handle_tool_error=lambda error: to_json({"error": str(error)}),
        handle_validation_error=lambda error: to_json({"error": f"invalid arguments: {plain_validation_error(error)}"}),
    )


def build_tools(context: ProbeContext, names: list[str] | None = None) -> list[BaseTool]:
    """The catalog's methods that apply to `context` (all of them, or those named) as tools, in catalog order; read
    from the catalog each time, so a method that joins it later is a tool too."""
    methods = catalog()
    unknown = sorted(set(names or ()) - set(methods))
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(unknown)}; the catalog has: {', '.join(methods)}")
    chosen = [m for name, m in methods.items() if names is None or name in names]
    return [tool for tool in (catalog_tool(m, context) for m in chosen) if tool is not None]


def tool_names() -> list[str]:
    """The methods that can be tools (on some model)."""
    return [name for name in catalog() if name not in NOT_TOOLS]


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
