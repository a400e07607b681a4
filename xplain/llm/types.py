"""The data that crosses the LLM boundary: requests, completions, usage, errors."""

from __future__ import annotations

import json
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xplain.errors import InvalidInput, XplainError

T = TypeVar("T", bound=BaseModel)


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class ToolSpec(BaseModel):
    """A tool the model may call: a name, what it does, and a JSON schema of its arguments."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
    description: str
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class GenerationRequest(BaseModel):
    """One prompt: chat `messages`, or a raw completion `prompt` (exactly one of them)."""

    model_config = ConfigDict(frozen=True)

    messages: list[Message] | None = None
    prompt: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    json_schema: dict[str, Any] | None = Field(None, description="Constrain the reply to this JSON schema.")
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["auto", "required"] = Field("auto", description="`required`: the reply must call a tool.")

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of `messages` (chat) or `prompt` (raw completion)")
        if self.messages is not None and not self.messages:
            raise ValueError("`messages` is empty")
        if self.tools and self.prompt is not None:
            raise ValueError("tools need chat `messages`, not a raw `prompt`")
        return self

    @classmethod
    def user(cls, text: str, *, system: str | None = None, **params: Any) -> GenerationRequest:
        """A one-turn chat request, the common case."""
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=text))
        return cls(messages=messages, **params)

    def cache_key(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True, ensure_ascii=False)


class ScoreRequest(BaseModel):
    """Log-likelihood of each continuation right after `prompt` (raw text, no chat template), or as the first
    words of the assistant's reply to `messages`, which only a backend that applies its model's chat template
    itself takes (`LLM.scores_chats`: an OpenAI-compatible server); elsewhere render the chat (`LLM.render_chat`)."""

    model_config = ConfigDict(frozen=True)

    prompt: str | None = Field(None, min_length=1)
    messages: list[Message] | None = Field(None, min_length=1)
    continuations: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _non_empty(self) -> ScoreRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages")
        if any(not c for c in self.continuations):
            raise ValueError("a continuation is empty: there is nothing to score")
        return self


class Usage(BaseModel):
    """What a piece of work cost: LLM calls, tokens, wall seconds, cache hits. Adds up with `+`."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cache_hits: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            seconds=self.seconds + other.seconds,
            cache_hits=self.cache_hits + other.cache_hits,
        )


class Completion(BaseModel):
    """A backend's answer to one `GenerationRequest`."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)

    @property
    def message(self) -> Message:
        return Message(role="assistant", content=self.text, tool_calls=self.tool_calls)


class Structured(BaseModel, Generic[T]):
    """A schema-valid object parsed from a reply, with the raw text it came from and the tries it took."""

    value: T
    raw: str
    attempts: int
    usage: Usage


class Scores(BaseModel):
    """Summed log-probabilities of each continuation (nats), and per-token detail."""

    logprobs: list[float]
    token_counts: list[int]
    usage: Usage = Field(default_factory=Usage)
    scoring: str = Field(
        "",
        description="How the backend scored: `next_token` (one-token continuations, as the server's or engine's "
        "tokenizer says, read from the next token's top log-probabilities, which prefix caches serve), "
        "`next_token_text` (the same where no tokenizer says: a top token whose text is exactly the continuation), "
        "`chat_next_token` (the same for the first token of a chat reply, on /chat/completions), "
        "`prompt_logprobs` or `echo` (the continuation read back as part of the prompt), `prefix_tree` / `flat` "
        "(the embedded engine); else the backend's name.",
    )

    def best(self) -> int:
        return max(range(len(self.logprobs)), key=self.logprobs.__getitem__)


class LLMError(XplainError, RuntimeError):
    """Base of every error the LLM layer raises on purpose."""

    status = 502


class LLMUnavailableError(LLMError):
    """The backend can't be reached or isn't ready (server down, weights missing)."""

    status = 503


class LLMModelNotFoundError(LLMError):
    """The server answers but does not serve the named model."""

    status = 503


class LLMRequestError(LLMError):
    """The backend refused a request (4xx other than 429); retrying the same request won't help."""


class NativeToolsUnavailableError(LLMRequestError):
    """The server refuses to pick tools itself (vLLM started without `--enable-auto-tool-choice`). The backend
    remembers it and reports `native_tools = False`, so `LLM.chat` asks again through constrained JSON."""
class ContextOverflow(LLMRequestError, InvalidInput):
    """One request does not fit the model's context window; it fails alone, the rest of its batch is answered."""

    status = 422


class StructuredOutputError(LLMError):
    """A reply never validated against the schema; `raw` holds the last text and `errors` why it failed."""

    def __init__(self, message: str, raw: str, errors: str) -> None:
        super().__init__(f"{message}\nvalidation errors: {errors}\nraw reply: {raw[:2000]!r}")
        self.raw = raw
        self.errors = errors
