"""The chat: a grounded planner for small models (the LLM only chooses; templates answer) and a LangChain
tool-calling agent for capable ones, with per-session memory in SQLite and answers checked against the tool results
they rest on."""

from xplain.agent.chat_model import XplainChatModel
from xplain.agent.grounding import ungrounded_numbers
from xplain.agent.loop import (
    AgentAnswer,
    AgentEvent,
    AnswerDeltaEvent,
    AnswerEvent,
    ExplainerAgent,
    ToolCallEvent,
    ToolCallRecord,
    ToolResultEvent,
)
from xplain.agent.modes import ChatMode, make_chat, resolve_mode
from xplain.agent.planner import GroundedPlanner, Plan
from xplain.agent.store import ConversationStore, sqlite_path

__all__ = [
    "AgentAnswer",
    "AgentEvent",
    "AnswerDeltaEvent",
    "AnswerEvent",
    "ChatMode",
    "ConversationStore",
    "ExplainerAgent",
    "GroundedPlanner",
    "Plan",
    "ToolCallEvent",
    "ToolCallRecord",
    "ToolResultEvent",
    "XplainChatModel",
    "make_chat",
    "resolve_mode",
    "sqlite_path",
    "ungrounded_numbers",
]
