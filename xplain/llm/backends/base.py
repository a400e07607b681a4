"""What every backend implements: whole batches in, raw answers out. Caching, usage and validation live above."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from xplain.llm.types import GenerationRequest, LLMRequestError, Message, ScoreRequest, ToolCall


#: Top log-probabilities asked for the next token when one-token continuations are scored: vLLM's default
#: `--max-logprobs` and OpenAI's most for chat, so as many candidates as a default server gives.
NEXT_TOKEN_TOP_LOGPROBS = 20


@dataclass
class RawCompletion:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class RawScores:
    logprobs: list[float]
    token_counts: list[int]
    prompt_tokens: int = 0
    #: How the backend scored them (see `Scores.scoring`; empty: the backend's name stands for it).
    scoring: str = ""


class Backend(ABC):
    """A source of completions and log-likelihoods.

    `generate` receives a whole batch so that engines which batch natively (vLLM) see all of it at once, and
    backends that serve one request at a time (HTTP, llama.cpp) decide their own concurrency.
    """

    name: str
    #: True when `json_schema` on a request constrains decoding; False means the reply is only asked to match.
    constrains_json: bool = True
    #: True when the backend takes `tools` natively; otherwise the client picks tools through constrained JSON.
    native_tools: bool = False
    #: Tokens the model attends to, prompt and reply together; None while unknown (requests then go unchecked).
    context_size: int | None = None
    #: True when the client belongs to the event loop it first ran on (an HTTP session, asyncio locks), so it may
    #: not be called from another loop; in-process engines answer through thread-safe futures, on any loop.
    binds_event_loop: bool = False
    #: True when `score` takes `ScoreRequest.messages` (the server applies its model's chat template itself);
    #: elsewhere a chat is scored as the raw prompt `render_chat` makes of it.
    scores_chats: bool = False
    #: Requests the backend works on at once (generation sequences decoded together, or requests in flight): a job
    #: sends an LLM method this many rows per call, so that one batched round keeps the backend full.
    parallelism: int = 8

    @property
    @abstractmethod
    def model(self) -> str:
        """The model's name as the backend knows it (part of every cache key)."""

    @abstractmethod
    async def generate(self, requests: list[GenerationRequest]) -> list[RawCompletion]: ...

    @abstractmethod
    async def score(self, requests: list[ScoreRequest]) -> list[RawScores]: ...

    async def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens in each text. This default has no tokenizer and estimates a token per 3 bytes, which errs high
        for most text; backends with a tokenizer count exactly."""
        return [estimate_tokens(text) for text in texts]

    async def render_chat(self, messages: list[Message]) -> str:
        """The raw prompt the model's chat template makes of `messages`, opening the assistant's turn: what a
        `ScoreRequest` takes to score the assistant's first words after a chat. Without BOS, which scoring adds."""
        raise LLMRequestError(
            f"the {self.name} backend cannot render its model's chat template for scoring; chat-turn LLM "
            "classifiers run on the embedded model or on vLLM (a server or the in-process engine)"
        )

    async def check(self) -> str:
        """Raise `LLMUnavailableError` unless the backend can answer; return a one-line description."""
        return f"{self.name}:{self.model}"

    async def aclose(self) -> None:
        """Release connections, engines or model memory."""


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode("utf-8")) // 3)
