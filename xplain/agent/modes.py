"""Which chat answers: the grounded planner (small models) or the tool-calling agent (capable ones).

`XPLAIN_CHAT_MODE=auto` picks the planner on the embedded llama.cpp backend and the agent elsewhere (OpenAI-compatible
servers, vLLM); `planner` or `agent` forces one.
"""

from __future__ import annotations

from typing import Literal

from xplain.agent.loop import ExplainerAgent
from xplain.agent.planner import GroundedPlanner
from xplain.agent.store import ConversationStore
from xplain.llm import LLM
from xplain.tools import ProbeContext

ChatMode = Literal["planner", "agent", "auto"]
PLANNER_BACKENDS = {"llamacpp"}


def resolve_mode(mode: ChatMode, llm: LLM) -> Literal["planner", "agent"]:
    if mode == "auto":
        return "planner" if llm.backend.name in PLANNER_BACKENDS else "agent"
    return mode


def make_chat(
    llm: LLM,
    context: ProbeContext,
    *,
    mode: ChatMode = "auto",
    store: ConversationStore | None = None,
    rephrase: bool = False,
    max_steps: int = 6,
) -> ExplainerAgent | GroundedPlanner:
    """The chat for `context` in the chosen mode; both stream the same events and return the same answers."""
    if resolve_mode(mode, llm) == "planner":
        return GroundedPlanner(llm, context, store=store, rephrase=rephrase)
    return ExplainerAgent(llm, context, store=store, max_steps=max_steps)
