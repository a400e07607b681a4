"""The method catalog as MCP tools, generated from its declarations as the REST routes are: one tool per method,
whose arguments are `POST /methods/{name}`'s body with the method's own options schema filled in, answered by the
same `Service.run_method`; plus `list_models`, `register_model` and `list_methods`. A result comes back as
structured content (for a method, the REST response's JSON) and a short text for the assistant to read.

Over streamable HTTP the server keeps the REST API's rules: the API key (XPLAIN_API_KEYS), the body-size limit
(XPLAIN_MAX_BODY_BYTES), and tenants: the tools act as the calling key (its own models and the shared ones, as over
REST). Over stdio it is the user's own process, the operator, and asks for no key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.types import ASGIApp

from xplain import __version__
from xplain.errors import Forbidden, describe, plain_validation_error
from xplain.llm import LLM
from xplain.methods.catalog import Method, catalog
from xplain.server.deps import Service, open_service
from xplain.server.guards import OPERATOR, ApiKeyGuard, BodySizeLimit, Principal
from xplain.server.schemas import (
    MethodInfo,
    MethodRequest,
    ModelInfo,
    ModelRegistration,
    method_request_model,
    method_response_model,
)
from xplain.settings import Settings
from xplain.tools.catalog_tools import brief
from xplain.tools.catalog_tools import to_json as compact

INSTRUCTIONS = (
    "xplain explains black-box models and checks its explanations against them. Call list_models for the models "
    "(kind, classes, features) and list_methods for what each method does; each method is a tool taking "
    "{model, rows, options}."
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelList(BaseModel):
    models: list[ModelInfo]


class MethodList(BaseModel):
    methods: list[MethodInfo]


#: A tool's work for the caller (its API key's principal; the operator over stdio): the structured result (JSON)
#: and its short text.
Answer = Callable[[Service, dict[str, Any], Principal], Awaitable[tuple[dict[str, Any], str]]]


@dataclass(frozen=True)
class XplainTool:
    """An MCP tool: its arguments' model gives the input schema, its output model (if any) the output schema."""

    name: str
    description: str
    arguments: type[BaseModel]
    output: type[BaseModel] | None
    answer: Answer

    def listing(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.arguments.model_json_schema(),
            output_schema=None if self.output is None else self.output.model_json_schema(),
        )


def brief_outcome(outcome: dict[str, Any]) -> dict[str, Any]:
    """A row's outcome for the assistant to read: its result cut down as the agent's tools cut theirs."""
    if "result" in outcome:
        outcome = {**outcome, "result": brief(outcome["result"])}
    return brief(outcome, top=False)


def method_tool(method: Method) -> XplainTool:
    async def answer(svc: Service, arguments: dict[str, Any], who: Principal) -> tuple[dict[str, Any], str]:
        response = await svc.run_method(method, MethodRequest.model_validate(arguments), who.owner)
        ok = sum(outcome.ok for outcome in response.results)
        where = f" on {response.model}" if response.model else ""
        head = f"{method.name}{where}: {ok} of {len(response.results)} result(s) ok."
        return response.model_dump(
            mode="json"
        ), f"{head}\n{compact([brief_outcome(o.model_dump(exclude_none=True)) for o in response.results])}"

    return XplainTool(
        method.name, method.description, method_request_model(method), method_response_model(method), answer
    )


async def list_models(svc: Service, arguments: dict[str, Any], who: Principal) -> tuple[dict[str, Any], str]:
    Strict.model_validate(arguments)
    models = [svc.model_info(key) for key in svc.registry.visible(who.owner)]
    lines = [
        f"{m.name}: {m.kind}, classes {m.classes}" + (f", {len(m.feature_names)} features" if m.feature_names else "")
        for m in models
    ]
    return ModelList(models=models).model_dump(mode="json"), "\n".join(lines) or "no models registered"


async def register_model(svc: Service, arguments: dict[str, Any], who: Principal) -> tuple[dict[str, Any], str]:
    """Registers for the calling key, as POST /models does. A caller without a key on a server with keys (stdio)
    registers nothing: its models would be shared with every key."""
    registration = ModelRegistration.model_validate(arguments)
    if svc.settings.api_keys and not who.owner:
        raise Forbidden(
            "this server has API keys, so models are registered per key: over MCP's HTTP app or POST /models"
        )
    await svc.registry.register(registration, who.owner)
    info = svc.model_info(svc.registry.key_for(registration.name, who.owner))
    return info.model_dump(mode="json"), f"registered {info.name}: {info.kind}, classes {info.classes}"


async def list_methods(svc: Service, arguments: dict[str, Any], who: Principal) -> tuple[dict[str, Any], str]:
    Strict.model_validate(arguments)
    methods = [method.describe() for method in catalog().values()]
    listed = MethodList.model_validate({"methods": methods}).model_dump(mode="json")
    return listed, "\n".join(f"{m['name']}: {m['description']}" for m in methods)


def xplain_tools() -> dict[str, XplainTool]:
    tools = [
        XplainTool(
            "list_models",
            "The models to explain: name, kind, classes and feature names.",
            Strict,
            ModelList,
            list_models,
        ),
        XplainTool(
            "register_model",
            "Register a model to explain, as POST /models does: an LLM classifier (source.llm: a prompt template "
            "with {text} and its labels' words), a file, an import path or a URL the operator allows.",
            ModelRegistration,
            ModelInfo,
            register_model,
        ),
        XplainTool(
            "list_methods",
            "Every method: description, input kinds, whether it uses the LLM, options and result schemas.",
            Strict,
            MethodList,
            list_methods,
        ),
        *(method_tool(method) for method in catalog().values()),
    ]
    return {tool.name: tool for tool in tools}


def caller(ctx: ServerRequestContext[Service]) -> Principal:
    """The API key's principal of the HTTP request that carried this call (the key guard in front of the app put it
    in the request's state); the operator over stdio or on a server without keys."""
    state = getattr(ctx.request, "state", None)
    return getattr(state, "principal", OPERATOR)


def failure(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def build_server(settings: Settings, *, llm: LLM | None = None, register_demo_models: bool = True) -> Server[Service]:
    """The MCP server over `settings`' models (the stored ones, plus the demos unless told otherwise)."""
    tools = xplain_tools()
    listings = {name: tool.listing() for name, tool in tools.items()}

    @asynccontextmanager
    async def lifespan(_: Server[Service]) -> AsyncIterator[Service]:
        async with open_service(settings, llm=llm, register_demo_models=register_demo_models) as svc:
            yield svc

    async def on_list_tools(
        ctx: ServerRequestContext[Service], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(listings.values()))

    async def on_call_tool(
        ctx: ServerRequestContext[Service], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = tools.get(params.name)
        if tool is None:
            return failure(f"unknown tool {params.name!r}; available: {', '.join(tools)}")
        try:
            result, text = await tool.answer(ctx.lifespan_context, dict(params.arguments or {}), caller(ctx))
        except ValidationError as error:
            return failure(f"invalid arguments for {tool.name}: {plain_validation_error(error)}")
        except Exception as error:
            status, message = describe(error)
            if status == 500:  # a bug: the MCP server reports it as such, with its trace in the log
                raise
            return failure(message)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=result)

    return Server(
        "xplain",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        get_tool_input_schema=lambda name: listings[name].input_schema if name in listings else None,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


async def serve_stdio(server: Server[Service]) -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def http_app(server: Server[Service], settings: Settings, *, host: str) -> ASGIApp:
    """The streamable-HTTP app at `/mcp`, behind the REST API's own key check and body-size limit."""
    app = server.streamable_http_app(host=host, max_request_body_size=settings.max_body_bytes)
    guarded = BodySizeLimit(app, max_bytes=settings.max_body_bytes)
    return ApiKeyGuard(guarded, keys=settings.api_keys, admin_keys=settings.admin_api_keys)
