"""A LangChain chat model over `xplain.llm.LLM.chat`, so the agent runs on every backend the LLM layer has.

Backends with native tool calling receive the tools as they are; the others pick tools through constrained JSON
inside `LLM.chat`. Tool results reach the model fenced as data (DESIGN.md rule 3).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from xplain.llm import LLM, Message, ToolCall, ToolSpec
from xplain.prompts.data import fence


class XplainChatModel(BaseChatModel):
    """`BaseChatModel` whose every turn is one `LLM.chat` call; `bind_tools` attaches tool specs to it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: LLM
    max_tokens: int | None = None

    @property
    def _llm_type(self) -> str:
        return "xplain"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"llm": self.llm.name, "max_tokens": self.max_tokens}

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Attach tools (LangChain tools, functions or OpenAI-style dicts); `tool_choice` is left to the model."""
        specs = [tool_spec(convert_to_openai_tool(tool)["function"]) for tool in tools]
        return self.bind(tools=[spec.model_dump() for spec in specs], **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = [ToolSpec(**spec) for spec in kwargs.get("tools") or []]
        params: dict[str, Any] = {"stop": stop or []}
        if tools and isinstance(messages[-1], HumanMessage):
            # A turn opens with a tool call: the answer must rest on what the model and data say, not on a guess.
            params["tool_choice"] = "required"
        if self.max_tokens:
            params["max_tokens"] = self.max_tokens
        completion = await self.llm.chat([to_xplain_message(m) for m in messages], tools=tools or None, **params)
        reply = AIMessage(
            content=completion.text,
            tool_calls=[
                {"name": call.name, "args": call.arguments, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}
                for call in completion.tool_calls
            ],
            usage_metadata={
                "input_tokens": completion.usage.prompt_tokens,
                "output_tokens": completion.usage.completion_tokens,
                "total_tokens": completion.usage.prompt_tokens + completion.usage.completion_tokens,
            },
            response_metadata={"finish_reason": completion.finish_reason, "model_name": self.llm.name},
        )
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Synchronous callers (outside an event loop) get the async path run to completion."""
        return asyncio.run(self._agenerate(messages, stop=stop, **kwargs))


def tool_spec(function: dict[str, Any]) -> ToolSpec:
    """An OpenAI function description as our `ToolSpec`, its schema made self-contained and short: `$ref`s inlined
    (the JSON fallback nests schemas, where `#/$defs` would not resolve) and titles dropped (tokens the model
    does not need)."""
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return ToolSpec(
        name=function["name"],
        description=function.get("description", ""),
        parameters=_compact_schema(parameters, parameters.get("$defs", {})),
    )


def _compact_schema(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_compact_schema(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in definitions:
            raise ValueError(f"tool schema refers to {node['$ref']!r}, which it does not define")
        return _compact_schema(definitions[name], definitions)
    return {
        key: _compact_schema(value, definitions)
        for key, value in node.items()
        if key != "$defs" and not (key == "title" and isinstance(value, str))
    }


def to_xplain_message(message: BaseMessage) -> Message:
    """A LangChain message as ours; tool results are fenced so that instructions inside them read as data."""
    text = str(message.text)
    if isinstance(message, SystemMessage):
        return Message(role="system", content=text)
    if isinstance(message, HumanMessage):
        return Message(role="user", content=text)
    if isinstance(message, AIMessage):
        calls = [ToolCall(id=c["id"] or "", name=c["name"], arguments=c["args"]) for c in message.tool_calls]
        return Message(role="assistant", content=text, tool_calls=calls)
    if isinstance(message, ToolMessage):
        return Message(role="tool", content=fence(text), tool_call_id=message.tool_call_id, name=message.name)
    raise ValueError(f"cannot send a {type(message).__name__} to the model")
