"""A scripted backend for unit tests: replies come from rules or a queue, log-probabilities from a function.

It records every batch it receives, so a test can assert that a method sent its requests together.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xplain.llm.backends.base import Backend, RawCompletion, RawScores
from xplain.llm.backends.schema_filler import schema_instance
from xplain.llm.types import GenerationRequest, LLMError, Message, ScoreRequest, ToolCall

Reply = str | RawCompletion | Callable[[GenerationRequest], "str | RawCompletion"]


def request_text(request: GenerationRequest) -> str:
    """All the text of a request, which rules are matched against."""
    if request.prompt is not None:
        return request.prompt
    return "\n".join(m.content for m in request.messages or [])


def plumbing_reply(request: GenerationRequest) -> str:
    """Echoes the prompt, or answers a JSON schema with an instance of it: enough to try every method's plumbing
    without a model (`XPLAIN_LLM_BACKEND=fake`); tests script their own replies."""
    if request.json_schema is not None:
        return json.dumps(schema_instance(request.json_schema))
    return (request.prompt or request.messages[-1].content)[:200]


def default_token_logprob(previous: str | None, token: str) -> float:
    """A stable pseudo log-probability in [-6, -0.1] for a whitespace token after another."""
    digest = zlib.crc32(f"{previous}\x00{token}".encode())
    return -0.1 - 5.9 * (digest % 10_000) / 10_000


@dataclass
class FakeBackend(Backend):
    """Replies, in order of precedence: the first rule whose regex matches the request text, the next queued
    reply, `default`. With none of them, the request is an error that names it (a test forgot a script).

    `token_logprob(previous_token, token)` scores continuations token by token (whitespace tokens).
    """

    rules: list[tuple[str, Reply]] = field(default_factory=list)
    queue: Iterable[Reply] = ()
    default: Reply | None = None
    token_logprob: Callable[[str | None, str], float] = default_token_logprob
    model_name: str = "fake-model"
    delay_s: float = 0.0
    native_tools: bool = True
    name: str = "fake"
    context_size: int | None = None
    parallelism: int = 8

    def __post_init__(self) -> None:
        self._queue = deque(self.queue)
        self._rules = [(re.compile(pattern, re.S), reply) for pattern, reply in self.rules]
        self.batches: list[list[GenerationRequest]] = []
        self.score_batches: list[list[ScoreRequest]] = []

    @property
    def model(self) -> str:
        return self.model_name

    @property
    def requests(self) -> list[GenerationRequest]:
        return [r for batch in self.batches for r in batch]

    async def generate(self, requests: list[GenerationRequest]) -> list[RawCompletion]:
        self.batches.append(list(requests))
        await asyncio.sleep(self.delay_s)  # even 0 yields to the event loop, as every real backend's I/O does
        return [self._reply(r) for r in requests]

    def _reply(self, request: GenerationRequest) -> RawCompletion:
        text = request_text(request)
        reply = next((r for pattern, r in self._rules if pattern.search(text)), None)
        if reply is None and self._queue:
            reply = self._queue.popleft()
        if reply is None:
            reply = self.default
        if reply is None:
            raise LLMError(f"fake backend has no scripted reply for: {text[:300]!r}")
        if callable(reply):
            reply = reply(request)
        if isinstance(reply, str):
            reply = RawCompletion(text=reply, finish_reason="stop")
        reply.prompt_tokens = reply.prompt_tokens or len(text.split())
        reply.completion_tokens = reply.completion_tokens or len(reply.text.split())
        return reply

    async def render_chat(self, messages: list[Message]) -> str:
        """`role: content` lines and an opened `assistant:` turn (as the OpenAI stub's /tokenize renders chats)."""
        return "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant:"

    async def count_tokens(self, texts: list[str]) -> list[int]:
        """Whitespace words: the same tokens the fake's usage counts and its scores use."""
        return [len(text.split()) for text in texts]

    async def score(self, requests: list[ScoreRequest]) -> list[RawScores]:
        self.score_batches.append(list(requests))
        await asyncio.sleep(self.delay_s)  # even 0 yields to the event loop, as every real backend's I/O does
        results = []
        for request in requests:
            prompt_tokens = request.prompt.split()
            logprobs, counts = [], []
            for continuation in request.continuations:
                tokens = continuation.split()
                previous = [prompt_tokens[-1] if prompt_tokens else None, *tokens[:-1]]
                logprobs.append(sum(self.token_logprob(p, t) for p, t in zip(previous, tokens)))
                counts.append(len(tokens))
            results.append(RawScores(logprobs=logprobs, token_counts=counts, prompt_tokens=len(prompt_tokens)))
        return results


def tool_call_reply(name: str, **arguments: object) -> RawCompletion:
    """A scripted reply that calls a tool."""
    return RawCompletion(
        text="", tool_calls=[ToolCall(id=f"call_{name}", name=name, arguments=dict(arguments))], finish_reason="tool_calls"
    )
