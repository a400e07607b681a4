"""llama.cpp driven through its C API (llama-cpp-python's `llama_cpp` ctypes bindings): one model, a few contexts
side by side, many sequences in each.

`LlamaEngine` loads the model once and runs `workers` llama.cpp contexts on it, each owned by a thread of its own
(a context is not thread-safe; ctypes lets go of the GIL inside `llama_decode`, so the threads compute in parallel).
Callers hand it work through `submit_score` / `submit_generation` and get `concurrent.futures.Future`s back; scoring
batches are split across the workers, and each generation goes to the least busy one.

Why one single-threaded context per core rather than one context on every core: ggml's threads meet at a barrier
after each of the ~1,000 graph nodes of a decode. With OpenMP's passive waiting each barrier is a sleep and a
wake-up, which makes a 16-token decode on 2 threads slower than on 1 (measured on 2 cores: 183 vs 234 tokens/s);
with spinning it is fast on an idle machine but collapses once another process wants the cores (single-token decodes
at 0-2 tokens/s, measured with two processes on 2 cores). A one-thread context has no barriers: two side by side
decode 16-token batches at 442 tokens/s on 2 cores, 1.9x one context, and share the cores fairly when they are busy.
When only one worker has work, its wide decodes (a long prompt) take every thread, where barriers cost little.

In each context:
- Scoring computes logits only where they are read: each continuation is its own sequence, the tokens that
  continuations share (a prompt, a template, a text up to its first edit) are decoded once as one prefix tree (one
  token may belong to several sequences in a `llama_batch`), and logits are asked for only at the positions that
  predict a continuation token. Many requests go into one `llama_decode` call. Each round lays its tokens out in the
  cells they would take alone (modulo the kernels' SIMD lane groups, `_ScoreTree`), on a cache that is empty but
  for the round before's lead (what all its continuations shared, a template's head, still in cells 0, 1, ... and
  not decoded again where this round begins the same way), so a request's scores are the same bits alone, in a
  batch of 32, or anywhere in a round.
- Generation runs one sequence of a context at a time, in cells 0, 1, ... as alone, so that a reply is the same
  bits whatever else is queued (`_Worker._admit`); each has its own sampler chain (grammar, top-p, temperature,
  seed), and a slot keeps its tokens' cache after it finishes, for the next prompt that begins the same way
  (`llama_memory_seq_rm` of the rest). With `batch_generation`, up to `n_slots` sequences decode together, one
  `llama_decode` per step, a finished one freeing its slot for the next queued request, and a new prompt may copy
  the longest prefix any slot holds (`llama_memory_seq_cp` from a busy slot).
- A decode of one token gets a filler token beside it (`_Worker._decode`): llama.cpp's CPU attention takes another
  kernel for one token than for two or more.

Memory: each context's KV cache is one unified pool of `n_ctx` cells shared by all its sequences, so it stays bounded
whatever the number of slots. One cell holds a token's keys and values for every layer: n_layer x 2 x n_head_kv x
head_dim x 2 bytes (f16), 22.5 KiB for SmolLM2-135M (30 x 2 x 3 x 64 x 2), so 180 MiB per worker at its trained
8192-token context (360 MiB for the two workers of a 2-core machine); the weights are loaded once. A request may use
a whole pool (its prompt plus its completion up to `n_ctx` tokens); requests are admitted while their prompt plus
`max_tokens` fits in the free cells (idle slots' cached prefixes are dropped first).
"""

from __future__ import annotations

import ctypes
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xplain.llm.backends.base import RawCompletion, RawScores
from xplain.llm.types import GenerationRequest, LLMError, LLMRequestError, LLMUnavailableError, ScoreRequest

# llama.cpp expands a bounded repetition into nested rules and aborts the process (a segfault, not an
# exception) when a bound is too large, e.g. maxLength 2000. Tighter bounds still yield schema-valid replies.
GRAMMAR_BOUNDS = {"maxLength": 1000, "maxItems": 100, "maxProperties": 100}
# What llama-cpp-python's `create_completion` adds to top-p when sampling with a temperature; kept so replies keep
# their character.
TOP_K, MIN_P = 40, 0.05
# Cells one scoring round may fill. Attention runs over every cell in use (the unified cache masks, it does not
# skip), so packing many requests into one decode costs attention in proportion to all of them, while too few tokens
# leave the matrix products narrow. Measured on 2 cores (64 zero_shot reviews): 128 cells 8.5 reviews/s, 256 9.6,
# 512 9.2, 1024 9.0.
SCORE_ROUND_CELLS = 256
# The most tokens one `llama_decode` call takes. A long prompt is read in pieces, so that a request its caller gave
# up on stops within one piece (about a second on one thread), and sequences already generating keep moving while
# a long prompt is read (chunked prefill); pieces this size cost no more per token than whole prompts.
DECODE_CHUNK_TOKENS = 256
# A decode at least this wide runs on every thread of the engine while the other workers are idle, so one long
# prompt still uses the whole machine (on 2 cores, 2 threads: 340 tokens/s at 64 tokens, 421 at 256; 1 thread: 252
# and 261), while workers that are all busy keep to one thread each and never wait on a barrier.
WIDE_DECODE_TOKENS = 64
# Cells the generating sequences of one worker may reserve together (prompt and `max_tokens` each, shared prefixes
# counted once); a request that would pass it waits for one to finish, but one always runs. Attention reads every cell
# in use at every step, so many long sequences decoding together cost more per token than a few. Measured on 2 cores
# shared with other work (load 5-10, so noisy): 16 posthoc prompts of ~280 tokens ran at 0.058 and 0.134 requests/s
# with 8 sequences a worker, 0.119 with 2, 0.135 with 1, and 0.161 under this bound; short prompts (zero_shot's)
# still run 8 a worker.
GENERATION_CELLS = 1024
# A prompt that shares at least this many more tokens with a prompt still being evaluated waits one step for it,
# then copies its cache instead of evaluating the same prefix twice.
PREFIX_WAIT_TOKENS = 16


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


@dataclass
class _ScorePlan:
    """One request's tokens: per continuation, the tokens decoded for it (context and continuation but its last
    token), and at which positions whose logits to read which target token."""

    sequences: list[list[int]]
    reads: list[dict[int, int]]  # per continuation: position -> the token its logits must predict
    token_counts: list[int]
    prompt_tokens: int


@dataclass
class _Generation:
    request: GenerationRequest
    future: Future
    prompt: list[int] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    max_tokens: int = 0
    sampler: Any = None
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)


@dataclass
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # whose keys/values are in the cache on this sequence
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    job: _Generation | None = None

    def reserved(self) -> int:
        """Cells this slot holds or may still take."""
        if self.job is None:
            return len(self.tokens)
        return len(self.tokens) + len(self.pending) + self.job.max_tokens - len(self.job.generated)


class LlamaModel:
    """The weights, vocabulary and chat template: loaded once, then only read, by every worker's thread."""

    def __init__(self, model_path: Path) -> None:
        import llama_cpp

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's load log goes to this logger
        self.lib = llama_cpp
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(
            str(model_path).encode(), llama_cpp.llama_model_default_params()
        )
        if not self.model:
            raise LLMUnavailableError(f"llama.cpp could not load the GGUF at {model_path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(self.model)
        self.bos = llama_cpp.llama_vocab_bos(self.vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self._piece_lengths: dict[int, int] = {}
        self.chat = self._chat_formatter()

    def _chat_formatter(self):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._meta("tokenizer.chat_template") or CHATML_TEMPLATE
        eos = self.lib.llama_vocab_eos(self.vocab)
        return Jinja2ChatFormatter(
            template=template,
            eos_token=self.token_text(eos) if eos >= 0 else "",
            bos_token=self.token_text(self.bos) if self.bos >= 0 else "",
        )

    def _meta(self, key: str) -> str | None:
        size = self.lib.llama_model_meta_val_str(self.model, key.encode(), None, 0)
        if size < 0:
            return None
        buffer = ctypes.create_string_buffer(size + 1)
        self.lib.llama_model_meta_val_str(self.model, key.encode(), buffer, size + 1)
        return buffer.value.decode("utf-8", "replace")

    def close(self) -> None:
        self.lib.llama_model_free(self.model)

    # -- tokens ------------------------------------------------------------------------------------------------

    def tokenize(self, text: str, *, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 8
        buffer = (self.lib.llama_token * size)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buffer, size, False, parse_special)
        if n < 0:
            buffer = (self.lib.llama_token * -n)()
            n = self.lib.llama_tokenize(self.vocab, data, len(data), buffer, -n, False, parse_special)
        return list(buffer[:n])

    def piece(self, token: int, *, special: bool) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = self.lib.llama_token_to_piece(self.vocab, token, buffer, 64, 0, special)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buffer, -n, 0, special)
        return buffer.raw[:n]

    def piece_length(self, token: int) -> int:
        """Bytes of text the token stands for (special tokens as written), remembered per token."""
        length = self._piece_lengths.get(token)
        if length is None:
            length = self._piece_lengths[token] = len(self.piece(token, special=True))
        return length

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", "replace")

    def plan_score(self, request: ScoreRequest, n_ctx: int) -> _ScorePlan:
        """Tokenize prompt + continuation together and find the continuation's tokens by byte offset.

        The continuation starts at the first token that ends past the prompt's text (a token that straddles the
        seam counts as the continuation's, as when the model would have produced it). Logits at position p
        predict token p + 1, so a continuation's first token is read from the prompt's last position and its
        last token needs no decoding at all. A model that adds BOS gets it; a context that would otherwise be empty
        gets it too, as something to predict the first token from.
        """
        boundary = len(request.prompt.encode("utf-8"))
        contexts, targets = [], []
        for continuation in request.continuations:
            tokens = self.tokenize(request.prompt + continuation)
            ends = np.cumsum([self.piece_length(t) for t in tokens])
            shift = int(ends[-1]) - boundary - len(continuation.encode("utf-8"))  # e.g. an added leading space
            split = int(np.searchsorted(ends, boundary + shift, side="right"))
            contexts.append(tokens[:split])
            targets.append(tokens[split:])
        lead = [self.bos] if (self.add_bos or not all(contexts)) and self.bos >= 0 else []
        if not lead and not all(contexts):
            raise LLMRequestError(f"cannot score {request.prompt!r}: the model has no BOS token to start from")
        contexts = [lead + c for c in contexts]
        total = max(len(c) + len(t) - 1 for c, t in zip(contexts, targets))
        if total > n_ctx:
            raise LLMRequestError(
                f"prompt + continuation is {total} tokens, over the context size {n_ctx} "
                "(XPLAIN_LLM_CONTEXT_SIZE): shorten the prompt"
            )
        return _ScorePlan(
            sequences=[(c + t)[:-1] for c, t in zip(contexts, targets)],  # nothing reads what the last one predicts
            reads=[{len(c) - 1 + k: token for k, token in enumerate(t)} for c, t in zip(contexts, targets)],
            token_counts=[len(t) for t in targets],
            prompt_tokens=max(len(c) for c in contexts),
        )

    def sampler(self, request: GenerationRequest, *, grammar_first: bool = False) -> Sampler:
        """The request's sampler: its JSON grammar (if any), then greedy or top-k / top-p / min-p / temperature."""
        lib = self.lib
        grammar = None
        if request.json_schema is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            gbnf = json_schema_to_gbnf(json.dumps(grammar_safe(request.json_schema)))
            grammar = lib.llama_sampler_init_grammar(self.vocab, gbnf.encode(), b"root")
            if not grammar:
                raise LLMRequestError("llama.cpp could not compile the JSON schema's grammar")
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if grammar is not None and (grammar_first or request.temperature > 0):
            lib.llama_sampler_chain_add(chain, grammar)  # applied to every token of the vocabulary
            grammar = None
        if request.temperature == 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            seed = lib.LLAMA_DEFAULT_SEED if request.seed is None else request.seed & 0xFFFFFFFF
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(TOP_K))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(request.top_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(MIN_P, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(request.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return Sampler(self, chain, grammar)


#: llama.cpp's `llama_token_data`, as a numpy record, so a whole vocabulary's candidates are filled at once.
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class Sampler:
    """A request's sampler chain, and for greedy decoding under a JSON grammar the grammar apart from it.

    Applying a grammar to every token of the vocabulary costs about 18 ms a step on this model (measured on 2 cores,
    the posthoc answer schema), 40 times the step's other sampling work. Greedy decoding therefore takes the most
    likely token and asks the grammar about that one token; only when the grammar refuses it is the grammar applied
    to the whole vocabulary (llama.cpp's own `common_sampler` does the same). The token is the one grammar-first
    decoding picks: the most likely token the grammar allows."""

    def __init__(self, model: LlamaModel, chain: Any, grammar: Any = None) -> None:
        self.model, self.chain, self.grammar = model, chain, grammar

    def sample(self, ctx: Any, index: int) -> int:
        lib = self.model.lib
        if self.grammar is None:
            return lib.llama_sampler_sample(self.chain, ctx, index)
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, index), shape=(self.model.n_vocab,))
        token = int(np.argmax(logits))
        if not self._allows(np.array([(token, logits[token], 0.0)], dtype=TOKEN_DATA)).any():
            candidates = np.zeros(self.model.n_vocab, dtype=TOKEN_DATA)
            candidates["id"] = np.arange(self.model.n_vocab)
            candidates["logit"] = logits
            token = int(np.argmax(np.where(self._allows(candidates), candidates["logit"], -np.inf)))
        lib.llama_sampler_accept(self.grammar, token)
        lib.llama_sampler_accept(self.chain, token)
        return token

    def _allows(self, candidates: np.ndarray) -> np.ndarray:
        """Which candidates the grammar accepts next (it sets the others' logits to -inf, in place)."""
        lib = self.model.lib
        view = lib.llama_token_data_array(
            data=candidates.ctypes.data_as(ctypes.POINTER(lib.llama_token_data)),
            size=len(candidates),
            selected=-1,
            sorted=False,
        )
        lib.llama_sampler_apply(self.grammar, ctypes.byref(view))
        return np.isfinite(candidates["logit"])

    def free(self) -> None:
        self.model.lib.llama_sampler_free(self.chain)
        if self.grammar is not None:
            self.model.lib.llama_sampler_free(self.grammar)


class LlamaEngine:
    """One model, `workers` contexts decoding side by side, and the dispatch of work between them."""

    def __init__(
        self,
        model_path: Path,
        *,
        context_size: int | None,
        n_slots: int,
        workers: int,
        threads: int,
        prefix_tree: bool = True,
        grammar_first: bool = False,
        generation_cells: int = GENERATION_CELLS,
        batch_generation: bool = False,
    ):
        """`context_size` None: the length the GGUF was trained for. `n_slots` generation sequences in all, shared
        out among the workers; `threads` llama.cpp threads per worker (a wide decode takes all of theirs while the
        others are idle). `prefix_tree` False: score requests flat, sharing only what all of a call's requests share
        (what the engine did before; kept to measure the tree against, `bench/llm_blackbox.py`). `grammar_first` True:
        greedy decoding applies a JSON grammar to the whole vocabulary every step (what it did before `Sampler`'s
        check of the chosen token; kept to measure against, `bench/posthoc_job.py`). `generation_cells` 0 admits
        generations while any slot and cell is free (what it did before `GENERATION_CELLS`). `batch_generation` True:
        up to `n_slots` sequences of a worker generate together (faster, but a reply then depends on what generates
        beside it; see `_Worker._admit`)."""
        self.model_path = model_path
        self.n_ctx = context_size or 0
        self.n_slots = n_slots
        self._model: Future = Future()
        self._loads = [0] * workers  # requests handed to each worker and not yet settled
        self._lock = threading.Lock()
        per_worker = -(-n_slots // workers)
        self._workers = [
            _Worker(
                self._model,
                context_size=context_size,
                n_slots=per_worker,
                threads=threads,
                wide_threads=threads * workers,
                prefix_tree=prefix_tree,
                grammar_first=grammar_first,
                generation_cells=generation_cells,
                batch_generation=batch_generation,
            )
            for _ in range(workers)
        ]
        for index, worker in enumerate(self._workers):
            worker.others_idle = lambda index=index: not any(n for j, n in enumerate(self._loads) if j != index)
        self._ready = _gather([w.ready for w in self._workers], combine=lambda _: None)
        self._ready.add_done_callback(self._loaded)
        threading.Thread(target=self._load, name="llamacpp-load", daemon=True).start()

    def _load(self) -> None:
        try:
            _settle(self._model, result=LlamaModel(self.model_path))
        except BaseException as error:  # noqa: BLE001 - handed to every worker and caller
            _settle(self._model, error=error if isinstance(error, LLMError) else LLMUnavailableError(str(error)))

    def _loaded(self, ready: Future) -> None:
        if not ready.exception():
            self.n_ctx = self._workers[0].n_ctx

    @property
    def workers(self) -> int:
        return len(self._workers)

    @property
    def decode_calls(self) -> int:
        """`llama_decode` calls so far, over all workers: what batching saves shows here."""
        return sum(w.decode_calls for w in self._workers)

    @property
    def decoded_tokens(self) -> int:
        """Tokens decoded so far, over all workers: what prefix sharing saves shows here."""
        return sum(w.decoded_tokens for w in self._workers)

    @property
    def padding_tokens(self) -> int:
        """Filler tokens decoded so far to keep scoring tokens in their aligned cells (part of `decoded_tokens`)."""
        return sum(w.padding_tokens for w in self._workers)

    @property
    def reused_tokens(self) -> int:
        """Tokens a scoring round found in the cache, left by the round before, instead of decoding them again."""
        return sum(w.reused_tokens for w in self._workers)

    def wait_ready(self) -> Future:
        """Resolves once the model is loaded and every context made (or fails with why they could not be)."""
        return self._ready

    def tokenize(self, text: str) -> list[int]:
        return self._model.result().tokenize(text)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The prompt the GGUF's chat template makes of `messages`, as generation renders it."""
        return self._model.result().chat(messages=messages).prompt

    def _assign(self, weight: int) -> int:
        with self._lock:
            index = min(range(len(self._workers)), key=self._loads.__getitem__)
            self._loads[index] += weight
        return index

    def _track(self, index: int, weight: int, future: Future) -> Future:
        def settled(_: Future) -> None:
            with self._lock:
                self._loads[index] -= weight

        future.add_done_callback(settled)
        return future

    def submit_score(self, requests: list[ScoreRequest]) -> Future:
        """Split over the workers in contiguous runs (neighbours tend to share a prefix); one future for all."""
        size = -(-len(requests) // len(self._workers))
        parts = []
        for begin in range(0, len(requests), size):
            chunk = requests[begin : begin + size]
            index = self._assign(len(chunk))
            parts.append(self._track(index, len(chunk), self._workers[index].submit("score", chunk)))
        return _gather(parts, combine=lambda results: [score for part in results for score in part])

    def submit_generation(self, request: GenerationRequest) -> Future:
        index = self._assign(1)
        return self._track(index, 1, self._workers[index].submit("generate", request))

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        model = self._model.result() if self._model.done() and not self._model.exception() else None
        if model is not None and not any(w.alive for w in self._workers):
            model.close()


class _Worker:
    """One llama.cpp context and the thread that drives it: scoring rounds and continuously batched generation."""

    def __init__(
        self,
        model: Future,
        *,
        context_size: int | None,
        n_slots: int,
        threads: int,
        wide_threads: int,
        prefix_tree: bool = True,
        grammar_first: bool = False,
        generation_cells: int = GENERATION_CELLS,
        batch_generation: bool = False,
    ):
        self._model_future = model
        self.n_ctx = context_size or 0
        self.n_slots = n_slots
        # the widest decode: a piece of prompt, or a token for each generating slot plus pieces of new prompts
        self.n_batch = DECODE_CHUNK_TOKENS + n_slots
        self.threads = threads
        self.wide_threads = wide_threads
        self._threads_now = threads
        self.others_idle = lambda: True  # whether no other worker has work in hand (set by the engine)
        self.prefix_tree = prefix_tree
        self.grammar_first = grammar_first
        self.generation_cells = generation_cells
        self.batch_generation = batch_generation
        self.decode_calls = self.decoded_tokens = self.padding_tokens = self.reused_tokens = 0
        self.ready: Future = Future()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="llamacpp-worker", daemon=True)
        self._thread.start()

    def submit(self, kind: str, payload: Any) -> Future:
        future: Future = Future()
        self._inbox.put((kind, payload, future))
        return future

    def close(self) -> None:
        self._inbox.put(("close", None, None))
        self._thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the worker's thread -----------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self.model: LlamaModel = self._model_future.result()
            self._lib, self._vocab = self.model.lib, self.model.vocab
            self._make_context()
        except BaseException as error:  # noqa: BLE001 - handed to every caller
            failure = error if isinstance(error, LLMError) else LLMUnavailableError(str(error))
            _settle(self.ready, error=failure)
            self._drain(failure)
            return
        _settle(self.ready, result=None)
        self._queued: list[_Generation] = []
        self._scores: list[tuple[list[_ScorePlan], Future]] = []
        try:
            while True:
                try:
                    if not self._step():
                        break
                except Exception as error:  # noqa: BLE001 - a bug must fail the work in hand, not hang its callers
                    self._fail_all(LLMError(f"the llama.cpp engine failed: {error!r}"))
        finally:
            self._shutdown()

    def _make_context(self) -> None:
        lib, model = self._lib, self.model
        self.n_seq = min(lib.llama_max_parallel_sequences(), 256)
        if self.n_slots >= self.n_seq:
            raise LLMUnavailableError(
                f"llm_parallel gives each worker {self.n_slots} sequences, over llama.cpp's {self.n_seq - 1}"
            )
        params = lib.llama_context_default_params()
        params.n_ctx = self.n_ctx or model.n_ctx_train
        params.n_batch = self.n_batch
        params.n_ubatch = min(512, self.n_batch)
        params.n_seq_max = self.n_seq
        params.n_outputs_max = 0  # up to n_batch logit rows a call, and as many per sequence as it asks for
        params.n_outputs_max_per_seq = 0
        params.kv_unified = True  # one pool of cells; a shared prefix is stored once for all its sequences
        # CPU flash attention moves logits by up to 1.0 on SmolLM2 against the plain path llama-cpp-python's `Llama`
        # takes; off, scores equal the reference computation
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.n_threads = params.n_threads_batch = self.threads
        self._ctx = lib.llama_init_from_model(model.model, params)
        if not self._ctx:
            raise LLMUnavailableError(f"llama.cpp could not create a {params.n_ctx}-token context")
        self.n_ctx = lib.llama_n_ctx(self._ctx)
        self._memory = lib.llama_get_memory(self._ctx)
        self._batch = lib.llama_batch_init(self.n_batch, 0, self.n_seq)
        self._slots = [_Slot(seq_id=i) for i in range(self.n_slots)]
        self._score_seqs = list(range(self.n_slots, self.n_seq))  # the last one holds a round's filler tokens
        self._filler_token = model.bos if model.bos >= 0 else 0
        self.cell_alignment = cell_alignment(lib.llama_print_system_info().decode())

    def _fail_all(self, error: LLMError) -> None:
        for job in self._queued:
            _settle(job.future, error=error)
        for slot in self._slots:
            if slot.job is not None:
                self._finish(slot, error)
        for _, future in self._scores:
            _settle(future, error=error)
        self._queued, self._scores = [], []

    def _drain(self, error: BaseException) -> None:
        """Fail everything that arrives until `close`."""
        while True:
            kind, _, future = self._inbox.get()
            if kind == "close":
                return
            _settle(future, error=error)

    def _shutdown(self) -> None:
        closed = LLMUnavailableError("the llama.cpp backend was closed")
        for job in self._queued:
            _settle(job.future, error=closed)
        for slot in self._slots:
            if slot.job is not None:
                slot.job.sampler.free()
                _settle(slot.job.future, error=closed)
        for _, future in self._scores:
            _settle(future, error=closed)
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_free(self._ctx)

    def _step(self) -> bool:
        """Take new work, run the scoring that fits, then one generation step. False once closed."""
        busy = self._queued or self._scores or any(s.job for s in self._slots)
        while True:
            try:
                kind, payload, future = self._inbox.get(block=not busy)
            except queue.Empty:
                break
            if kind == "close":
                return False
            if kind == "score":
                try:
                    self._scores.append(([self.model.plan_score(r, self.n_ctx) for r in payload], future))
                except LLMError as error:
                    _settle(future, error=error)
                except Exception as error:  # noqa: BLE001 - e.g. text the tokenizer refuses
                    _settle(future, error=LLMRequestError(f"cannot score this request: {error!r}"))
            else:
                self._queued.append(_Generation(request=payload, future=future))
            busy = True
        if self._scores:
            self._run_scores()
        if not self._scores:  # a waiting score blocks new generations until it fits
            self._admit()
        self._generation_step()
        return True

    # -- scoring -----------------------------------------------------------------------------------------------

    def _run_scores(self) -> None:
        """Score every queued submission together, so that rounds fill across the small calls a batch job makes
        side by side. A round starts on a cache that holds at most the round before's lead, so that every token
        lands in the cell `_ScoreTree.layout` planned for it; the cache is empty again once the call is scored.
        Queued scores wait for the generations in flight to finish (no new ones start meanwhile)."""
        queued = [(plans, future) for plans, future in self._scores if not future.cancelled()]
        plans = [plan for part, _ in queued for plan in part]
        if not plans:
            self._scores = []
            return
        if any(slot.job is not None for slot in self._slots):
            self._scores = queued
            return
        self._evict_idle()
        self._scores = []
        results: list[list[float]] = [[0.0] * len(p.sequences) for p in plans]
        owner = [future for part, future in queued for _ in part]
        # neighbours in token order share the longest prefixes, so a round holds the most of each other's tokens
        pending = sorted(
            ((i, j) for i, p in enumerate(plans) for j in range(len(p.sequences))),
            key=lambda ij: plans[ij[0]].sequences[ij[1]],
        )
        shared_by_all = _common_prefix_length([s for p in plans for s in p.sequences]) if not self.prefix_tree else 0
        kept: _Lead | None = None
        try:
            while pending:
                # a caller that gave up (a client gone, a request past its time) stops costing rounds
                pending = [(i, j) for i, j in pending if not owner[i].cancelled()]
                if not pending:
                    break
                tree = _ScoreTree(self.n_ctx, len(self._score_seqs) - 1, self.cell_alignment)
                taken = 0
                for i, j in pending:
                    # flat: requests share only what all of them share (the template), each decodes the rest alone
                    own = None if self.prefix_tree else (i, shared_by_all)
                    if not tree.add(i, j, plans[i], own, first=not taken):
                        break
                    taken += 1
                kept = self._score_round(
                    tree,
                    results,
                    gave_up=lambda round_=pending[:taken]: all(owner[i].cancelled() for i, _ in round_),
                    kept=kept if self.prefix_tree else None,
                )
                pending = pending[taken:]
        except LLMError as error:
            for _, future in queued:
                _settle(future, error=error)
            return
        finally:
            self._lib.llama_memory_clear(self._memory, False)
        scoring = "prefix_tree" if self.prefix_tree else "flat"
        scores = [
            RawScores(logprobs=r, token_counts=p.token_counts, prompt_tokens=p.prompt_tokens, scoring=scoring)
            for p, r in zip(plans, results)
        ]
        begin = 0
        for part, future in queued:
            _settle(future, result=scores[begin : begin + len(part)])
            begin += len(part)

    def _score_round(
        self, tree: _ScoreTree, results, gave_up: Callable[[], bool], kept: _Lead | None = None
    ) -> _Lead | None:
        """Decode one round's tree on a cleared cache, in the planned order (so each token takes the planned cell),
        logits only where some continuation reads them. Stops between pieces once every caller `gave_up`.

        `kept`: the lead of the round before (tokens every one of its continuations shared, in cells 0, 1, ... on
        its sequences). As much of it as this round's lead begins with stays in its cells, on this round's
        sequences, and is not decoded again: the same tokens in the same cells after the same tokens hold the
        same keys and values to the bit. Returns this round's lead, left in the cache for the next round."""
        seqs, pad_seq = self._score_seqs, self._score_seqs[-1]
        lead = tree.lead()
        reuse = _common_prefix_length([kept.tokens, lead]) if kept is not None and lead else 0
        if reuse:
            memory, lib = self._memory, self._lib
            for seq in seqs[: kept.continuations]:
                lib.llama_memory_seq_rm(memory, seq, reuse, -1)
            lib.llama_memory_seq_rm(memory, pad_seq, -1, -1)
            for k in range(kept.continuations, tree.continuations):
                lib.llama_memory_seq_cp(memory, seqs[0], seqs[k], 0, reuse)
            for k in range(tree.continuations, kept.continuations):
                lib.llama_memory_seq_rm(memory, seqs[k], 0, reuse)
        else:
            self._lib.llama_memory_clear(self._memory, False)
        entries: list[tuple[int, int, list[int], list]] = []
        pads = 0
        for cell in tree.layout()[reuse:]:
            if cell is None:  # a filler token on a sequence of its own, so that the next block lands aligned
                entries.append((self._filler_token, pads, [pad_seq], []))
                pads += 1
            else:
                token, pos, conts, reads = cell
                entries.append((token, pos, [seqs[k] for k in conts], reads))
        self.padding_tokens += pads
        self.reused_tokens += reuse
        for begin in range(0, len(entries), DECODE_CHUNK_TOKENS):
            if begin and gave_up():
                self._lib.llama_memory_clear(self._memory, False)
                return None
            chunk = entries[begin : begin + DECODE_CHUNK_TOKENS]
            self._decode([(token, pos, seqs, bool(reads)) for token, pos, seqs, reads in chunk])
            for index, (_, _, _, reads) in enumerate(chunk):
                if reads:
                    row = self._log_softmax_row(index)
                    for i, j, target in reads:
                        results[i][j] += float(row[target])
        return _Lead(tokens=lead, continuations=tree.continuations)

    def _log_softmax_row(self, index: int) -> np.ndarray:
        row = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(self._ctx, index), shape=(self.model.n_vocab,))
        row = row.astype(np.float64)
        peak = row.max()
        return row - peak - np.log(np.exp(row - peak).sum())

    # -- decoding ----------------------------------------------------------------------------------------------

    def _decode(self, entries: list[tuple[int, int, list[int], bool]], *, generated: bool = False) -> None:
        """One `llama_decode` of (token, position, sequences, logits wanted) entries.

        A lone prompt or scoring token gets a filler token beside it, on the filler sequence, taken out of the cache
        again at once: llama.cpp's CPU attention serves a one-token batch with another kernel than a batch of two or
        more (llamafile's sgemm takes only n >= 2), which rounds otherwise, so a token decoded alone got other logits
        (up to 0.38 apart on SmolLM2, measured) than the same token in a wider decode or in the reference
        computation. Where a prompt or a scoring round is cut into pieces follows what else is in flight (a round's
        last piece, a prompt's part after a cached prefix), so this keeps a request's numbers from depending on it.
        A `generated` token (one a step, as llama-cpp-python generates) is always alone when sequences generate one at
        a time, so it keeps the one-token kernel: a filler there made each step 1.4x slower (measured)."""
        lone = len(entries) == 1 and not generated
        if lone:  # non-contiguous cell search: the filler takes the cell after the token's, never the token's
            filler_seq = self._score_seqs[-1]
            filler_pos = self._lib.llama_memory_seq_pos_max(self._memory, filler_seq) + 1
            entries = [*entries, (self._filler_token, filler_pos, [filler_seq], False)]
            self.padding_tokens += 1
        batch = self._batch
        for n, (token, pos, seqs, logits) in enumerate(entries):
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = len(seqs)
            ids = batch.seq_id[n]
            for k, seq in enumerate(seqs):
                ids[k] = seq
            batch.logits[n] = int(logits)
        batch.n_tokens = len(entries)
        wide = len(entries) >= WIDE_DECODE_TOKENS and self.others_idle()
        threads = self.wide_threads if wide else self.threads
        if threads != self._threads_now:
            self._lib.llama_set_n_threads(self._ctx, threads, threads)
            self._threads_now = threads
        status = self._lib.llama_decode(self._ctx, batch)
        if lone:
            self._lib.llama_memory_seq_rm(self._memory, filler_seq, filler_pos, -1)
        self.decode_calls += 1
        self.decoded_tokens += len(entries)
        if status != 0:
            reason = {1: "no room left in the KV cache", 2: "aborted"}.get(status, "a llama.cpp error")
            raise LLMError(f"llama_decode failed ({status}: {reason}) on a batch of {len(entries)} tokens")

    def _free_cells(self) -> int:
        return self.n_ctx - sum(slot.reserved() for slot in self._slots)

    def _evict_idle(self, keep: tuple[_Slot, ...] = ()) -> None:
        """Drop the cached prefixes of idle slots (but those in `keep`) to make room."""
        for slot in self._slots:
            if slot.job is None and slot.tokens and slot not in keep:
                self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                slot.tokens = []

    # -- generation --------------------------------------------------------------------------------------------

    def _prepare(self, job: _Generation) -> None:
        """Prompt tokens, stop strings, token budget and sampler chain of one request."""
        request = job.request
        if request.messages is not None:
            formatted = self.model.chat(messages=[{"role": m.role, "content": m.content} for m in request.messages])
            text, stop = formatted.prompt, [s for s in formatted.stop if s]
        else:
            text, stop = request.prompt, []
        prompt = ([self.model.bos] if self.model.add_bos and self.model.bos >= 0 else []) + self.model.tokenize(text)
        if not prompt:
            prompt = [self.model.bos]
        if len(prompt) >= self.n_ctx:
            raise LLMRequestError(
                f"the prompt is {len(prompt)} tokens, over the context size {self.n_ctx} "
                "(XPLAIN_LLM_CONTEXT_SIZE): shorten it"
            )
        job.prompt = prompt
        job.stop = stop + list(request.stop)
        job.max_tokens = min(request.max_tokens or self.n_ctx, self.n_ctx - len(prompt))
        job.sampler = self.model.sampler(request, grammar_first=self.grammar_first)

    def _admit(self) -> None:
        """Give free slots to queued requests, reusing the longest cached prefix any slot holds.

        Unless `batch_generation`, one sequence of a worker generates at a time, on a cache that holds nothing but its
        own slot's cached prefix: its tokens then sit in cells 0, 1, ... as alone, and its logits are the same bits
        whatever else is queued. Sequences generating together take interleaved cells, and ggml's CPU attention sums
        over cells in SIMD lanes and 8-cell groups by cell index (see `_ScoreTree`): measured on 16 reviews, 7 greedy
        replies of 16 differed alone and together, 12 JSON-constrained ones and 15 seeded samples. What it costs is
        small here: 16 short requests took 1.06x (greedy) and 0.97x (JSON-constrained) the time of 8 sequences a
        worker generating together (2 workers, 2 loaded cores), as one-token steps keep the one-token kernel."""
        waiting: list[_Generation] = []
        for job in self._queued:
            if job.future.cancelled():
                if job.sampler is not None:
                    job.sampler.free()
                continue
            free = [s for s in self._slots if s.job is None]
            if not free:
                waiting.append(job)
                continue
            if not job.prompt:
                try:
                    self._prepare(job)
                except LLMError as error:
                    _settle(job.future, error=error)
                    continue
                except Exception as error:  # noqa: BLE001 - a chat template or schema llama.cpp cannot take
                    _settle(job.future, error=LLMRequestError(f"cannot generate for this request: {error!r}"))
                    continue
            target = max(free, key=lambda s: _common_prefix_length([s.tokens, job.prompt]))
            if not self.batch_generation:
                if any(s.job is not None for s in self._slots):
                    waiting.append(job)
                    continue
                self._evict_idle(keep=(target,))  # cells 0, 1, ... for this sequence alone
            source = max(self._slots, key=lambda s: _common_prefix_length([s.tokens, job.prompt]))
            reuse = min(_common_prefix_length([source.tokens, job.prompt]), len(job.prompt) - 1)
            in_flight = max(
                (_common_prefix_length([s.tokens + s.pending, job.prompt]) for s in self._slots if s.pending), default=0
            )
            if in_flight > reuse + PREFIX_WAIT_TOKENS:
                waiting.append(job)  # its prefix is being evaluated right now: copy it next step
                continue
            need = len(job.prompt) + job.max_tokens - reuse
            busy = sum(s.reserved() for s in self._slots if s.job is not None)
            if busy and self.generation_cells and busy + need > self.generation_cells:
                waiting.append(job)  # attention over more cells would slow every sequence more than it adds
                continue
            if need > self._free_cells() + len(target.tokens):
                # room first: drop every idle cache but the target's own, and with them a copy from elsewhere
                self._evict_idle(keep=(target,))
                source = target
                reuse = min(_common_prefix_length([target.tokens, job.prompt]), len(job.prompt) - 1)
                if len(job.prompt) + job.max_tokens - reuse > self._free_cells() + len(target.tokens):
                    waiting.append(job)  # the active sequences hold the cells; one of them will finish
                    continue
            own = _common_prefix_length([target.tokens, job.prompt])
            if source is not target and _common_prefix_length([source.tokens, job.prompt]) > own:
                self._lib.llama_memory_seq_rm(self._memory, target.seq_id, -1, -1)
                self._lib.llama_memory_seq_cp(self._memory, source.seq_id, target.seq_id, 0, reuse)
            else:
                reuse = min(own, reuse)
                self._lib.llama_memory_seq_rm(self._memory, target.seq_id, reuse, -1)
            target.tokens = job.prompt[:reuse]
            target.pending = job.prompt[reuse:]
            target.job = job
        self._queued = waiting

    def _generation_step(self) -> None:
        """One `llama_decode` over every active sequence: a new token each, plus prompt chunks of new ones."""
        for slot in self._slots:
            if slot.job is not None and slot.job.future.cancelled():
                self._finish(slot, None)
        active = [s for s in self._slots if s.job is not None]
        if not active:
            return
        entries, readers = [], []
        for slot in active:  # sequences already generating first: one token each keeps them moving
            if not slot.pending:
                entries.append((slot.job.generated[-1], len(slot.tokens), [slot.seq_id], True))
                readers.append((slot, len(entries) - 1, 1))
        generating = len(entries)
        budget = max(
            DECODE_CHUNK_TOKENS - len(entries), DECODE_CHUNK_TOKENS // 4
        )  # prompts move on, however many generate
        for slot in active:
            if slot.pending and budget > 0:
                chunk = slot.pending[:budget]
                start = len(slot.tokens)
                done = len(chunk) == len(slot.pending)
                for k, token in enumerate(chunk):
                    entries.append((token, start + k, [slot.seq_id], done and k == len(chunk) - 1))
                readers.append((slot, len(entries) - 1 if done else None, len(chunk)))
                budget -= len(chunk)
        try:
            self._decode(entries, generated=generating > 0)
        except LLMError as error:
            for slot in active:
                self._finish(slot, error)
            return
        for slot, index, n in readers:
            if slot.pending:
                slot.tokens += slot.pending[:n]
                slot.pending = slot.pending[n:]
            else:
                slot.tokens.append(slot.job.generated[-1])
            if index is not None:
                self._sample(slot, index)

    def _sample(self, slot: _Slot, index: int) -> None:
        job = slot.job
        token = job.sampler.sample(self._ctx, index)
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            return self._finish(slot, None, reason="stop")
        job.generated.append(token)
        job.text += self.model.piece(token, special=False)
        if job.stop:
            text = job.text.decode("utf-8", "ignore")
            cut = min((i for s in job.stop if (i := text.find(s)) >= 0), default=-1)
            if cut >= 0:
                job.text = bytearray(text[:cut].encode("utf-8"))
                return self._finish(slot, None, reason="stop")
        if len(job.generated) >= job.max_tokens:
            self._finish(slot, None, reason="length")

    def _finish(self, slot: _Slot, error: LLMError | None, reason: str | None = None) -> None:
        """Settle the slot's request and free the slot; its evaluated tokens stay cached for the next prompt."""
        job = slot.job
        slot.job = None
        if slot.pending or error is not None:  # an unfinished prompt, or a failed decode: nothing to reuse
            self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            slot.tokens, slot.pending = [], []
        job.sampler.free()
        if error is not None:
            _settle(job.future, error=error)
        elif not job.future.cancelled():
            _settle(
                job.future,
                result=RawCompletion(
                    text=job.text.decode("utf-8", "replace"),
                    finish_reason=reason,
                    prompt_tokens=len(job.prompt),
                    completion_tokens=len(job.generated),
                ),
            )


@dataclass
class _Block:
    """Up to `align` consecutive tokens of one path through a scoring round's tree, starting at a position that is a
    multiple of `align`; `seqs` and `reads` per token (a path that ends inside the block holds only its first
    tokens)."""

    start: int
    tokens: list[int]
    tag: int | None
    seqs: list[list[int]] = field(default_factory=list)
    reads: list[list[tuple[int, int, int]]] = field(default_factory=list)
    children: list[_Block] = field(default_factory=list)


@dataclass
class _Lead:
    """The tokens every continuation of a scoring round shares, in cells 0, 1, ... on its `continuations` sequences
    (the first ones of the engine's scoring sequences)."""

    tokens: list[int]
    continuations: int


class _ScoreTree:
    """One scoring round as a prefix tree over the continuations' token sequences, in blocks of `align` positions:
    a block that several continuations share (the template, a text up to its first edit) is decoded once on all
    their sequences.

    Why blocks: ggml's CPU attention sums over the cache cells in SIMD lanes and lane groups by cell index (the
    softmax adds groups of 8 cells, the weighted sum of values runs per lane). A token whose cells sit in other lanes
    or groups than alone gets other roundings, and the quantised activations of a 135M model turn those into logit
    changes of up to 0.8 (measured). So each block goes to cells whose index is a multiple of `align` plus its
    positions' offsets, parents before children: every continuation's arithmetic is then the same as alone on an
    empty cache, whatever else is in the round, bit for bit. The price: continuations that part inside a block
    each decode that block's first tokens again, and a path that ends inside a block leaves filler cells after it."""

    def __init__(self, n_ctx: int, max_sequences: int, align: int):
        self.n_ctx, self.max_sequences, self.align = n_ctx, max_sequences, align
        self.roots: list[_Block] = []
        self.tokens = 0
        self.continuations = 0

    def _blocks(self, sequence: list[int]) -> list[list[int]]:
        return [sequence[b : b + self.align] for b in range(0, len(sequence), self.align)]

    def _match(self, siblings: list[_Block], tokens: list[int], tag: int | None) -> _Block | None:
        """The sibling this block's tokens can share: one of the two a prefix of the other (siblings never are)."""
        for block in siblings:
            n = min(len(block.tokens), len(tokens))
            if block.tag == tag and block.tokens[:n] == tokens[:n]:
                return block
        return None

    def add(self, i: int, j: int, plan: _ScorePlan, own: tuple[int, int] | None = None, *, first: bool) -> bool:
        """Take continuation `j` of request `i` if it fits (the first always does). `own` = (tag, depth): blocks
        that reach past that depth are shared only with continuations of the same tag."""
        blocks = self._blocks(plan.sequences[j])
        tags = [
            own[0] if own is not None and start * self.align + len(tokens) > own[1] else None
            for start, tokens in enumerate(blocks)
        ]
        siblings, added, matched = self.roots, 0, 0
        for tokens, tag in zip(blocks, tags):
            block = self._match(siblings, tokens, tag)
            if block is None:
                added += sum(len(t) for t in blocks) - matched
                break
            added += max(0, len(tokens) - len(block.tokens))
            matched += len(tokens)
            siblings = block.children
        # a path that ends inside a block may need align - 1 filler cells after it
        worst = self.tokens + added + (self.align - 1) * (self.continuations + 1)
        if not first:
            if self.continuations + 1 > self.max_sequences or worst > self.n_ctx:
                return False
            # a continuation that mostly rides on blocks already here joins past the budget: a long prompt is
            # decoded once for all its continuations rather than once a round
            if self.tokens + added > SCORE_ROUND_CELLS and matched < added:
                return False
        k = self.continuations
        self.continuations += 1
        self.tokens += added
        reads, siblings = plan.reads[j], self.roots
        for n, (tokens, tag) in enumerate(zip(blocks, tags)):
            block = self._match(siblings, tokens, tag)
            if block is None:
                block = _Block(start=n * self.align, tokens=[], tag=tag)
                siblings.append(block)
            if len(tokens) > len(block.tokens):
                block.tokens = tokens
            for offset in range(len(tokens)):
                if offset == len(block.seqs):
                    block.seqs.append([])
                    block.reads.append([])
                block.seqs[offset].append(k)
                position = block.start + offset
                if position in reads:
                    block.reads[offset].append((i, j, reads[position]))
            siblings = block.children
        return True

    def lead(self) -> list[int]:
        """The tokens at the start of `layout` that every continuation shares and none reads logits at: one root,
        full blocks with one child each, down to the first branch or read."""
        tokens: list[int] = []
        siblings = self.roots
        while len(siblings) == 1:
            block = siblings[0]
            for offset, token in enumerate(block.tokens):
                if len(block.seqs[offset]) != self.continuations or block.reads[offset]:
                    return tokens
                tokens.append(token)
            if len(block.tokens) != self.align:
                return tokens
            siblings = block.children
        return tokens

    def layout(self) -> list[tuple[int, int, list[int], list[tuple[int, int, int]]] | None]:
        """(token, position, continuations, reads) in decoding order, None for a filler cell; every block starts at
        an index that is a multiple of `align`, parents before children."""
        out: list = []
        stack = list(reversed(self.roots))
        while stack:
            block = stack.pop()
            out.extend([None] * (-len(out) % self.align))
            for offset, token in enumerate(block.tokens):
                out.append((token, block.start + offset, block.seqs[offset], block.reads[offset]))
            stack.extend(reversed(block.children))
        return out


def cell_alignment(system_info: str) -> int:
    """Cells per SIMD lane group of ggml's CPU dot products in this build (llama_print_system_info): 8 floats with
    AVX2, 16 with AVX-512, times the 4 accumulators of ggml's own kernels where llamafile's are not built in; 64 where
    the build is none of these (no narrower grouping is known to be safe)."""
    if "AVX512 = 1" in system_info:
        lanes = 16
    elif "AVX2 = 1" in system_info or "AVX = 1" in system_info:
        lanes = 8
    else:
        return 64
    return lanes if "LLAMAFILE = 1" in system_info else 4 * lanes


def _common_prefix_length(sequences: list[list[int]]) -> int:
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in sequences[1:]):
            return i
    return n


def _settle(future: Future | None, *, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a future unless it already is (threads may race to it: the first word stands)."""
    if future is None or future.done():
        return
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


def _gather(parts: list[Future], combine) -> Future:
    """One future for many: `combine` of their results in order, or the first error (the rest then cancelled).
    Cancelling it cancels the parts."""
    out: Future = Future()
    results: list[Any] = [None] * len(parts)
    remaining = [len(parts)]
    lock = threading.Lock()

    def settled(index: int, part: Future) -> None:
        error = LLMError("cancelled") if part.cancelled() else part.exception()
        if error is not None:
            _settle(out, error=error)
            for other in parts:
                other.cancel()
            return
        with lock:
            results[index] = part.result()
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            _settle(out, result=combine(results))

    if not parts:
        _settle(out, result=combine([]))
    for index, part in enumerate(parts):
        part.add_done_callback(lambda part, index=index: settled(index, part))
    out.add_done_callback(lambda done: [part.cancel() for part in parts] if done.cancelled() else None)
    return out


CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
