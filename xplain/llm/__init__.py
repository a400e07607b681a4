"""One LLM interface over several backends: `generate`, `chat`, `structured`, `score`, with usage on every result."""

from xplain.llm.client import LLM, UsageMeter, parse_json_reply, record_usage, track_usage
from xplain.llm.factory import make_backend, make_llm
from xplain.llm.types import (
    Completion,
    GenerationRequest,
    LLMError,
    LLMModelNotFoundError,
    LLMRequestError,
    LLMUnavailableError,
    Message,
    Scores,
    ScoreRequest,
    Structured,
    StructuredOutputError,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "LLM",
    "Completion",
    "GenerationRequest",
    "LLMError",
    "LLMModelNotFoundError",
    "LLMRequestError",
    "LLMUnavailableError",
    "Message",
    "ScoreRequest",
    "Scores",
    "Structured",
    "StructuredOutputError",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "UsageMeter",
    "make_backend",
    "make_llm",
    "parse_json_reply",
    "record_usage",
    "track_usage",
]
