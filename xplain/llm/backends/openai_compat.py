"""Any OpenAI-compatible server: `vllm serve`, OpenAI itself, llama.cpp's server.

Requests of a batch go out concurrently, at most `max_concurrency` in flight. Connection errors, 429 and 5xx are
retried with exponential backoff (honouring Retry-After); other refusals fail at once with the server's reason.

On a vLLM server (its /v1/models says `owned_by: vllm`) the backend reads the release from `GET /version`: from
0.11 on, JSON is constrained through `structured_outputs`; an older server would drop that field and answer
unconstrained, so there JSON goes the OpenAI way (`response_format`) and the backend says it is not constrained.
Scoring one-token continuations (a classifier's labels) asks for the next token's top log-probabilities, which
vLLM serves from its prefix cache; longer ones use `prompt_logprobs` on token ids. Elsewhere JSON goes through
`response_format`, and scoring reads one-token labels from the next token's top log-probabilities too where the
server shows they are one token (`_score_generic`), else `echo` + `logprobs`; a chat goes to /chat/completions
(`_score_chat`). A vLLM server started without `--enable-auto-tool-choice` refuses
`tool_choice="auto"`; the backend remembers that and reports
`native_tools = False`, so tools are picked through constrained JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import openai
from openai import AsyncOpenAI, DefaultAioHttpClient

from xplain.llm.backends.base import NEXT_TOKEN_TOP_LOGPROBS, Backend, RawCompletion, RawScores
from xplain.llm.backends.seams import continuation_start, merged_seam_prefixes
from xplain.llm.backends.vllm_release import STRUCTURED_OUTPUTS, release
from xplain.llm.types import (
    GenerationRequest,
    LLMError,
    LLMModelNotFoundError,
    LLMRequestError,
    LLMUnavailableError,
    Message,
    NativeToolsUnavailableError,
    ScoreRequest,
    ToolCall,
    ContextOverflow,
)
from xplain.prompts import load_prompt

logger = logging.getLogger(__name__)

#: vLLM's answer to `tool_choice="auto"` on a server started without it (chat_completion/serving.py).
_AUTO_TOOL_CHOICE_REFUSAL = "--enable-auto-tool-choice"
TOOL_FLAGS = "--enable-auto-tool-choice --tool-call-parser <parser>"
#: Words of refusals that some servers answer with a 500: llama-cpp-python's server reports request validation
#: errors so, and llama.cpp's server refuses `echo` so (oaicompat_completion_params_parse, server-common.cpp).
_REFUSALS_AS_500 = ("validation error", "only no echo is supported")
#: Continuations per scoring request; vLLM refuses more prompts than VLLM_MAX_COMPLETION_PROMPTS (1024 by default).
_PROMPTS_PER_REQUEST = 64


#: The raw HTTP client is the one openai ships (httpx2 from openai 3 on, httpx before): catch either's errors.
HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError,)
STATUS_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPStatusError,)
try:
    import httpx2

    HTTP_ERRORS += (httpx2.HTTPError,)
    STATUS_ERRORS += (httpx2.HTTPStatusError,)
except ImportError:  # pragma: no cover - an openai that still uses httpx
    pass


@dataclass
class ServerInfo:
    model: str
    flavor: Literal["vllm", "openai"]
    version: str | None = None  # vLLM's release, from GET /version
    context_size: int | None = None  # vLLM's /v1/models says `max_model_len`

    @property
    def structured_outputs(self) -> bool:
        """True when the server constrains JSON through vLLM's `structured_outputs`."""
        server = release(self.version)
        return self.flavor == "vllm" and server is not None and server >= STRUCTURED_OUTPUTS

    def describe(self) -> str:
        if self.flavor != "vllm":
            return "OpenAI-compatible"
        if self.structured_outputs:
            return f"vLLM {self.version}"
        why = (
            f"vLLM {self.version}: older than 0.11, which brought structured_outputs"
            if self.version
            else "vLLM of unknown release (no GET /version), maybe without structured_outputs"
        )
        return f"{why}; JSON is asked for with response_format and validated, not constrained (use vllm>=0.11)"


#: Words in a server's refusal that mean the prompt and reply do not fit the model's context.
CONTEXT_REFUSALS = ("context length", "context window", "maximum context", "exceed_context_size")


class OpenAIBackend(Backend):
    name = "openai"
    binds_event_loop = True  # its aiohttp session and semaphores
    scores_chats = True  # /chat/completions where the server has no chat template to lend; vLLM's renders one

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "EMPTY",
        model: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        retry_base_delay_s: float = 0.5,
        context_size: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._configured_context = context_size
        self._tokenize_missing = False
        self.max_concurrency = self.parallelism = max_concurrency
        self.max_retries = max_retries
        self.retry_base_delay_s = retry_base_delay_s
        self._requested_model = model
        # aiohttp under httpx's interface: httpcore's pool costs ~2 ms of CPU per request at 16 in flight, enough
        # to leave a fast server idle; aiohttp's is several times cheaper (bench/llm_concurrency.py).
        self._http = DefaultAioHttpClient(timeout=timeout_s)
        self._client = AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0, timeout=timeout_s, http_client=self._http
        )
        self._info: ServerInfo | None = None
        self._info_lock: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        #: "json_schema" until a server refuses it; then "json_object" with the schema in the prompt.
        self._json_mode: Literal["json_schema", "json_object"] = "json_schema"
        #: Whether the server picks tools itself (`tool_choice="auto"`): None until a vLLM server was asked.
        self._auto_tool_choice: bool | None = None
        #: Whether one-token continuations are scored from the next token's top log-probabilities (False once a
        #: server refused them or answered without them), and why not.
        self._next_token_logprobs = True
        self._no_next_token = ""
        #: Whether the server echoes the prompt's log-probabilities (False once it refused).
        self._echo = True

    @property
    def model(self) -> str:
        return self._info.model if self._info else (self._requested_model or "(unresolved)")

    @property
    def context_size(self) -> int | None:  # type: ignore[override]
        """The configured size, else what the server reported (known after the first request)."""
        return self._configured_context or (self._info.context_size if self._info else None)

    @property
    def constrains_json(self) -> bool:  # type: ignore[override]
        """Whether JSON replies are constrained: through structured_outputs on vLLM >= 0.11, through
        response_format json_schema elsewhere (until a server refuses it); False until the server has answered."""
        if self._info is None:
            return False
        if self._info.flavor == "vllm":
            return self._info.structured_outputs
        return self._json_mode == "json_schema"

    @property
    def native_tools(self) -> bool:  # type: ignore[override]
        return self._auto_tool_choice is not False

    # -- plumbing ---------------------------------------------------------------------------------------------

    async def _with_retries(self, call, what: str):
        """Run `call()` inside a concurrency slot, retrying transient failures with backoff."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                async with self._slots:
                    return await call()
            except (openai.APIConnectionError, openai.APITimeoutError) as error:
                last = error
            except openai.APIStatusError as error:
                transient = error.status_code == 429 or (
                    error.status_code >= 500 and not any(r in _describe(error).lower() for r in _REFUSALS_AS_500)
                )
                if transient:
                    last = error
                    retry_after = _retry_after(error.response)
                else:
                    raise self._refusal(error, what) from error
            if attempt < self.max_retries:
                delay = retry_after if retry_after is not None else self.retry_base_delay_s * 2**attempt
                await asyncio.sleep(delay * (1 + 0.1 * random.random()))
        raise LLMUnavailableError(
            f"{what} failed after {self.max_retries + 1} tries at {self.base_url} "
            f"(is the server running? XPLAIN_LLM_BASE_URL): {_describe(last)}"
        ) from last

    def _refusal(self, error: openai.APIStatusError, what: str) -> LLMError:
        message = _describe(error)
        if error.status_code == 404 and "model" in message.lower():
            return LLMModelNotFoundError(f"{what}: the server at {self.base_url} says: {message}")
        if any(words in message.lower() for words in CONTEXT_REFUSALS):
            return ContextOverflow(f"{what}: the input does not fit the model's context; the server says: {message}")
        return LLMRequestError(f"{what} refused by {self.base_url} (HTTP {error.status_code}): {message}")

    async def _server(self) -> ServerInfo:
        """Ask /models once: it proves the server answers, checks the model exists and tells vLLM apart."""
        if self._info is not None:
            return self._info
        if self._info_lock is None:
            self._info_lock = asyncio.Lock()
        async with self._info_lock:
            if self._info is None:
                self._info = await self._resolve()
        return self._info

    async def _resolve(self) -> ServerInfo:
        try:
            page = await self._with_retries(self._client.models.list, "listing models")
            models = {m.id: m for m in page.data}
        except LLMRequestError:
            models = {}  # a server without /models: trust the configured name
        if self._requested_model is None:
            if not models:
                raise LLMModelNotFoundError(
                    f"the server at {self.base_url} lists no models; set XPLAIN_LLM_MODEL to the model's name"
                )
            model = next(iter(models))
        else:
            model = self._requested_model
            if models and model not in models:
                raise LLMModelNotFoundError(
                    f"the server at {self.base_url} does not serve model {model!r}; it serves: "
                    f"{', '.join(sorted(models))} (set XPLAIN_LLM_MODEL)"
                )
        entry = models.get(model)
        context = getattr(entry, "max_model_len", None)
        context = context if isinstance(context, int) else None
        if getattr(entry, "owned_by", None) != "vllm":
            return ServerInfo(model=model, flavor="openai", context_size=context)
        info = ServerInfo(model=model, flavor="vllm", version=await self._vllm_version(), context_size=context)
        if not info.structured_outputs:
            logger.warning("the server at %s is %s", self.base_url, info.describe())
        return info

    async def _vllm_version(self) -> str | None:
        """vLLM's release from `GET /version` (at the server root), or None where it does not say."""

        async def call():
            response = await self._http.get(f"{self._root}/version")
            return response.json().get("version") if response.status_code == 200 else None

        try:
            return await self._with_retries(call, "reading the vLLM version")
        except (LLMError, *HTTP_ERRORS, ValueError, AttributeError):
            return None

    @property
    def _root(self) -> str:
        return self.base_url.removesuffix("/v1")

    async def check(self) -> str:
        """The server, its release, and (on vLLM, asked once) whether it picks tools itself."""
        info = await self._server()
        line = f"openai:{info.model} at {self.base_url} ({info.describe()})"
        if info.flavor == "vllm" and self._auto_tool_choice is None:
            await self._probe_tool_choice(info)
        if self._auto_tool_choice is False:
            line += f"; tools are picked through constrained JSON (start vLLM with {TOOL_FLAGS} for native tool calls)"
        return line

    async def _probe_tool_choice(self, info: ServerInfo) -> None:
        """Ask for `tool_choice="auto"` with one token: vLLM refuses it before generating if it can't."""
        tool = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}
        body = {"model": info.model, "max_tokens": 1, "temperature": 0.0, "tools": [tool], "tool_choice": "auto"}
        try:
            await self._chat([{"role": "user", "content": "ping"}], body)
        except LLMRequestError as error:
            if _AUTO_TOOL_CHOICE_REFUSAL in str(error):
                self._auto_tool_choice = False
            else:  # refused for another reason (the model's template?): the first real tool call will tell
                logger.warning("the tool-calling probe at %s was refused: %s", self.base_url, error)
        else:
            self._auto_tool_choice = True

    # -- generation -------------------------------------------------------------------------------------------

    async def generate(self, requests: list[GenerationRequest]) -> list[RawCompletion]:
        info = await self._server()
        return list(await asyncio.gather(*(self._generate_one(info, r) for r in requests)))

    async def _post(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        """POST a JSON body and return the JSON reply. Bodies are plain dicts (vLLM's extensions sit beside
        OpenAI's fields) and replies are read as dicts: the SDK's per-request typing costs more CPU than the
        rest of the request (bench/llm_concurrency.py)."""
        response = await self._with_retries(
            lambda: self._client.post(path, body=body, cast_to=httpx.Response), what
        )
        return response.json()

    async def _generate_one(self, info: ServerInfo, request: GenerationRequest) -> RawCompletion:
        body: dict[str, Any] = dict(model=info.model, temperature=request.temperature, top_p=request.top_p)
        # No null max_tokens: vLLM reads null as 16 tokens on /v1/completions and as the rest of the context on
        # chat. Without a limit of its own a request means the rest of the context, which chat gives by leaving
        # the field out and completions by the room the prompt leaves (vLLM); other servers keep their default.
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if request.prompt is not None:
            if request.json_schema is not None and info.structured_outputs:
                body["structured_outputs"] = {"json": request.json_schema}
            if request.max_tokens is None and info.flavor == "vllm":
                body["max_tokens"] = await self._room_left(info, request.prompt)
            out = await self._post("/completions", body | {"prompt": request.prompt}, "completion")
            choice = out["choices"][0]
            return RawCompletion(text=choice.get("text") or "", finish_reason=choice.get("finish_reason"), **_token_counts(out))

        if request.tools:
            body["tool_choice"] = request.tool_choice
            body["tools"] = [
                {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools
            ]
        messages = [_to_openai_message(m) for m in request.messages or []]
        if request.tools:
            out = await self._chat_with_tools(messages, body)
        elif request.json_schema is None:
            out = await self._chat(messages, body)
        elif info.structured_outputs:
            out = await self._chat(messages, body | {"structured_outputs": {"json": request.json_schema}})
        else:
            out = await self._chat_json(messages, body, request.json_schema)
        choice = out["choices"][0]
        message = choice.get("message") or {}
        tool_calls = [
            ToolCall(id=call["id"], name=call["function"]["name"], arguments=_parse_arguments(call["function"].get("arguments")))
            for call in (message.get("tool_calls") or [])
        ]
        return RawCompletion(
            text=message.get("content") or "",
            tool_calls=tool_calls,
            finish_reason=choice.get("finish_reason"),
            **_token_counts(out),
        )

    async def _chat(self, messages: list[dict], body: dict[str, Any]) -> dict[str, Any]:
        return await self._post("/chat/completions", body | {"messages": messages}, "chat completion")

    async def _chat_with_tools(self, messages: list[dict], body: dict[str, Any]) -> dict[str, Any]:
        """A native tool call; a vLLM server that refuses `tool_choice="auto"` is remembered as one."""
        try:
            out = await self._chat(messages, body)
        except LLMRequestError as error:
            if body.get("tool_choice") != "auto" or _AUTO_TOOL_CHOICE_REFUSAL not in str(error):
                raise
            if self._auto_tool_choice is not False:
                logger.warning(
                    "the server at %s does not pick tools itself; picking them through constrained JSON "
                    "(start vLLM with %s for native tool calls)", self.base_url, TOOL_FLAGS,
                )
            self._auto_tool_choice = False
            raise NativeToolsUnavailableError(
                f"{error} -- xplain picks tools through constrained JSON on this server instead"
            ) from error
        if body.get("tool_choice") == "auto":
            self._auto_tool_choice = True
        return out

    async def _room_left(self, info: ServerInfo, prompt: str) -> int:
        """Tokens the model's context has left after `prompt` (vLLM's /tokenize tells both)."""
        tokenized = await self._tokenize(info, prompt)
        room = int(tokenized["max_model_len"]) - int(tokenized["count"])
        if room < 1:
            raise LLMRequestError(
                f"the prompt's {tokenized['count']} tokens fill the model's context of {tokenized['max_model_len']}"
            )
        return room

    async def _chat_json(self, messages: list[dict], body: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
        """`response_format: json_schema`; if the server refuses that, `json_object` from then on."""
        if self._json_mode == "json_schema":
            response_format = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
            try:
                return await self._chat(messages, body | {"response_format": response_format})
            except LLMRequestError as error:
                if "response_format" not in str(error) and "json_schema" not in str(error):
                    raise
                self._json_mode = "json_object"
        instruction = load_prompt("llm/json_schema_instruction").render(schema=json.dumps(schema))
        messages = [{"role": "system", "content": instruction}, *messages]
        # `schema` inside json_object is an extension llama.cpp's server honours and others ignore.
        return await self._chat(messages, body | {"response_format": {"type": "json_object", "schema": schema}})

    # -- scoring ----------------------------------------------------------------------------------------------

    async def score(self, requests: list[ScoreRequest]) -> list[RawScores]:
        info = await self._server()
        return list(await asyncio.gather(*(self._score_one(info, r) for r in requests)))

    async def _score_one(self, info: ServerInfo, request: ScoreRequest) -> RawScores:
        if request.messages is not None:
            if info.flavor != "vllm":
                return await self._score_chat(info, request)
            prompt = await self.render_chat(request.messages)  # vLLM lends its chat template
            request = ScoreRequest(prompt=prompt, continuations=request.continuations)
        return await (self._score_vllm if info.flavor == "vllm" else self._score_generic)(info, request)

    async def _score_chat(self, info: ServerInfo, request: ScoreRequest) -> RawScores:
        """A chat's continuations as the first token of the assistant's reply, where the server applies its chat
        template itself and says nothing of it (OpenAI's chat models, which have no completions endpoint): one
        chat completion of one token with `logprobs` and the top `NEXT_TOKEN_TOP_LOGPROBS`, each continuation
        read from the top token whose text is exactly it (`chat_next_token`). That is that token's
        log-probability as the reply's first token, no more: a continuation the model would write as several
        tokens, or one outside the top ones, has no known log-probability here and fails the request with an
        error that names it; there is no echo on chat completions to fall back to."""
        messages = [_to_openai_message(m) for m in request.messages or []]
        body = {
            "model": info.model, "max_tokens": 1, "temperature": 0.0,
            "logprobs": True, "top_logprobs": NEXT_TOKEN_TOP_LOGPROBS,
        }  # fmt: skip
        out = await self._chat(messages, body)
        candidates = _next_token_candidates(out["choices"][0])
        if not candidates:
            raise LLMRequestError(
                f"the server at {self.base_url} returns no log-probabilities for chat completions (it ignores "
                "`logprobs`), so a chat classifier's labels cannot be scored there; use a server that returns them"
            )
        found = _read_labels(candidates, request.continuations, None)
        missing = [c for c, lp in zip(request.continuations, found) if lp is None]
        if missing:
            raise LLMRequestError(
                f"the server at {self.base_url} scores a chat's labels only as the reply's first token, and "
                f"{', '.join(map(repr, missing))} is not among its top {NEXT_TOKEN_TOP_LOGPROBS} tokens there (or "
                "is more than one token), so its log-probability is unknown. Use labels that are single common "
                "tokens the reply would start with ('yes' / 'no', 'positive' / 'negative'), or a completion "
                "template (no system turn) on a server that scores any continuation"
            )
        return RawScores(
            logprobs=[float(lp) for lp in found],  # type: ignore[arg-type]
            token_counts=[1] * len(found),
            prompt_tokens=_token_counts(out)["prompt_tokens"],
            scoring="chat_next_token",
        )

    async def _score_generic(self, info: ServerInfo, request: ScoreRequest) -> RawScores:
        """A server other than vLLM (llama.cpp's, OpenAI, Ollama, LM Studio...). Where every continuation is one
        token right after the prompt's own tokens, one completion of one token with the next token's top
        log-probabilities answers them all, a request that servers with a prompt cache (llama.cpp's) serve from
        it; otherwise, or where a continuation is not among the top ones, echo + logprobs, exactly.

        How a continuation is known to be one token:

        - `next_token`: the server's `/tokenize` (llama.cpp's) cuts prompt + continuation into the prompt's own
          tokens plus one; its id is looked up among the top ones. Exact: the same number echo would give.
        - `next_token_text`: no tokenizer says, so the evidence is a top token whose text equals the continuation
          exactly (one such token, no other with that text). Its log-probability is that token's after the
          prompt's tokens: exact where the server's tokenizer cuts prompt + continuation at the seam, which holds
          for a continuation that starts a word (" positive") after a prompt that does not end in whitespace on
          byte-level BPE and SentencePiece vocabularies alike. A prompt that ends in whitespace is never read this
          way: tokenizers fold that space into the continuation's first token, so the next token after it is not
          how the model reads the joined text.

        A continuation outside the top ones has no known log-probability; none is made up. Echo reads it where the
        server echoes; where it refuses (llama.cpp's server, OpenAI's chat models) the request fails with an
        error that names the continuation and what to do."""
        read = await self._read_next_token(info, request)
        if isinstance(read, RawScores):
            return read
        if self._echo:
            try:
                return await self._score_echo(info, request)
            except LLMRequestError as error:
                if "echo" not in str(error):
                    raise
                logger.warning("the server at %s refuses echo + logprobs: %s", self.base_url, error)
                self._echo = False
        why = "; ".join(f"{c!r}: {reason}" for c, reason in read.items())
        raise LLMRequestError(
            f"the server at {self.base_url} cannot score these labels: it does not echo prompt log-probabilities, "
            f"so a label is scored only as the next token's log-probability, and its log-probability is unknown "
            f"for {why}. Use labels that are single common tokens after the prompt (' yes' / ' no', ' positive' / "
            "' negative'; a prompt that does not end in a space), or a server that scores any continuation (vLLM)"
        )

    async def _read_next_token(self, info: ServerInfo, request: ScoreRequest) -> RawScores | dict[str, str]:
        """The continuations read from the next token's top log-probabilities (see `_score_generic`), or why the
        ones that could not be read were not, by continuation."""
        if not self._next_token_logprobs:
            return dict.fromkeys(request.continuations, self._no_next_token)
        label_ids = await self._one_token_ids(request)
        if label_ids is None and request.prompt[-1:].isspace():
            why = "the prompt ends in whitespace, which the label's first token would take"
            return dict.fromkeys(request.continuations, why)
        if label_ids is not None and None in label_ids:
            why = "not one token after the prompt's own tokens (longer, or merged with the prompt's end)"
            return {c: why for c, i in zip(request.continuations, label_ids) if i is None}
        reply = await self._next_token_top(info, request.prompt)
        if reply is not None and not reply[0]:  # it ignores `logprobs`: do not ask again
            self._next_token_logprobs = False
            self._no_next_token = "the server returns no top log-probabilities"
        if reply is None or not reply[0]:
            return dict.fromkeys(request.continuations, self._no_next_token)
        candidates, prompt_tokens = reply
        found = _read_labels(candidates, request.continuations, label_ids)
        if None in found:
            why = f"not among the next token's top {NEXT_TOKEN_TOP_LOGPROBS} log-probabilities"
            return {c: why for c, lp in zip(request.continuations, found) if lp is None}
        return RawScores(
            logprobs=[float(lp) for lp in found],  # type: ignore[arg-type]
            token_counts=[1] * len(found),
            prompt_tokens=prompt_tokens,
            scoring="next_token" if label_ids is not None else "next_token_text",
        )

    async def _one_token_ids(self, request: ScoreRequest) -> list[int | None] | None:
        """Per continuation, its one token's id where the server's `/tokenize` (llama.cpp's) cuts prompt +
        continuation into the prompt's tokens plus one (else None); None where the server has no `/tokenize`."""
        if self._tokenize_missing:
            return None
        texts = [request.prompt, *(request.prompt + c for c in request.continuations)]
        try:
            prompt_ids, *joints = await asyncio.gather(*(self._tokenize_llamacpp(t) for t in texts))
        except LLMRequestError:
            self._tokenize_missing = True
            return None
        n = len(prompt_ids)
        return [ids[n] if len(ids) == n + 1 and ids[:n] == prompt_ids else None for ids in joints]

    async def _next_token_top(
        self, info: ServerInfo, prompt: str | list[int]
    ) -> tuple[list[_Candidate], int] | None:
        """One completion of one token after `prompt` (text, or token ids on vLLM) with the next token's top
        `NEXT_TOKEN_TOP_LOGPROBS` log-probabilities: the candidates and the prompt's token count. None where the
        server refuses that many top log-probabilities (remembered: later requests go the other way at once)."""
        body: dict[str, Any] = {
            "model": info.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
            "logprobs": NEXT_TOKEN_TOP_LOGPROBS,
        }  # fmt: skip
        if info.flavor == "vllm":
            body["return_tokens_as_token_ids"] = True
        try:
            out = await self._post("/completions", body, "scoring")
        except LLMRequestError as error:
            if "logprobs" not in str(error):
                raise
            logger.warning("the server at %s refuses %d top log-probabilities (%s); scoring reads the labels back as "
                           "prompt instead, which prefix caches do not serve", self.base_url, NEXT_TOKEN_TOP_LOGPROBS,
                           error)  # fmt: skip
            self._next_token_logprobs = False
            self._no_next_token = "the server refuses top log-probabilities"
            return None
        return _next_token_candidates(out["choices"][0]), _token_counts(out)["prompt_tokens"]

    async def _score_echo(self, info: ServerInfo, request: ScoreRequest) -> RawScores:
        """Echo the prompt + continuation with per-token logprobs; keep the tokens that cover any of the
        continuation's characters (by text offset; one that straddles the seam counts with the continuation)."""

        async def one(continuation: str) -> tuple[float, int, int]:
            text = request.prompt + continuation
            body = {"model": info.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 0}
            out = await self._post("/completions", body, "scoring")
            logprobs = out["choices"][0].get("logprobs") or {}
            offsets = logprobs.get("text_offset")
            if not offsets:
                raise LLMRequestError(
                    f"the server at {self.base_url} returned no prompt log-probabilities (echo + logprobs); "
                    "scoring needs vLLM, llama.cpp's server or another completions server that supports echo"
                )
            ends = [*offsets[1:], len(text)]
            picked = [
                lp
                for offset, end, lp in zip(offsets, ends, logprobs["token_logprobs"])
                if offset < len(text) and end > len(request.prompt)
            ]
            if not picked or any(lp is None for lp in picked):
                raise LLMRequestError(f"no scorable tokens for continuation {continuation!r}")
            return float(sum(picked)), len(picked), _token_counts(out)["prompt_tokens"]

        triples = await asyncio.gather(*(one(c) for c in request.continuations))
        return RawScores(
            logprobs=[t[0] for t in triples],
            token_counts=[t[1] for t in triples],
            prompt_tokens=sum(t[2] for t in triples),
            scoring="echo",
        )

    async def _score_vllm(self, info: ServerInfo, request: ScoreRequest) -> RawScores:
        """Tokenize each prompt + continuation as one text (the continuation's tokens found by offset, see
        `seams`). Where every continuation is one token after the same prompt tokens, ask for that next token's
        log-probabilities (`_score_next_token`); otherwise send the texts as token ids, many to a request, and
        read vLLM's `prompt_logprobs` there.

        vLLM skips prefix-cache reads for requests that ask for prompt_logprobs, so there the shared prompt is
        computed once per continuation whatever the request shape; `prompt_tokens` reports that cost."""
        prompt_ids = (await self._tokenize(info, request.prompt))["tokens"]
        texts = [request.prompt + c for c in request.continuations]
        joints = [t["tokens"] for t in await asyncio.gather(*(self._tokenize(info, text) for text in texts))]
        starts = await asyncio.gather(*(self._continuation_start(info, prompt_ids, ids) for ids in joints))
        heads = {tuple(ids[:start]) for ids, start in zip(joints, starts)}
        if self._next_token_logprobs and len(heads) == 1 and all(len(ids) == s + 1 for ids, s in zip(joints, starts)):
            scored = await self._score_next_token(info, list(heads.pop()), [ids[-1] for ids in joints])
            if scored is not None:
                return scored
        chunks = [joints[i : i + _PROMPTS_PER_REQUEST] for i in range(0, len(joints), _PROMPTS_PER_REQUEST)]
        body = {"model": info.model, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
        outs = await asyncio.gather(*(self._post("/completions", body | {"prompt": c}, "scoring") for c in chunks))
        choices = [choice for out in outs for choice in sorted(out["choices"], key=lambda c: c.get("index", 0))]
        logprobs: list[float] = []
        for continuation, ids, start, choice in zip(request.continuations, joints, starts, choices):
            rows = choice.get("prompt_logprobs")
            if not rows:
                raise LLMRequestError(f"the vLLM server at {self.base_url} returned no prompt_logprobs")
            if not 0 < start < len(ids):
                raise LLMRequestError(f"no scorable tokens for continuation {continuation!r}")
            logprobs.append(sum(float(rows[p][str(ids[p])]["logprob"]) for p in range(start, len(ids))))
        return RawScores(
            logprobs=logprobs,
            token_counts=[len(ids) - start for ids, start in zip(joints, starts)],
            prompt_tokens=sum(_token_counts(out)["prompt_tokens"] for out in outs),
            scoring="prompt_logprobs",
        )

    async def _score_next_token(self, info: ServerInfo, head: list[int], label_ids: list[int]) -> RawScores | None:
        """One-token continuations after the same prompt tokens `head`: one completion of one token with the
        next token's `top_logprobs`, which vLLM computes from the prefix cache. None when a continuation is not
        among the top ones (its log-probability is then unknown) or the server refuses top log-probabilities;
        the caller then reads prompt log-probabilities instead."""
        reply = await self._next_token_top(info, head)
        if reply is None:
            return None
        candidates, prompt_tokens = reply
        found = _read_labels(candidates, [""] * len(label_ids), label_ids)
        if None in found:
            return None
        return RawScores(
            logprobs=[float(lp) for lp in found],  # type: ignore[arg-type]
            token_counts=[1] * len(label_ids),
            prompt_tokens=prompt_tokens,
            scoring="next_token",
        )

    async def render_chat(self, messages: list[Message]) -> str:
        """On vLLM: its /tokenize of the chat (the model's own template, assistant's turn opened), read back as
        text by /detokenize, less the BOS that tokenizing a text prompt adds again. Other servers do not say."""
        info = await self._server()
        if info.flavor != "vllm":
            return await super().render_chat(messages)
        body = {
            "model": info.model, "messages": [_to_openai_message(m) for m in messages],
            "add_generation_prompt": True, "add_special_tokens": False,
        }  # fmt: skip
        ids = (await self._vllm_call("/tokenize", body, "rendering the chat template"))["tokens"]
        bos = (await self._tokenize(info, ""))["tokens"][:1]  # what a text prompt's tokenization puts in front
        if bos and ids[:1] == bos:
            ids = ids[1:]
        return await self._detokenize(info, ids)

    async def _continuation_start(self, info: ServerInfo, prompt_ids: list[int], joint_ids: list[int]) -> int:
        prefixes = merged_seam_prefixes(prompt_ids, joint_ids)
        texts = await asyncio.gather(*(self._detokenize(info, ids) for ids in prefixes))
        lengths = {tuple(ids): len(text) for ids, text in zip(prefixes, texts)}
        return continuation_start(prompt_ids, joint_ids, lambda ids: lengths[tuple(ids)])

    async def count_tokens(self, texts: list[str]) -> list[int]:
        """Exact counts from the server's /tokenize (vLLM and llama.cpp's server have one), else the estimate."""
        info = await self._server()
        if self._tokenize_missing:
            return await super().count_tokens(texts)
        try:
            if info.flavor == "vllm":
                found = await asyncio.gather(*(self._tokenize(info, t) for t in texts))
                return [len(tokens["tokens"]) for tokens in found]
            return [len(ids) for ids in await asyncio.gather(*(self._tokenize_llamacpp(t) for t in texts))]
        except LLMRequestError:
            self._tokenize_missing = True  # the server has no /tokenize: estimate from now on
            return await super().count_tokens(texts)

    async def _tokenize_llamacpp(self, text: str) -> list[int]:
        """Token ids of `text` from llama.cpp's `/tokenize` (without BOS, as its default says)."""
        root = self._root

        async def call():
            response = await self._http.post(f"{root}/tokenize", json={"content": text})
            response.raise_for_status()
            tokens = response.json()["tokens"]
            if not all(isinstance(t, int) for t in tokens):
                raise TypeError("tokens are not ids")
            return tokens

        try:
            return await self._with_retries(call, "tokenizing")
        except (*STATUS_ERRORS, KeyError, TypeError, ValueError) as error:
            raise LLMRequestError(f"the server at {root} has no usable /tokenize: {type(error).__name__}") from error
        except HTTP_ERRORS as error:
            raise LLMUnavailableError(f"tokenizing at {root} failed: {type(error).__name__}") from error

    async def _vllm_call(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        """POST to one of vLLM's own routes at the server root (/tokenize, /detokenize)."""

        async def call():
            response = await self._http.post(f"{self._root}{path}", json=body)
            response.raise_for_status()
            return response.json()

        try:
            return await self._with_retries(call, what)
        except HTTP_ERRORS as error:
            raise LLMRequestError(f"the vLLM server at {self._root} refused {path}: {error}") from error

    async def _tokenize(self, info: ServerInfo, text: str) -> dict[str, Any]:
        """vLLM's /tokenize of `text` as a completion prompt (BOS included): tokens, count, max_model_len."""
        body = {"model": info.model, "prompt": text, "add_special_tokens": True}
        return await self._vllm_call("/tokenize", body, "tokenizing")

    async def _detokenize(self, info: ServerInfo, ids: list[int]) -> str:
        return (await self._vllm_call("/detokenize", {"model": info.model, "tokens": ids}, "detokenizing"))["prompt"]

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()


def _to_openai_message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name and message.role == "tool":
        out["name"] = message.name
    return out


def _parse_arguments(text: str | None) -> dict[str, Any]:
    """Tool arguments as a dict; text that is not a JSON object is kept under `_raw` for the agent to reject."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


@dataclass(frozen=True)
class _Candidate:
    """One of the next token's top log-probabilities: its text, log-probability and id (where the server says)."""

    text: str
    logprob: float
    id: int | None = None


def _next_token_candidates(choice: dict[str, Any]) -> list[_Candidate]:
    """The first generated token's top log-probabilities, in either shape servers answer: the chat shape
    (`logprobs.content[0].top_logprobs`, a list; llama.cpp's server answers /completions so too, with ids) or the
    legacy completions shape (`logprobs.top_logprobs[0]`, text -> log-probability; vLLM names a token
    `token_id:<id>` under `return_tokens_as_token_ids`)."""
    logprobs = choice.get("logprobs") or {}
    content = logprobs.get("content")
    if content:
        return [
            _Candidate(str(c.get("token", "")), float(c["logprob"]), c["id"] if isinstance(c.get("id"), int) else None)
            for c in content[0].get("top_logprobs") or []
        ]
    tops = (logprobs.get("top_logprobs") or [None])[0] or {}
    out = []
    for token, logprob in tops.items():
        named = token.removeprefix("token_id:")
        is_id = named != token and named.lstrip("-").isdigit()
        out.append(_Candidate("" if is_id else token, float(logprob), int(named) if is_id else None))
    return out


def _read_labels(
    candidates: list[_Candidate], labels: list[str], label_ids: list[int | None] | None
) -> list[float | None]:
    """Each label's log-probability among the candidates: by token id where the label's id is known and the
    server names ids, else by a candidate whose text equals the label exactly (only when exactly one does). None
    for a label found neither way: its log-probability is unknown, not small."""
    by_id = {c.id: c.logprob for c in candidates if c.id is not None}
    found: list[float | None] = []
    for n, label in enumerate(labels):
        token_id = label_ids[n] if label_ids is not None else None
        if token_id is not None and by_id:
            found.append(by_id.get(token_id))
            continue
        same = [c.logprob for c in candidates if c.text == label and label]
        found.append(same[0] if len(same) == 1 else None)
    return found


def _token_counts(out: dict[str, Any]) -> dict[str, int]:
    usage = out.get("usage") or {}
    return {"prompt_tokens": usage.get("prompt_tokens") or 0, "completion_tokens": usage.get("completion_tokens") or 0}


def _retry_after(response: httpx.Response | None) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _describe(error: Exception | None) -> str:
    if isinstance(error, openai.APIStatusError):
        body = error.body
        if isinstance(body, dict):
            inner = body.get("error", body)
            if isinstance(inner, dict) and inner.get("message"):
                return str(inner["message"])
            if "detail" in body:
                return json.dumps(body["detail"])[:500]
        return str(error.message)
    return f"{type(error).__name__}: {error}"
