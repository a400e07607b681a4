"""The chat agent: a LangChain tool-calling loop over xplain's tools, with per-session memory in SQLite and answers
checked against the tool results they rest on."""

from xplain.agent.chat_model import XplainChatModel
from xplain.agent.grounding import ungrounded_numbers
from xplain.agent.loop import (
    AgentAnswer,
    AgentEvent,
    AnswerEvent,
    ExplainerAgent,
    ToolCallEvent,
    ToolCallRecord,
    ToolResultEvent,
)
from xplain.agent.store import ConversationStore, sqlite_path

__all__ = [
    "AgentAnswer",
    "AgentEvent",
    "AnswerEvent",
    "ConversationStore",
    "ExplainerAgent",
    "ToolCallEvent",
    "ToolCallRecord",
    "ToolResultEvent",
    "XplainChatModel",
    "sqlite_path",
    "ungrounded_numbers",
]
