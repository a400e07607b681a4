"""`LLM`: the one object methods talk to. It wraps a backend with caching, usage accounting, schema validation
and a JSON fallback for tool calling, so every backend behaves the same from above."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ValidationError

from xplain.llm.backends.base import Backend, RawCompletion, RawScores
from xplain.llm.cache import ResponseCache, cache_key
from xplain.llm.types import (
    Completion,
    ContextOverflow,
    GenerationRequest,
    LLMError,
    LLMRequestError,
    Message,
    NativeToolsUnavailableError,
    Scores,
    ScoreRequest,
    Structured,
    StructuredOutputError,
    ToolCall,
    ToolSpec,
    Usage,
)
from xplain.prompts import load_prompt

T = TypeVar("T", bound=BaseModel)

#: Tokens a chat template adds around each message (role markers) and once per request (a default system prompt,
#: the assistant's opening); a margin, since the guard counts message texts, not the rendered template.
TEMPLATE_TOKENS_PER_MESSAGE = 6
TEMPLATE_TOKENS_PER_REQUEST = 32


class UsageMeter:
    """Collects the usage of every LLM call made inside a `track_usage()` block, across concurrent tasks."""

    def __init__(self) -> None:
        self.usage = Usage()

    def add(self, usage: Usage) -> None:
        self.usage = self.usage + usage


_meters: ContextVar[tuple[UsageMeter, ...]] = ContextVar("xplain_usage_meters", default=())


@contextmanager
def track_usage() -> Iterator[UsageMeter]:
    """`with track_usage() as meter:` — afterwards `meter.usage` is what the block spent (nested blocks add up)."""
    meter = UsageMeter()
    token = _meters.set(_meters.get() + (meter,))
    try:
        yield meter
    finally:
        _meters.reset(token)


def record_usage(usage: Usage) -> None:
    """Add `usage` to every `track_usage()` block open in this context: for work an LLM did in another context
    (an LLM classifier's own event loop) that the caller's result must still count."""
    for meter in _meters.get():
        meter.add(usage)


class LLM:
    """Async, batched access to one model: `generate`, `chat`, `structured`, `score`."""

    def __init__(
        self,
        backend: Backend,
        *,
        cache: ResponseCache | None = None,
        default_max_tokens: int = 256,
        structured_attempts: int = 3,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.default_max_tokens = default_max_tokens
        self.structured_attempts = structured_attempts
        self.usage = Usage()

    @property
    def name(self) -> str:
        return f"{self.backend.name}:{self.backend.model}"

    @property
    def parallelism(self) -> int:
        """Requests the backend works on at once: how many rows one batched LLM round should carry."""
        return self.backend.parallelism

    @property
    def context_size(self) -> int | None:
        """Tokens the model attends to, prompt and reply together (None while the backend does not know)."""
        return self.backend.context_size

    @property
    def scores_chats(self) -> bool:
        """Whether `score` takes `ScoreRequest.messages` (the backend's server applies the chat template)."""
        return self.backend.scores_chats

    async def render_chat(self, messages: Sequence[Message]) -> str:
        """The raw prompt the model's chat template makes of `messages`, the assistant's turn opened: a
        `ScoreRequest` prompt that scores the assistant's first words (`LLMRequestError` where the backend cannot)."""
        return await self.backend.render_chat(list(messages))

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text, by the backend's tokenizer where it has one (else an estimate that errs high)."""
        return await self.backend.count_tokens(list(texts)) if texts else []

    # -- generate ---------------------------------------------------------------------------------------------

    @overload
    async def generate(
        self, requests: Sequence[GenerationRequest], *, on_error: Literal["raise"] = "raise"
    ) -> list[Completion]: ...

    @overload
    async def generate(
        self, requests: Sequence[GenerationRequest], *, on_error: Literal["return"]
    ) -> list[Completion | LLMError]: ...

    async def generate(self, requests, *, on_error="raise"):
        """Complete every request; identical temperature-0 requests are answered once and cached.

        A request that cannot be answered on its own account — it does not fit the context (checked before
        sending), or the backend refuses or fails to decode it — fails alone: with `on_error="return"` its
        error takes its place in the list and the others are answered; with "raise" the first such error is
        raised. A backend that is down fails the whole call either way.
        """
        requests = [r if r.max_tokens else r.model_copy(update={"max_tokens": self.default_max_tokens}) for r in requests]
        keys = [self._generation_key(r) for r in requests]
        results: list[Completion | LLMError | None] = [None] * len(requests)
        hits = 0
        misses: dict[str, list[int]] = {}  # key -> positions; uncacheable requests get unique keys
        for i, (request, key) in enumerate(zip(requests, keys)):
            cached = self.cache.get(key) if (key and self.cache) else None
            if cached is not None:
                results[i] = Completion(**json.loads(cached), usage=Usage(cache_hits=1))
                hits += 1
            else:
                misses.setdefault(key or f"#{i}", []).append(i)

        started = time.perf_counter()
        to_send = [requests[positions[0]] for positions in misses.values()]
        raws = await self._send_each_alone_on_failure(self.backend.generate, to_send, await self._overflows(to_send))
        elapsed = time.perf_counter() - started
        _check_count(self.backend, "completions", len(to_send), len(raws))

        fresh: dict[str, str] = {}
        for (key, positions), raw in zip(misses.items(), raws):
            if isinstance(raw, LLMError):
                for i in positions:
                    results[i] = raw
                continue
            usage = Usage(
                calls=1,
                prompt_tokens=raw.prompt_tokens,
                completion_tokens=raw.completion_tokens,
                seconds=elapsed / len(raws),
            )
            completion = Completion(
                text=raw.text, tool_calls=raw.tool_calls, finish_reason=raw.finish_reason, usage=usage
            )
            for n, i in enumerate(positions):
                results[i] = completion if n == 0 else completion.model_copy(update={"usage": Usage(cache_hits=1)})
            hits += len(positions) - 1
            if not key.startswith("#"):
                fresh[key] = json.dumps(asdict(raw) | {"tool_calls": [t.model_dump() for t in raw.tool_calls]})
        if self.cache is not None:
            self.cache.put_many(fresh)

        answered = [r for r in raws if isinstance(r, RawCompletion)]
        self._account(
            Usage(
                calls=len(answered),
                prompt_tokens=sum(r.prompt_tokens for r in answered),
                completion_tokens=sum(r.completion_tokens for r in answered),
                seconds=elapsed,
                cache_hits=hits,
            )
        )
        return _finish(results, on_error)

    async def _overflows(self, requests: Sequence[GenerationRequest]) -> dict[int, ContextOverflow]:
        """Requests whose prompt and `max_tokens` do not fit the context. A prompt whose bytes alone fit (a
        token is at least a byte) is not counted, so short prompts cost no tokenizer call."""
        limit = self.context_size
        if limit is None:
            return {}
        texts = [_request_text(r) for r in requests]
        extra = [_template_tokens(r) + (r.max_tokens or 0) for r in requests]
        unsure = [i for i, text in enumerate(texts) if len(text.encode("utf-8")) + extra[i] > limit]
        overflows = {}
        for i, count in zip(unsure, await self.count_tokens([texts[i] for i in unsure])):
            if count + extra[i] > limit:
                prompt = count + extra[i] - (requests[i].max_tokens or 0)
                overflows[i] = ContextOverflow(
                    f"the prompt is about {prompt} tokens and the reply may take {requests[i].max_tokens}: "
                    f"{count + extra[i]} in all, over the model's context of {limit} tokens; shorten the input"
                )
        return overflows

    async def _score_overflows(self, requests: Sequence[ScoreRequest]) -> dict[int, ContextOverflow]:
        """Score requests whose prompt and longest continuation do not fit the context (counted only when
        their bytes could overflow it, as for generation)."""
        limit = self.context_size
        if limit is None:
            return {}
        longest = [max(r.continuations, key=len) for r in requests]
        texts = [r.prompt if r.prompt is not None else "\n".join(m.content for m in r.messages or []) for r in requests]
        unsure = [i for i, t in enumerate(texts) if len(t.encode("utf-8")) + len(longest[i].encode("utf-8")) > limit]
        counts = await self.count_tokens([texts[i] for i in unsure] + [longest[i] for i in unsure])
        prompts, continuations = counts[: len(unsure)], counts[len(unsure) :]
        return {
            i: ContextOverflow(
                f"the prompt is about {prompt} tokens and the continuation to score {continuation}: "
                f"{prompt + continuation} in all, over the model's context of {limit} tokens; shorten the input"
            )
            for i, prompt, continuation in zip(unsure, prompts, continuations)
            if prompt + continuation > limit
        }

    async def _send_each_alone_on_failure(self, send, items: list, refused: dict[int, LLMError]) -> list:
        """`send(items)`, with `refused` positions answered by their error instead of sent. If the batch fails
        because of a request (not because the backend is down), each is sent alone so that only it fails."""
        pending = [i for i in range(len(items)) if i not in refused]
        out: list[Any] = [refused.get(i) for i in range(len(items))]
        if not pending:
            return out
        try:
            for i, answer in zip(pending, await send([items[i] for i in pending])):
                out[i] = answer
            return out
        except Exception as error:  # noqa: BLE001 - sorted by _request_error below
            if _request_error(error) is None:
                raise
            if len(pending) == 1:
                out[pending[0]] = _request_error(error)
                return out
        for i in pending:
            try:
                out[i] = (await send([items[i]]))[0]
            except Exception as error:  # noqa: BLE001
                out[i] = _request_error(error)
                if out[i] is None:
                    raise
        return out

    def _generation_key(self, request: GenerationRequest) -> str | None:
        if request.temperature > 0:
            return None
        return cache_key("generate", self.backend.name, self.backend.model, request.cache_key())

    # -- chat -------------------------------------------------------------------------------------------------

    async def chat(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec] | None = None, **params: Any
    ) -> Completion:
        """One assistant turn; with `tools`, the reply may be tool calls instead of text."""
        request = GenerationRequest(messages=list(messages), tools=list(tools) if tools else None, **params)
        if not request.tools or self.backend.native_tools:
            try:
                return (await self.generate([request]))[0]
            except NativeToolsUnavailableError:
                pass  # the backend learnt that its server can't; constrained JSON from now on
        completion = (await self.generate([_tool_choice_request(request)]))[0]
        return _parse_tool_choice(completion)

    # -- structured -------------------------------------------------------------------------------------------

    @overload
    async def structured(
        self,
        requests: Sequence[GenerationRequest],
        schema: type[T] | Sequence[type[T]],
        *,
        on_error: Literal["raise"] = "raise",
        attempts: int | None = None,
    ) -> list[Structured[T]]: ...

    @overload
    async def structured(
        self,
        requests: Sequence[GenerationRequest],
        schema: type[T] | Sequence[type[T]],
        *,
        on_error: Literal["return"],
        attempts: int | None = None,
    ) -> list[Structured[T] | StructuredOutputError]: ...

    async def structured(self, requests, schema, *, on_error="raise", attempts=None):
        """Schema-valid objects, one per chat request; `schema` is one model for all, or one per request.

        A request without `max_tokens` may take as many tokens as the longest reply its schema allows
        (`reply_bound`), or the client's default where the schema bounds nothing. Decoding is constrained to the
        schema where the backend can; a reply that still fails validation is sent
        back with the errors and asked again, up to `attempts` tries (default: the client's `structured_attempts`;
        1 for callers that re-ask in their own words). A reply that never validates
        raises `StructuredOutputError` with the raw text (or, with `on_error="return"`, takes that error's place
        in the list so the valid ones are kept).
        """
        if any(r.messages is None for r in requests):
            raise ValueError("structured() needs chat requests (`messages`), not raw prompts")
        schemas = list(schema) if isinstance(schema, Sequence) else [schema] * len(requests)
        if len(schemas) != len(requests):
            raise ValueError(f"{len(schemas)} schemas for {len(requests)} requests; give one schema or one per request")
        json_schemas = [s.model_json_schema() for s in schemas]
        pending = {
            i: r.model_copy(update={"json_schema": json_schemas[i], "max_tokens": r.max_tokens or reply_bound(json_schemas[i])})
            for i, r in enumerate(requests)
        }
        results: list[Structured | StructuredOutputError | None] = [None] * len(requests)
        spent = [Usage() for _ in requests]
        tries = attempts or self.structured_attempts
        for attempt in range(1, tries + 1):
            order = list(pending)
            completions = await self.generate([pending[i] for i in order], on_error="return")
            for i, completion in zip(order, completions):
                if isinstance(completion, LLMError):  # e.g. over the context: asking again will not help
                    results[i] = completion
                    del pending[i]
                    continue
                spent[i] = spent[i] + completion.usage
                try:
                    value = parse_json_reply(completion.text, schemas[i])
                except ValueError as error:
                    if attempt == tries:
                        results[i] = StructuredOutputError(
                            f"the reply never matched schema {schemas[i].__name__} in {attempt} tries",
                            raw=completion.text,
                            errors=str(error),
                        )
                    else:
                        schema_text = json.dumps(json_schemas[i], separators=(",", ":"))
                        pending[i] = _repair_request(pending[i], completion.text, str(error), schema_text)
                    continue
                results[i] = Structured[schemas[i]](value=value, raw=completion.text, attempts=attempt, usage=spent[i])
                del pending[i]
            if not pending:
                break
        failures = [r for r in results if isinstance(r, LLMError)]
        if failures and on_error == "raise":
            raise failures[0]
        return results

    # -- score ------------------------------------------------------------------------------------------------

    async def score(self, requests: Sequence[ScoreRequest], *, on_error: Literal["raise", "return"] = "raise"):
        """Log-likelihood (nats) of each continuation after its prompt; deterministic, so always cached.
        A request the backend cannot score (too long) fails alone, as in `generate`."""
        keys = [cache_key("score", self.backend.name, self.backend.model, r.model_dump_json()) for r in requests]
        results: list[Scores | LLMError | None] = [None] * len(requests)
        hits = 0
        misses: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            cached = self.cache.get(key) if self.cache else None
            if cached is not None:
                results[i] = Scores(**json.loads(cached), usage=Usage(cache_hits=1))
                hits += 1
            else:
                misses.setdefault(key, []).append(i)

        started = time.perf_counter()
        to_send = [requests[positions[0]] for positions in misses.values()]
        refused: dict[int, LLMError] = await self._score_overflows(to_send)
        if not self.backend.scores_chats:
            refused |= {
                i: LLMRequestError(
                    f"the {self.backend.name} backend scores raw prompts, not chats: render the chat first "
                    "(LLM.render_chat) and score the prompt it makes"
                )
                for i, r in enumerate(to_send)
                if r.messages is not None
            }
        raws: list[RawScores | LLMError] = await self._send_each_alone_on_failure(self.backend.score, to_send, refused)
        elapsed = time.perf_counter() - started
        _check_count(self.backend, "scores", len(to_send), len(raws))

        fresh: dict[str, str] = {}
        for (key, positions), raw in zip(misses.items(), raws):
            if isinstance(raw, LLMError):
                for i in positions:
                    results[i] = raw
                continue
            usage = Usage(calls=1, prompt_tokens=raw.prompt_tokens, seconds=elapsed / len(raws))
            scoring = raw.scoring or self.backend.name
            scores = Scores(logprobs=raw.logprobs, token_counts=raw.token_counts, usage=usage, scoring=scoring)
            for n, i in enumerate(positions):
                results[i] = scores if n == 0 else scores.model_copy(update={"usage": Usage(cache_hits=1)})
            hits += len(positions) - 1
            fresh[key] = json.dumps({"logprobs": raw.logprobs, "token_counts": raw.token_counts, "scoring": scoring})
        if self.cache is not None:
            self.cache.put_many(fresh)
        answered = [r for r in raws if isinstance(r, RawScores)]
        self._account(
            Usage(
                calls=len(answered),
                prompt_tokens=sum(r.prompt_tokens for r in answered),
                seconds=elapsed,
                cache_hits=hits,
            )
        )
        return _finish(results, on_error)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def check(self) -> str:
        return await self.backend.check()

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.cache is not None:
            self.cache.close()

    def _account(self, usage: Usage) -> None:
        self.usage = self.usage + usage
        record_usage(usage)


def _finish(results: list, on_error: str) -> list:
    if on_error == "raise":
        for result in results:
            if isinstance(result, LLMError):
                raise result
    return [r for r in results if r is not None]


def _request_text(request: GenerationRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    parts = []
    for message in request.messages or []:
        parts.append(message.content)
        parts.extend(json.dumps(call.arguments) for call in message.tool_calls)
    for tool in request.tools or []:
        parts.append(f"{tool.name} {tool.description} {json.dumps(tool.parameters)}")
    return "\n".join(parts)


def _template_tokens(request: GenerationRequest) -> int:
    if request.messages is None:
        return 0
    return TEMPLATE_TOKENS_PER_REQUEST + TEMPLATE_TOKENS_PER_MESSAGE * len(request.messages)


def _request_error(error: Exception) -> LLMError | None:
    """The error as one request's failure, or None when it is about the backend (down, not ready): those fail
    the whole call. llama.cpp reports a prompt over its context as ValueError ("Requested tokens ... exceed
    context window") or RuntimeError ("llama_decode returned 1": no room left in its cache)."""
    if isinstance(error, LLMRequestError):
        return error
    if isinstance(error, LLMError):
        return None
    text = str(error)
    if isinstance(error, ValueError) and "context" in text:
        return ContextOverflow(f"the input does not fit the model's context: {text}")
    if isinstance(error, RuntimeError) and "llama_decode" in text:
        return ContextOverflow(
            f"the model could not process this input ({text}): the prompt and its reply most likely do not fit "
            "the model's context; shorten the input"
        )
    return None


def _check_count(backend: Backend, what: str, sent: int, received: int) -> None:
    if sent != received:
        raise LLMError(f"backend {backend.name} returned {received} {what} for {sent} requests")


#: Tokens allowed per separator for the whitespace that JSON grammars let a model write between values.
WHITESPACE_TOKENS = 2
SCALAR_BYTES = {"number": 24, "integer": 20, "boolean": 5, "null": 4}


def reply_bound(schema: dict[str, Any]) -> int | None:
    """The most tokens a reply matching `schema` can need: the bytes of its longest compact JSON (a token is at least
    a byte of ASCII text) plus two whitespace tokens per separator; None where a string or list is unbounded. So every
    structured field is bounded by its schema, and an engine reserves no more room for a reply than it can take."""
    definitions = schema.get("$defs", {})

    def longest(node: dict[str, Any]) -> int | None:
        if "$ref" in node:
            return longest(definitions[node["$ref"].rsplit("/", 1)[-1]])
        if "const" in node:
            return len(json.dumps(node["const"]))
        if "enum" in node:
            return max(len(json.dumps(value)) for value in node["enum"])
        options = node.get("anyOf") or node.get("oneOf")
        if options:
            sizes = [longest(option) for option in options]
            return None if None in sizes else max(sizes)
        kind = node.get("type")
        if kind == "object":
            parts = [len(json.dumps(name)) + 1 + WHITESPACE_TOKENS for name in node.get("properties", {})]
            values = [longest(value) for value in node.get("properties", {}).values()]
            if None in values:
                return None
            return 2 + sum(parts) + sum(values) + 2 * WHITESPACE_TOKENS * len(parts)
        if kind == "array":
            item = longest(node.get("items", {}))
            if item is None or "maxItems" not in node:
                return None
            return 2 + node["maxItems"] * (item + 1 + WHITESPACE_TOKENS)
        if kind == "string":
            return node["maxLength"] + 2 if "maxLength" in node else None
        return SCALAR_BYTES.get(kind) if isinstance(kind, str) else None

    size = longest(schema)
    return None if size is None else size + 2 * WHITESPACE_TOKENS


def parse_json_reply(text: str, schema: type[T]) -> T:
    """Validate a reply as `schema`, also when the JSON sits inside a code fence or between other words."""
    candidates = [text.strip()]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    problems = "no JSON object found in the reply"
    for candidate in candidates:
        try:
            return schema.model_validate_json(candidate)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in error.errors()[:8]
            )
    raise ValueError(problems)


def _repair_request(request: GenerationRequest, raw: str, errors: str, schema_text: str) -> GenerationRequest:
    repair = load_prompt("llm/structured_repair").render(errors=errors, schema=schema_text)
    messages = [*request.messages, Message(role="assistant", content=raw), Message(role="user", content=repair)]
    return request.model_copy(update={"messages": messages})


def _tool_choice_request(request: GenerationRequest) -> GenerationRequest:
    """Turn a tool-calling request into a constrained-JSON one, for backends without native tool calling."""
    tools = request.tools or []
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": tool.name}, "arguments": tool.parameters},
            "required": ["tool", "arguments"],
        }
        for tool in tools
    ]
    if request.tool_choice == "auto":
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"const": "answer"}, "answer": {"type": "string", "maxLength": 1000}},
                "required": ["tool", "answer"],
            }
        )
    listing = "\n".join(f"- {t.name}({_argument_summary(t.parameters)}): {t.description}" for t in tools)
    system = load_prompt("llm/tool_choice").render(tools=listing)
    messages: list[Message] = []
    for message in request.messages or []:
        if message.role == "system":
            system = f"{message.content}\n\n{system}"
        elif message.role == "tool":
            content = load_prompt("llm/tool_result").render(name=message.name or "tool", content=message.content)
            messages.append(Message(role="user", content=content))
        elif message.tool_calls:
            calls = [{"tool": c.name, "arguments": c.arguments} for c in message.tool_calls]
            messages.append(Message(role="assistant", content=json.dumps(calls[0] if len(calls) == 1 else calls)))
        else:
            messages.append(message)
    return request.model_copy(
        update={"messages": [Message(role="system", content=system), *messages], "tools": None, "json_schema": {"anyOf": options}}
    )


def _argument_summary(parameters: dict[str, Any]) -> str:
    """`row: integer, feature: string` — the grammar enforces the full schema, so the prompt only names the fields."""
    properties = parameters.get("properties", {})
    return ", ".join(f"{name}: {spec.get('type', 'value')}" for name, spec in properties.items())


def _parse_tool_choice(completion: Completion) -> Completion:
    """Read the constrained-JSON choice back as a tool call or a plain answer."""
    try:
        choice = json.loads(completion.text)
    except json.JSONDecodeError:
        return completion
    if not isinstance(choice, dict) or "tool" not in choice:
        return completion
    if choice["tool"] == "answer":
        return completion.model_copy(update={"text": str(choice.get("answer", ""))})
    call = ToolCall(id="call_0", name=str(choice["tool"]), arguments=choice.get("arguments") or {})
    return completion.model_copy(update={"text": "", "tool_calls": [call], "finish_reason": "tool_calls"})
