"""vLLM's in-process engine (`vllm.LLM`) for offline batch work on a GPU.

A whole batch goes to the engine in one call, which is where vLLM's continuous batching and prefix caching pay.
Scoring one-token labels asks for the next token's top log-probabilities, which the prefix cache serves;
longer ones read prompt log-probabilities, which it does not (see `_score_sync`).
vLLM is imported only when this backend is built (`pip install 'xplain[gpu]'`); it needs vLLM 0.11 or later, the
first with `StructuredOutputsParams`.

`batch_invariant` (the default) runs vLLM's batch-invariant kernels (`VLLM_BATCH_INVARIANT=1`, from vLLM 0.11.1, on
NVIDIA GPUs of compute capability 8.0 and up): a request's log-probabilities are then the same bits whatever else
is in the batch, at some cost in speed, as the embedded engine's are. An operator's own `VLLM_BATCH_INVARIANT` wins.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from xplain.llm.backends.base import NEXT_TOKEN_TOP_LOGPROBS, Backend, RawCompletion, RawScores
from xplain.llm.backends.seams import continuation_start
from xplain.llm.backends.vllm_release import STRUCTURED_OUTPUTS, release
from xplain.llm.types import GenerationRequest, LLMRequestError, LLMUnavailableError, Message, ScoreRequest


class VLLMEngineBackend(Backend):
    name = "vllm"
    constrains_json = True
    native_tools = False  # tool choice goes through structured outputs, which every model supports
    parallelism = 256  # vLLM's default max_num_seqs: sequences it schedules together

    def __init__(
        self,
        model: str,
        *,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        batch_invariant: bool = True,
    ):
        if batch_invariant:  # read by vLLM when it loads, so set before the import
            os.environ.setdefault("VLLM_BATCH_INVARIANT", "1")
        self.batch_invariant = os.environ.get("VLLM_BATCH_INVARIANT") == "1"
        try:
            import vllm
        except ImportError as error:
            raise LLMUnavailableError(
                f"the vllm backend needs vLLM and a GPU: pip install 'xplain[gpu]' ({error})"
            ) from error
        installed = release(getattr(vllm, "__version__", None))
        if installed is None or installed < STRUCTURED_OUTPUTS:
            raise LLMUnavailableError(
                f"the vllm backend needs vLLM 0.11 or later for structured outputs, found "
                f"{getattr(vllm, '__version__', 'an unknown version')}: pip install -U 'xplain[gpu]'"
            )
        self._vllm = vllm
        self._model_name = model
        self._engine = vllm.LLM(
            model=model,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
        )
        self._tokenizer = self._engine.get_tokenizer()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm")

    @property
    def model(self) -> str:
        return self._model_name

    async def check(self) -> str:
        return f"vllm:{self.model}" + (" (batch-invariant)" if self.batch_invariant else "")

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _sampling(self, request: GenerationRequest) -> Any:
        from vllm.sampling_params import SamplingParams, StructuredOutputsParams

        # max_tokens=None is the rest of the context (the engine sets max_model_len - prompt length,
        # vllm/v1/engine/input_processor.py); leaving it out would be SamplingParams' default of 16.
        return SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=request.stop or None,
            seed=request.seed,
            structured_outputs=StructuredOutputsParams(json=request.json_schema) if request.json_schema else None,
        )

    async def generate(self, requests: list[GenerationRequest]) -> list[RawCompletion]:
        return await self._run(self._generate_sync, requests)

    def _generate_sync(self, requests: list[GenerationRequest]) -> list[RawCompletion]:
        results: list[RawCompletion | None] = [None] * len(requests)
        chats = [i for i, r in enumerate(requests) if r.messages is not None]
        prompts = [i for i, r in enumerate(requests) if r.prompt is not None]
        if chats:
            conversations = [[{"role": m.role, "content": m.content} for m in requests[i].messages] for i in chats]
            outputs = self._engine.chat(
                conversations, sampling_params=[self._sampling(requests[i]) for i in chats], use_tqdm=False
            )
            for i, out in zip(chats, outputs):
                results[i] = _raw(out)
        if prompts:
            outputs = self._engine.generate(
                [requests[i].prompt for i in prompts],
                sampling_params=[self._sampling(requests[i]) for i in prompts],
                use_tqdm=False,
            )
            for i, out in zip(prompts, outputs):
                results[i] = _raw(out)
        return [r for r in results if r is not None]

    async def render_chat(self, messages: list[Message]) -> str:
        """The tokenizer's chat template up to the assistant's turn, less the BOS text that scoring's
        tokenization (`add_special_tokens=True`) puts back."""
        text = self._tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], tokenize=False, add_generation_prompt=True
        )
        bos = getattr(self._tokenizer, "bos_token", None)
        added = self._tokenizer.encode("", add_special_tokens=True)[:1]
        adds_bos = bool(bos) and added == [self._tokenizer.bos_token_id]
        return text.removeprefix(bos) if adds_bos else text

    async def score(self, requests: list[ScoreRequest]) -> list[RawScores]:
        return await self._run(self._score_sync, requests)

    def _score_sync(self, requests: list[ScoreRequest]) -> list[RawScores]:
        """Every (prompt, continuation) pair tokenized as one text (the continuation's tokens found by offset, see
        `seams`). A request whose continuations are each one token after the same prompt tokens is one completion
        of one token with the next token's top `NEXT_TOKEN_TOP_LOGPROBS` log-probabilities, which the prefix cache
        serves (`next_token`); one with a continuation not among them, or longer than a token, reads prompt
        log-probabilities at the continuation's tokens instead, exactly (`prompt_logprobs`). Requests with
        prompt_logprobs skip prefix-cache reads, so there each pair's prompt is computed again (`prompt_tokens`
        says so). At most two engine calls, each with the whole batch of its kind."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import SamplingParams

        encode = self._tokenizer.encode
        pairs: list[list[tuple[list[int], int]]] = []  # per request: (joint ids, first continuation token)
        for request in requests:
            prompt_ids = encode(request.prompt, add_special_tokens=True)
            pairs.append([])
            for continuation in request.continuations:
                joint = encode(request.prompt + continuation, add_special_tokens=True)
                start = continuation_start(prompt_ids, joint, lambda ids: len(self._tokenizer.decode(ids)))
                if not 0 < start < len(joint):
                    raise LLMRequestError(f"no scorable tokens for continuation {continuation!r}")
                pairs[-1].append((joint, start))
        results: list[RawScores | None] = [None] * len(requests)
        one_token = [n for n, request_pairs in enumerate(pairs) if _one_token_after_one_head(request_pairs)]
        if one_token:
            heads = [pairs[n][0][0][: pairs[n][0][1]] for n in one_token]
            outputs = self._engine.generate(
                [TokensPrompt(prompt_token_ids=head) for head in heads],
                sampling_params=SamplingParams(max_tokens=1, temperature=0.0, logprobs=NEXT_TOKEN_TOP_LOGPROBS),
                use_tqdm=False,
            )
            for n, head, out in zip(one_token, heads, outputs):
                top = out.outputs[0].logprobs[0]
                label_ids = [joint[-1] for joint, _ in pairs[n]]
                if all(i in top for i in label_ids):
                    logprobs = [float(top[i].logprob) for i in label_ids]
                    counts = [1] * len(label_ids)
                    results[n] = RawScores(logprobs, counts, prompt_tokens=len(head), scoring="next_token")
        rest = [(n, joint, start) for n, r in enumerate(results) if r is None for joint, start in pairs[n]]
        if rest:
            outputs = self._engine.generate(
                [TokensPrompt(prompt_token_ids=joint) for _, joint, _ in rest],
                sampling_params=SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0),
                use_tqdm=False,
            )
            read = {n: RawScores(logprobs=[], token_counts=[], scoring="prompt_logprobs") for n, _, _ in rest}
            for (n, joint, start), out in zip(rest, outputs):
                rows = out.prompt_logprobs
                read[n].logprobs.append(float(sum(rows[p][joint[p]].logprob for p in range(start, len(joint)))))
                read[n].token_counts.append(len(joint) - start)
                read[n].prompt_tokens += len(joint)
            for n, scored in read.items():
                results[n] = scored
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        self._worker.shutdown(wait=True)
        self._engine = None


def _raw(out: Any) -> RawCompletion:
    first = out.outputs[0]
    return RawCompletion(
        text=first.text,
        finish_reason=first.finish_reason,
        prompt_tokens=len(out.prompt_token_ids or []),
        completion_tokens=len(first.token_ids),
    )


def _one_token_after_one_head(pairs: list[tuple[list[int], int]]) -> bool:
    """Whether every continuation is one token after the same prompt tokens: then one next-token request reads all."""
    heads = {tuple(joint[:start]) for joint, start in pairs}
    return len(heads) == 1 and all(len(joint) == start + 1 for joint, start in pairs)
