"""The agent: LangChain's `create_agent` loop over the tools, with a step limit, per-session memory and grounding.

Each turn streams events (tool call, tool result, answer) as they happen; the answer lists the tool calls of the
turn and flags every number in it that no tool returned (nor the user wrote) in that turn.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any, Literal

from langchain.agents import create_agent
from langchain.agents.middleware import ModelCallLimitMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from xplain.agent.answers import answer_for, render_failure, templates_ref, tool_payload
from xplain.agent.chat_model import XplainChatModel
from xplain.agent.grounding import source_numbers, ungrounded_numbers
from xplain.agent.store import ConversationStore, check_session_id
from xplain.llm import LLM, Usage, track_usage
from xplain.prompts import load_prompt
from xplain.tools import ProbeContext, build_tools

SYSTEM_PROMPT = "agent/system"
MAX_FEATURES_IN_PROMPT = 40
MAX_QUESTION_CHARS = 4000


Stop = Literal["answered", "step_limit", "repeated_call"]
"""Why a turn ended: the model answered; it used up `max_steps`; it asked for a call it had already made."""


class ToolCallRecord(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any]
    output: str = Field(description="The tool's JSON output, as the model read it.")
    error: str | None = Field(None, description="Why the call failed, in plain words; None when it succeeded.")

    @property
    def ok(self) -> bool:
        return self.error is None


class AgentAnswer(BaseModel):
    """One turn's answer, the tool calls it rests on, and the numbers in it that no tool backed."""

    session_id: str
    question: str
    text: str
    tool_calls: list[ToolCallRecord]
    ungrounded_numbers: list[str]
    stopped: Stop
    model_calls: int
    usage: Usage
    prompt_versions: list[str]
    mode: Literal["agent", "planner"] = "agent"
    plan: dict[str, Any] | None = Field(None, description="The planner's operation and arguments, and who chose them.")
    seconds: float = 0.0

    @property
    def sources(self) -> list[ToolCallRecord]:
        """The calls the answer rests on: those that succeeded (a failed call is no source)."""
        return [c for c in self.tool_calls if c.ok]

    def with_sources(self) -> str:
        """The answer followed by the tool calls behind it, the failed ones, and unbacked numbers (plain text)."""
        lines = [self.text]
        if self.sources:
            calls = ", ".join(f"{c.name}({_arguments_text(c.arguments)})" for c in self.sources)
            lines.append(f"Based on: {calls}")
        else:
            lines.append("Based on: no tool result")
        for failed in (c for c in self.tool_calls if not c.ok):
            lines.append(f"Failed: {failed.name}: {failed.error}")
        if self.ungrounded_numbers:
            lines.append(f"Not backed by any tool result: {', '.join(self.ungrounded_numbers)}")
        return "\n".join(lines)


class ToolCallEvent(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any]


class ToolResultEvent(BaseModel):
    type: Literal["tool_result"] = "tool_result"
    id: str
    name: str
    output: str
    result: dict[str, Any] | None = Field(None, description="The full result (the tool's artifact), when it succeeded.")
    error: str | None = Field(None, description="Why the call failed, in plain words.")


class AnswerDeltaEvent(BaseModel):
    """A piece of the answer as it is written (chunks of the finished answer where the backend does not stream)."""

    type: Literal["answer_delta"] = "answer_delta"
    text: str


class AnswerEvent(BaseModel):
    type: Literal["answer"] = "answer"
    answer: AgentAnswer


AgentEvent = Annotated[
    ToolCallEvent | ToolResultEvent | AnswerDeltaEvent | AnswerEvent, Field(discriminator="type")
]


def answer_chunks(text: str, words: int = 3) -> list[str]:
    """The answer in chunks of a few words (spacing kept), so a page can show it as it 'arrives'."""
    pieces = re.findall(r"\S+\s*", text)
    return ["".join(pieces[i : i + words]) for i in range(0, len(pieces), words)] or [text]


class ExplainerAgent:
    """Questions one black box through tools. `model` is an `LLM` (wrapped in `XplainChatModel`) or any LangChain
    chat model with `bind_tools`; `max_steps` caps model calls per turn; `history_messages` caps the memory sent."""

    def __init__(
        self,
        model: LLM | BaseChatModel,
        context: ProbeContext,
        *,
        store: ConversationStore | None = None,
        tools: list[BaseTool] | None = None,
        max_steps: int = 6,
        history_messages: int = 12,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if isinstance(model, LLM) and context.llm is None:
            context.llm = model  # method tools ask the same LLM the agent runs on
        self.context = context
        self.store = store
        self.max_steps = max_steps
        self.history_messages = history_messages
        self.tools = tools if tools is not None else build_tools(context)
        self.prompt = load_prompt(SYSTEM_PROMPT)
        chat_model = XplainChatModel(llm=model) if isinstance(model, LLM) else model
        self.graph = create_agent(
            chat_model,
            self.tools,
            system_prompt=self._system_prompt(),
            middleware=[ModelCallLimitMiddleware(run_limit=max_steps, exit_behavior="end")],
        )

    def _system_prompt(self) -> str:
        context = self.context
        features = ""
        if context.kind == "tabular":
            names = context.feature_names
            shown = ", ".join(names[:MAX_FEATURES_IN_PROMPT]) + (" ..." if len(names) > MAX_FEATURES_IN_PROMPT else "")
            features = f" Features: {shown}."
        return self.prompt.render(
            kind=context.kind,
            model=context.blackbox.name,
            description=context.description,
            classes=", ".join(context.class_names) or "unknown",
            rows=len(context.rows),
            features=features,
        )

    async def ask(self, session_id: str, question: str) -> AgentAnswer:
        """Run one turn and return its answer."""
        async for event in self.stream(session_id, question):
            if isinstance(event, AnswerEvent):
                return event.answer
        raise RuntimeError("the agent ended a turn without an answer")

    async def stream(
        self, session_id: str, question: str
    ) -> AsyncIterator[ToolCallEvent | ToolResultEvent | AnswerDeltaEvent | AnswerEvent]:
        """Run one turn, yielding each tool call and result as it happens, then the answer (in chunks, then whole)."""
        started = time.perf_counter()
        question = check_question(session_id, question)
        history = self._recent(self.store.load(session_id)) if self.store else []
        produced: list[BaseMessage] = [HumanMessage(question)]
        calls: list[ToolCallRecord] = []
        results: dict[str, dict[str, Any] | None] = {}
        pending: dict[str, ToolCallRecord] = {}  # by id, until the result arrives (ids may repeat across steps)
        model_calls = 0
        stopped: Stop = "answered"
        with track_usage() as meter:
            state = {"messages": [*history, produced[0]]}
            config = {"recursion_limit": 4 * self.max_steps + 10}
            updates = self.graph.astream(state, config=config, stream_mode="updates")
            async with aclosing(updates), aclosing(_messages(updates)) as messages:
                async for node, message in messages:
                    if "ModelCallLimit" in node:
                        stopped = "step_limit"
                        continue
                    if isinstance(message, AIMessage):
                        model_calls += 1
                        if _repeats(message, calls):
                            stopped = "repeated_call"
                            break
                        produced.append(message)
                        for call in message.tool_calls:
                            record = ToolCallRecord(id=call["id"], name=call["name"], arguments=call["args"], output="")
                            calls.append(record)
                            pending[call["id"]] = record
                            yield ToolCallEvent(id=call["id"], name=call["name"], arguments=call["args"])
                    elif isinstance(message, ToolMessage):
                        produced.append(message)
                        output = str(message.text)
                        result, error = tool_payload(message)
                        if message.tool_call_id in pending:
                            record = pending.pop(message.tool_call_id)
                            record.output, record.error = output, error
                            results[record.id] = result
                        yield ToolResultEvent(
                            id=message.tool_call_id, name=message.name or "", output=output, result=result, error=error
                        )
        last = produced[-1]
        if stopped == "answered" and (not isinstance(last, AIMessage) or last.tool_calls):
            stopped = "step_limit"  # the graph ended on a tool round (recursion guard) rather than on an answer
        answer = self._answer(session_id, question, produced, calls, results, model_calls, stopped, meter.usage)
        if stopped != "answered" or answer.text != str(produced[-1].text).strip():
            produced.append(AIMessage(answer.text))
        if self.store is not None:
            self.store.append(session_id, produced)
        for chunk in answer_chunks(answer.text):
            yield AnswerDeltaEvent(text=chunk)
        answer.seconds = round(time.perf_counter() - started, 3)
        yield AnswerEvent(answer=answer)

    def _answer(
        self,
        session_id: str,
        question: str,
        produced: list[BaseMessage],
        calls: list[ToolCallRecord],
        results: dict[str, dict[str, Any] | None],
        model_calls: int,
        stopped: Stop,
        usage: Usage,
    ) -> AgentAnswer:
        text = str(produced[-1].text).strip() if stopped == "answered" else ""
        if not text:
            text = floor_answer(calls, results)
        sources = source_numbers([question, *(c.arguments for c in calls), *(c.output for c in calls)])
        return AgentAnswer(
            session_id=session_id,
            question=question,
            text=text,
            tool_calls=calls,
            ungrounded_numbers=ungrounded_numbers(text, sources),
            stopped=stopped,
            model_calls=model_calls,
            usage=usage,
            prompt_versions=[self.prompt.ref, templates_ref()],
        )

    def _recent(self, history: list[BaseMessage]) -> list[BaseMessage]:
        """The last messages of the session, starting at a user turn so no tool result is cut from its call."""
        recent = history[-self.history_messages :] if self.history_messages else []
        while recent and not isinstance(recent[0], HumanMessage):
            recent.pop(0)
        return recent


def check_question(session_id: str, question: str) -> str:
    check_session_id(session_id)
    question = question.strip()
    if not question:
        raise ValueError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"the question has {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
    return question


def floor_answer(calls: list[ToolCallRecord], results: dict[str, dict[str, Any] | None]) -> str:
    """When the model stops without an answer: the declared answer of the last tool call that succeeded, else the
    last failure in plain words — never a tool's raw JSON."""
    for call in reversed(calls):
        result = results.get(call.id)
        if call.ok and result is not None:
            return answer_for(call.name, result)
    failed = next((c for c in reversed(calls) if not c.ok), None)
    if failed is not None:
        return render_failure(failed.name, failed.error or "it failed")
    return "I could not find an answer: no tool gave a result for this question. Try naming a row, e.g. 'row 3'."


async def _messages(updates: AsyncIterator[dict[str, Any]]) -> AsyncIterator[tuple[str, BaseMessage]]:
    """The graph's `updates` stream as (node name, new message) pairs."""
    async for update in updates:
        for node, delta in update.items():
            for message in (delta or {}).get("messages", []):
                yield node, message


def _repeats(message: AIMessage, calls: list[ToolCallRecord]) -> bool:
    """Whether the message asks for a tool call already made this turn: its answer is known, so the loop is stuck."""
    made = {(c.name, json.dumps(c.arguments, sort_keys=True)) for c in calls}
    return any((c["name"], json.dumps(c["args"], sort_keys=True)) in made for c in message.tool_calls)


def _arguments_text(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in arguments.items())
