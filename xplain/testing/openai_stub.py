"""A local stand-in for an OpenAI-compatible server (with vLLM's extensions), for tests and benchmarks.

It answers enough of the API for a client's request shapes, concurrency, retries and error handling to be checked
against a real socket, deterministically and with little per-request work:

- ``GET /v1/models``, ``GET /health``, and ``GET /version`` when it plays vLLM;
- ``POST /v1/chat/completions``: a fixed reply, a tool call to the first (or the named) tool, or -- when a JSON
  schema is asked for through ``response_format`` or (playing vLLM) ``structured_outputs`` / ``guided_json`` -- the
  JSON text of a minimal instance of that schema (see :func:`schema_instance`);
- ``POST /v1/completions``: legacy text completions with ``echo`` and ``logprobs``, plus vLLM's ``prompt_logprobs``
  and token-id prompts;
- ``POST /tokenize`` and ``POST /detokenize`` (vLLM's, at the server root).

With ``owned_by="vllm"`` it behaves like the vLLM release named in ``StubConfig.version``, where a behaviour
differs between releases or from OpenAI's; each such place cites the vLLM file it follows. With
``owned_by="llamacpp"`` it behaves like llama.cpp's server where that differs: ``POST /tokenize`` takes ``content``,
``echo`` is refused, and log-probabilities come in the chat shape with token ids, for completions too.

Two tokenizers (``StubConfig.tokenizer``): ``"whitespace"`` splits text with the regex ``\\s*\\S+`` (each token keeps
its leading whitespace, no BOS -- like byte-level BPE models such as Qwen); ``"sentencepiece"`` marks word starts
with ``▁``, adds a dummy ``▁`` before the text and a ``<s>`` BOS (like Llama 2 and Mistral), so that tokenizing a
continuation on its own differs from tokenizing it after its prompt. A token's id is a stable hash of its text, and
every token seen is remembered so that ids decode back. A token's log-probability is a stable function of the token
and the one before it (:func:`stub_token_logprob`), so tests can compute the values the stub will return. No
streaming, and ``n`` must be 1.

Typical use::

    with run_stub(StubConfig(delay_s=0.02, max_in_flight=4)) as (base_url, stub):
        client = openai.OpenAI(base_url=base_url, api_key="x")
        ...
        assert stub.max_seen_in_flight <= 4
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from xplain.llm.backends.schema_filler import schema_instance
from xplain.llm.backends.vllm_release import release
from xplain.testing.serve import serve_in_thread

__all__ = [
    "OpenAIStub",
    "RecordedRequest",
    "StubConfig",
    "StubTokenizer",
    "run_stub",
    "schema_instance",
    "sentencepiece_encode",
    "stub_decode",
    "stub_encode",
    "stub_token_id",
    "stub_token_logprob",
    "stub_tokenize",
]


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer and log-probabilities


_TOKEN_RE = re.compile(r"\s*\S+")
_ID_SPACE = 2**31 - 1  # ids are non-negative int32s; collisions are possible but rare
_VOCAB: dict[int, str] = {}  # id -> token text, for every token the stub has seen (shared by all stubs)


def stub_tokenize(text: str) -> list[str]:
    """The stub's tokens of `text`: runs of whitespace plus the non-whitespace that follows (trailing space drops)."""
    return _TOKEN_RE.findall(text)


def stub_token_id(token: str) -> int:
    """The stable id of one token (and remember it, so the id decodes back)."""
    token_id = zlib.crc32(token.encode()) % _ID_SPACE
    _VOCAB.setdefault(token_id, token)
    return token_id


def stub_encode(text: str) -> list[int]:
    """Token ids of `text` (what ``POST /tokenize`` answers)."""
    return [stub_token_id(token) for token in stub_tokenize(text)]


def _decode_one(token_id: int) -> str:
    token = _VOCAB.get(token_id)
    return token if token is not None else f" <{token_id}>"  # an id never seen: a stable placeholder


def stub_decode(token_ids: list[int]) -> str:
    """Text of token ids; ids the stub never produced decode to ``" <id>"``."""
    return "".join(_decode_one(token_id) for token_id in token_ids)


def stub_token_logprob(prev: str | None, tok: str) -> float:
    """The default log-probability of `tok` after `prev` (None at the start): a stable value in [-6, -0.1]."""
    key = ("\x01" if prev is None else "\x02" + prev) + "\x00" + tok
    return -0.1 - 5.9 * (zlib.crc32(key.encode()) % 10007) / 10006


def _word_count(text: str) -> int:
    return len(text.split())


_WORD_START = "\u2581"  # SentencePiece's "▁"
_PIECE_RE = re.compile(f"{_WORD_START}?[^{_WORD_START}]+|{_WORD_START}")
BOS = "<s>"


class StubTokenizer:
    """How the stub cuts text into tokens: `tokens(text)` gives (token, start offset in `text`) pairs, without BOS."""

    def __init__(self, kind: str) -> None:
        if kind not in ("whitespace", "sentencepiece"):
            raise ValueError(f"unknown stub tokenizer {kind!r}")
        self.kind = kind
        self.bos: str | None = BOS if kind == "sentencepiece" else None

    def tokens(self, text: str) -> list[tuple[str, int]]:
        if self.kind == "whitespace":
            return [(m.group(), m.start()) for m in _TOKEN_RE.finditer(text)]
        # SentencePiece with a dummy prefix: every space becomes "▁", one more "▁" goes in front, and a piece is an
        # optional "▁" plus the text up to the next one. Normalised index i is text index i - 1.
        normalised = _WORD_START + text.replace(" ", _WORD_START)
        return [(m.group(), max(m.start() - 1, 0)) for m in _PIECE_RE.finditer(normalised)]

    def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        ids = [stub_token_id(self.bos)] if (self.bos and add_special_tokens) else []
        return ids + [stub_token_id(token) for token, _ in self.tokens(text)]

    def decode(self, token_ids: list[int]) -> str:
        """Like Hugging Face's `decode` without `skip_special_tokens`: a BOS shows as ``<s> ``."""
        tokens = [_decode_one(token_id) for token_id in token_ids]
        if self.kind == "whitespace":
            return "".join(tokens)
        bos = tokens[:1] == [BOS]
        body = "".join(tokens[1:] if bos else tokens).replace(_WORD_START, " ").removeprefix(" ")
        return f"{BOS} {body}" if bos else body


def sentencepiece_encode(text: str, *, add_special_tokens: bool = True) -> list[int]:
    """Token ids of `text` under the stub's SentencePiece-style tokenizer (what its ``/tokenize`` answers)."""
    return StubTokenizer("sentencepiece").encode(text, add_special_tokens=add_special_tokens)


# ----------------------------------------------------------------------------------------------------------------
# The server


class StubConfig(BaseModel):
    """How the stub behaves. Fields may be changed while it runs (`max_in_flight` takes effect when idle)."""

    models: list[str] = ["stub-model"]
    owned_by: str = "stub"  # "vllm" makes it look like vLLM, "llamacpp" like llama.cpp's server
    delay_s: float = 0.0  # each generation request is answered after this delay
    max_in_flight: int | None = None  # at most this many generation requests processed at once; others wait
    fail_first: list[int] = []  # status codes for the first len(fail_first) generation requests, in order
    reply: str = "stub reply"  # text for chat/completions when no JSON schema or tools are asked for
    reject_json_schema: bool = False  # 400 for response_format type json_schema (servers that take json_object only)
    max_model_len: int = 2048  # reported by /tokenize and (when owned_by is "vllm") /v1/models
    version: str = "0.12.0"  # the vLLM release it plays when owned_by is "vllm" (GET /version, request fields)
    enable_auto_tool_choice: bool = False  # as `vllm serve --enable-auto-tool-choice --tool-call-parser ...`
    tokenizer: Literal["whitespace", "sentencepiece"] = "whitespace"
    #: Tokens ranked for a completion's `top_logprobs` beside the sampled one (a real server ranks its whole
    #: vocabulary; the stub ranks these, each scored by `token_logprob` after the token before).
    vocabulary: list[str] = []
    max_logprobs: int = 20  # as `vllm serve --max-logprobs`: a request asking for more `logprobs` gets 400
    logprobs: bool = True  # False: `logprobs` and `echo` are ignored and answered with none, as some servers do

    @property
    def llamacpp(self) -> bool:
        return self.owned_by == "llamacpp"

    @property
    def vllm_release(self) -> tuple[int, int] | None:
        """(major, minor) of the vLLM release played, or None when the stub is not playing vLLM."""
        return release(self.version) if self.owned_by == "vllm" else None


@dataclass
class RecordedRequest:
    """One request the stub received. `time` is `time.monotonic()` at arrival; `body` is None for GETs."""

    method: str
    path: str
    body: Any
    time: float
    headers: dict[str, str] = field(default_factory=dict)


_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "RequestTimeoutError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return Response(content=body, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, param: str | None = None) -> Response:
    payload = {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "APIError"),
            "param": param,
            "code": status,
        }
    }
    headers = {"Retry-After": "0"} if status == 429 else None
    return _json(payload, status, headers)


def _text_of(content: Any) -> str:
    """Text of a chat message's content: a string, or a list of parts of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _rendered_chat(messages: list[Any], *, generation_prompt: bool = True) -> str:
    """The stub's chat template: one ``role: content`` line a turn, then ``assistant:`` opening the reply."""
    text = "\n".join(f"{m.get('role', '')}: {_text_of(m.get('content'))}" for m in messages if isinstance(m, dict))
    return text + "\nassistant:" if generation_prompt else text


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


class OpenAIStub:
    """The stub's state and its FastAPI app (`app`). Requests are recorded in `requests`, in order of arrival."""

    def __init__(
        self,
        config: StubConfig | None = None,
        *,
        token_logprob: Callable[[str | None, str], float] = stub_token_logprob,
    ) -> None:
        self.config = config or StubConfig()
        self.token_logprob = token_logprob
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_seen_in_flight = 0
        self._generation_count = 0  # generation requests seen, for fail_first
        self._response_count = 0
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_key: tuple[int, int | None] | None = None
        self._lock = threading.Lock()
        self.app = self._build_app()

    # -- bookkeeping ------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget recorded requests, the peak concurrency and how many of `fail_first` were used."""
        with self._lock:
            self.requests = []
            self.max_seen_in_flight = self.in_flight
            self._generation_count = 0

    @property
    def generation_requests(self) -> list[RecordedRequest]:
        """Recorded chat and text completion requests."""
        return [r for r in self.requests if r.path in ("/v1/chat/completions", "/v1/completions")]

    async def _record(self, request: Request, *, with_body: bool = True) -> Any:
        body = None
        if with_body:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.url.path,
                body=body,
                time=time.monotonic(),
                headers=dict(request.headers),
            )
        )
        return body

    async def _begin_generation(self, request: Request) -> tuple[Any, str | None, Response | None]:
        """Record a completion request, then answer it with a scripted failure or a request error, if any."""
        body = await self._record(request)
        failure = self._take_failure()
        if failure is not None:
            return body, None, failure
        model, error = self._check_common(body)
        return body, model, error

    def _take_failure(self) -> Response | None:
        index = self._generation_count
        self._generation_count += 1
        fail_first = self.config.fail_first
        if index < len(fail_first):
            status = fail_first[index]
            return _error(status, f"stub failure {index + 1} of {len(fail_first)} (HTTP {status})")
        return None

    def _semaphore_for_loop(self) -> asyncio.Semaphore | None:
        limit = self.config.max_in_flight
        if limit is None:
            return None
        key = (id(asyncio.get_running_loop()), limit)
        if self._semaphore is None or self._semaphore_key != key:
            if self._semaphore is not None and self.in_flight and self._semaphore_key[0] == key[0]:
                return self._semaphore  # keep the old limit until the stub is idle
            self._semaphore = asyncio.Semaphore(limit)
            self._semaphore_key = key
        return self._semaphore

    @asynccontextmanager
    async def _admitted(self):
        """Hold a slot (when `max_in_flight` is set), count the request as in flight, and wait `delay_s`."""
        semaphore = self._semaphore_for_loop()
        if semaphore is not None:
            await semaphore.acquire()
        self.in_flight += 1
        if self.in_flight > self.max_seen_in_flight:
            self.max_seen_in_flight = self.in_flight
        try:
            if self.config.delay_s > 0:
                await asyncio.sleep(self.config.delay_s)
            yield
        finally:
            self.in_flight -= 1
            if semaphore is not None:
                semaphore.release()

    def _check_common(self, body: Any) -> tuple[str | None, Response | None]:
        """The model name and an error response, if the request is malformed or names an unknown model."""
        if not isinstance(body, dict):
            return None, _error(400, "the request body must be a JSON object")
        model = body.get("model")
        if model is None:
            model = self.config.models[0] if self.config.models else None
        if model not in self.config.models:
            return None, _error(404, f"The model `{model}` does not exist.", "model")
        if body.get("n", 1) != 1:
            return None, _error(400, "the stub supports only n=1", "n")
        if body.get("stream"):
            return None, _error(400, "the stub does not stream", "stream")
        return model, None

    def _next_id(self, prefix: str) -> str:
        self._response_count += 1
        return f"{prefix}-stub-{self._response_count}"

    # -- responses ----------------------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> StubTokenizer:
        return StubTokenizer(self.config.tokenizer)

    def _tool_choice_refusal(self, body: dict) -> Response | None:
        """vLLM's 400 for `tool_choice="auto"` on a server started without auto tool choice. Tools without a
        tool_choice mean "auto" (`check_tool_usage` in vllm/entrypoints/openai/chat_completion/protocol.py); the
        refusal itself is in vllm/entrypoints/openai/chat_completion/serving.py."""
        if self.config.vllm_release is None or self.config.enable_auto_tool_choice or not body.get("tools"):
            return None
        if body.get("tool_choice", "auto") != "auto":
            return None
        return _error(400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')

    def _chat(self, body: dict, model: str) -> Response:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        prompt_words = sum(_word_count(_text_of(m.get("content"))) for m in messages)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish_reason = "stop"
        logprobs = None

        tool = self._chosen_tool(body)
        schema = None if tool is not None else self._requested_schema(body)
        if tool is not None:
            function = tool.get("function") or {}
            parameters = function.get("parameters") or {"type": "object", "properties": {}}
            arguments = json.dumps(schema_instance(parameters))
            message["tool_calls"] = [
                {
                    "id": self._next_id("call"),
                    "type": "function",
                    "function": {"name": function.get("name", ""), "arguments": arguments},
                }
            ]
            finish_reason = "tool_calls"
            completion_words = _word_count(arguments)
        elif schema is not None:
            content = json.dumps(schema_instance(schema))
            message["content"] = content
            completion_words = _word_count(content)
        else:
            # vLLM's chat: a null or missing limit means the rest of the context (ChatCompletionRequest.max_tokens
            # defaults to None, vllm/entrypoints/openai/chat_completion/protocol.py); the stub's reply always fits.
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
            content, finish_reason = _truncate(self.config.reply, max_tokens)
            message["content"] = content
            completion_words = _word_count(content)
            if body.get("logprobs") and self.config.logprobs:
                # the reply follows the assistant turn's opening, as /tokenize renders the chat
                after = stub_tokenize(_rendered_chat(messages))[-1]
                top = int(body.get("top_logprobs") or 0)
                logprobs = {"content": self._content_logprobs(stub_tokenize(content), after, top)}

        payload = {
            "id": self._next_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": completion_words,
                "total_tokens": prompt_words + completion_words,
            },
        }
        return _json(payload)

    @staticmethod
    def _chosen_tool(body: dict) -> dict | None:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        choice = body.get("tool_choice")
        if not tools or choice == "none":
            return None
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            for tool in tools:
                if (tool.get("function") or {}).get("name") == name:
                    return tool
        return tools[0]

    def _requested_schema(self, body: dict) -> Any:
        """The JSON schema the reply must follow, or None for free text."""
        response_format = body.get("response_format")
        if isinstance(response_format, dict):
            kind = response_format.get("type")
            if kind == "json_schema":
                spec = response_format.get("json_schema") or {}
                return spec.get("schema") or {"type": "object"}
            if kind == "json_object":
                return _maybe_json(response_format.get("schema")) or {"type": "object"}
        played = self.config.vllm_release
        if played is None:
            return None  # vLLM's own fields mean nothing to other servers
        # vLLM accepts fields it does not know and ignores them with a warning (OpenAIBaseModel allows extras,
        # vllm/entrypoints/openai/protocol.py). `structured_outputs` arrived in 0.11
        # (StructuredOutputsParams, vllm/sampling_params.py); `guided_json` / `guided_choice` left in 0.12.
        structured = body.get("structured_outputs")
        if played >= (0, 11) and isinstance(structured, dict):
            if structured.get("json") is not None:
                return _maybe_json(structured["json"]) or {"type": "object"}
            if structured.get("choice"):
                return {"enum": list(structured["choice"])}
        if played < (0, 12):
            if body.get("guided_json") is not None:
                return _maybe_json(body["guided_json"]) or {"type": "object"}
            if body.get("guided_choice"):
                return {"enum": list(body["guided_choice"])}
        return None

    def _ranked(self, after: str | None, n: int) -> dict[str, float]:
        """The `n` most likely tokens of `StubConfig.vocabulary` after the token `after`, by `token_logprob`: the
        same numbers the prompt's own tokens get, so next-token and echo scores can be compared exactly."""
        ranked = {t: self.token_logprob(after, t) for t in self.config.vocabulary}
        return {t: ranked[t] for t in sorted(ranked, key=ranked.__getitem__, reverse=True)[:n]}

    def _content_logprobs(self, tokens: list[str], after: str | None, top: int) -> list[dict]:
        """Log-probabilities in the chat shape (`logprobs.content`), which llama.cpp's server uses for completions
        too (with token ids, completion_token_output::probs_vector_to_json): the first token's `top_logprobs` rank
        the vocabulary after `after`; each lists the token itself as well."""
        entries = []
        prev = after
        for n, tok in enumerate(tokens):
            logprob = self.token_logprob(prev, tok)
            entry: dict[str, Any] = {"token": tok, "logprob": logprob, "bytes": list(tok.encode())}
            ranked = (self._ranked(prev, top) if n == 0 else {}) | {tok: logprob}  # as the legacy shape's
            entry["top_logprobs"] = [
                {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked.items()
            ] if top > 0 else []
            if self.config.llamacpp:
                entry["id"] = stub_token_id(tok)
                for candidate in entry["top_logprobs"]:
                    candidate["id"] = stub_token_id(candidate["token"])
            entries.append(entry)
            prev = tok
        return entries

    def _completion(self, body: dict, model: str) -> Response:
        prompts = _prompts_of(body.get("prompt", ""))
        if prompts is None:
            return _error(400, "prompt must be a string, a list of token ids, or a list of either", "prompt")
        echo = bool(body.get("echo")) and self.config.logprobs
        if echo and self.config.llamacpp:
            # llama.cpp's oaicompat_completion_params_parse throws a runtime_error, which its server answers as a 500
            return _error(500, "Only no echo is supported")
        n_logprobs = body.get("logprobs")
        if n_logprobs is not None and int(n_logprobs) > self.config.max_logprobs:
            # vLLM's refusal (SamplingParams / the engine's input processor checks against --max-logprobs)
            return _error(
                400, f"Requested sample logprobs of {n_logprobs}, which is greater than max allowed: "
                f"{self.config.max_logprobs}", "logprobs",
            )  # fmt: skip
        # vLLM names tokens `token_id:<id>` when asked (CompletionRequest.return_tokens_as_token_ids)
        as_ids = bool(body.get("return_tokens_as_token_ids"))
        n_prompt_logprobs = body.get("prompt_logprobs")
        # A null or missing max_tokens is 16 on /v1/completions (CompletionRequest.max_tokens and its
        # normalize_null_max_tokens, vllm/entrypoints/openai/completion/protocol.py; OpenAI's default is 16 too).
        max_tokens = body.get("max_tokens")
        max_tokens = 16 if max_tokens is None else max_tokens
        schema = self._requested_schema(body)
        reply = self.config.reply if schema is None else json.dumps(schema_instance(schema))
        tokenizer = self.tokenizer
        # BOS goes in front of text prompts unless add_special_tokens is false (CompletionRequest); token-id
        # prompts are taken as they are.
        bos = [tokenizer.bos] if tokenizer.bos and body.get("add_special_tokens", True) else []
        choices = []
        prompt_tokens = completion_tokens = 0
        for index, prompt in enumerate(prompts):
            if isinstance(prompt, str):
                prompt_text = prompt
                pairs = [(token, 0) for token in bos] + tokenizer.tokens(prompt)
                prompt_toks = [token for token, _ in pairs]
                prompt_offsets = [offset for _, offset in pairs]
                prompt_ids = [stub_token_id(t) for t in prompt_toks]
            else:
                prompt_ids = prompt
                prompt_toks = [_decode_one(i) for i in prompt_ids]
                prompt_offsets = _offsets_of(prompt_toks)
                prompt_text = "".join(prompt_toks)
            generated, finish_reason = _truncate(reply, max_tokens)
            gen_pairs = StubTokenizer("whitespace").tokens(generated)
            gen_toks = [token for token, _ in gen_pairs]
            gen_offsets = [offset for _, offset in gen_pairs]
            text = prompt_text + generated if echo else generated
            prompt_tokens += len(prompt_ids)
            completion_tokens += len(gen_toks)

            choice: dict[str, Any] = {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
            if n_logprobs is not None and self.config.logprobs:
                toks: list[str] = []
                lps: list[float | None] = []
                offsets: list[int] = []
                prev = None
                if echo:
                    for i, tok in enumerate(prompt_toks):
                        lps.append(None if i == 0 else self.token_logprob(prev, tok))
                        prev = tok
                    toks += prompt_toks
                    offsets += prompt_offsets
                else:
                    prev = prompt_toks[-1] if prompt_toks else None
                base = len(prompt_text) if echo else 0
                for tok, offset in zip(gen_toks, gen_offsets):
                    lps.append(self.token_logprob(prev, tok))
                    prev = tok
                    toks.append(tok)
                    offsets.append(base + offset)
                after = prompt_toks[-1] if prompt_toks else None  # the next token after the prompt: ranked there
                if self.config.llamacpp:
                    choice["logprobs"] = {"content": self._content_logprobs(gen_toks, after, int(n_logprobs))}
                    choices.append(choice)
                    continue
                top = None
                if int(n_logprobs) > 0:
                    top = [None if lp is None else {tok: lp} for tok, lp in zip(toks, lps)]
                    first = len(toks) - len(gen_toks)
                    if gen_toks:
                        top[first] = self._ranked(after, int(n_logprobs)) | top[first]
                    if as_ids:
                        top = [None if t is None else {_id_name(k): v for k, v in t.items()} for t in top]
                choice["logprobs"] = {
                    "tokens": [_id_name(t) for t in toks] if as_ids else toks,
                    "token_logprobs": lps,
                    "top_logprobs": top,
                    "text_offset": offsets,
                }
            if n_prompt_logprobs is not None:
                entries: list[dict | None] = []
                prev = None
                for i, (tok, tok_id) in enumerate(zip(prompt_toks, prompt_ids)):
                    # vLLM ranks each prompt token in the whole vocabulary (vllm/v1/engine/logprobs.py); the stub has
                    # no distribution to rank against, so it says nothing (`Logprob.rank` may be None,
                    # vllm/logprobs.py) rather than a made-up rank.
                    if i == 0:
                        entries.append(None)
                    else:
                        entries.append(
                            {str(tok_id): {"logprob": self.token_logprob(prev, tok), "rank": None, "decoded_token": tok}}
                        )
                    prev = tok
                choice["prompt_logprobs"] = entries
            choices.append(choice)

        payload = {
            "id": self._next_id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return _json(payload)

    # -- the app ----------------------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="OpenAI stub", docs_url=None, redoc_url=None, openapi_url=None)
        stub = self

        @app.get("/health")
        async def health() -> Response:
            return Response(status_code=200)

        @app.get("/version")
        async def version(request: Request) -> Response:
            await stub._record(request, with_body=False)
            # vLLM's server answers {"version": vllm.__version__} (vllm/entrypoints/openai/api_server.py)
            if stub.config.vllm_release is None:
                return _error(404, "Not Found")
            return _json({"version": stub.config.version})

        @app.get("/v1/models")
        async def models(request: Request) -> Response:
            await stub._record(request, with_body=False)
            cfg = stub.config
            data = []
            for name in cfg.models:
                entry: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": cfg.owned_by}
                if cfg.owned_by == "vllm":
                    entry.update(root=name, parent=None, max_model_len=cfg.max_model_len)
                data.append(entry)
            return _json({"object": "list", "data": data})

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            body, model, error = await stub._begin_generation(request)
            if error is not None:
                return error
            if body.get("messages") is None:
                return _error(400, "messages is required", "messages")
            response_format = body.get("response_format")
            if (
                stub.config.reject_json_schema
                and isinstance(response_format, dict)
                and response_format.get("type") == "json_schema"
            ):
                return _error(
                    400,
                    "response_format type 'json_schema' is not supported by this server; "
                    "use response_format {'type': 'json_object'}",
                    "response_format",
                )
            refusal = stub._tool_choice_refusal(body)
            if refusal is not None:
                return refusal
            async with stub._admitted():
                return stub._chat(body, model)

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            body, model, error = await stub._begin_generation(request)
            if error is not None:
                return error
            async with stub._admitted():
                return stub._completion(body, model)

        @app.post("/tokenize")
        async def tokenize(request: Request) -> Response:
            body = await stub._record(request)
            if not isinstance(body, dict):
                return _error(400, "the request body must be a JSON object")
            # add_special_tokens defaults to true for text and false for messages, whose chat template already holds
            # the special tokens (TokenizeCompletionRequest / TokenizeChatRequest, vllm/entrypoints/openai/protocol.py)
            if stub.config.llamacpp:
                # llama.cpp's /tokenize: {"content", "add_special" (false)} -> {"tokens": ids} (tools/server)
                if not isinstance(body.get("content"), str):
                    return _error(400, "content must be a string", "content")
                ids = stub.tokenizer.encode(body["content"], add_special_tokens=bool(body.get("add_special", False)))
                return _json({"tokens": ids})
            if "messages" in body:
                special = body.get("add_special_tokens", False)
                opened = bool(body.get("add_generation_prompt"))
                text = _rendered_chat(body.get("messages") or [], generation_prompt=opened)
            else:
                special = body.get("add_special_tokens", True)
                text = body.get("prompt")
                if not isinstance(text, str):
                    return _error(400, "prompt must be a string", "prompt")
            ids = stub.tokenizer.encode(text, add_special_tokens=bool(special))
            return _json({"tokens": ids, "count": len(ids), "max_model_len": stub.config.max_model_len})

        @app.post("/detokenize")
        async def detokenize(request: Request) -> Response:
            body = await stub._record(request)
            tokens = body.get("tokens") if isinstance(body, dict) else None
            if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
                return _error(400, "tokens must be a list of token ids", "tokens")
            return _json({"prompt": stub.tokenizer.decode(tokens)})

        return app


def _id_name(token: str) -> str:
    """A token as vLLM names it under `return_tokens_as_token_ids`."""
    return f"token_id:{stub_token_id(token)}"


def _truncate(text: str, max_tokens: Any) -> tuple[str, str]:
    """`text` cut to `max_tokens` stub tokens, and the finish reason."""
    if max_tokens is None:
        return text, "stop"
    tokens = stub_tokenize(text)
    if len(tokens) <= max_tokens:
        return text, "stop"
    return "".join(tokens[: max(int(max_tokens), 0)]), "length"


def _offsets_of(tokens: list[str]) -> list[int]:
    offsets = []
    position = 0
    for tok in tokens:
        offsets.append(position)
        position += len(tok)
    return offsets


def _prompts_of(prompt: Any) -> list[str | list[int]] | None:
    """The prompts of a completion request: a string, token ids, or a batch of either."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        if not prompt:
            return [""]
        if all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            return [prompt]
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(p, list) and all(isinstance(i, int) for i in p) for p in prompt):
            return list(prompt)
    return None


@contextmanager
def run_stub(
    config: StubConfig | None = None,
    *,
    token_logprob: Callable[[str | None, str], float] = stub_token_logprob,
) -> Iterator[tuple[str, OpenAIStub]]:
    """Serve a fresh stub on 127.0.0.1; yields its base URL with ``/v1`` (for the OpenAI SDK) and the stub."""
    stub = OpenAIStub(config, token_logprob=token_logprob)
    with serve_in_thread(stub.app) as url:
        yield f"{url}/v1", stub
