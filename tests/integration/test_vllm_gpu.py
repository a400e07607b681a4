"""The real in-process vLLM engine. Runs only where vllm imports, a GPU is visible and XPLAIN_TEST_VLLM_MODEL names
a model available locally (no hub downloads in tests); skipped everywhere else."""

from __future__ import annotations

import os

import pytest
from pydantic import BaseModel, Field

from xplain.llm import GenerationRequest, ScoreRequest, make_llm
from xplain.settings import Settings

pytestmark = [pytest.mark.gpu, pytest.mark.integration]

vllm = pytest.importorskip("vllm", reason="vllm is not installed (pip install 'xplain[gpu]')")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no GPU visible", allow_module_level=True)
MODEL = os.environ.get("XPLAIN_TEST_VLLM_MODEL")
if not MODEL:
    pytest.skip("set XPLAIN_TEST_VLLM_MODEL to a local model path", allow_module_level=True)


class Answer(BaseModel):
    city: str = Field(max_length=40)


@pytest.fixture(scope="module")
def llm():
    return make_llm(Settings(llm_backend="vllm", llm_model=MODEL, cache_enabled=False))


async def test_engine_generates_structures_and_scores(llm):
    replies = await llm.generate([GenerationRequest.user(f"Count to {n}.", max_tokens=16) for n in range(8)])
    assert len(replies) == 8 and all(r.text for r in replies)
    [answer] = await llm.structured([GenerationRequest.user("What is the capital of France?")], Answer)
    assert isinstance(answer.value, Answer)
    [scores] = await llm.score([ScoreRequest(prompt="The capital of France is", continuations=[" Paris", " banana"])])
    assert scores.logprobs[0] > scores.logprobs[1]


async def test_one_token_labels_read_from_the_next_token_agree_with_prompt_logprobs(llm):
    """" Paris" scored beside a one-token label (next token's top 20) and beside a longer one (prompt log-probabilities,
    another kernel path): the same model number, up to the rounding of bf16 kernels."""
    prompt = "The capital of France is"
    one, longer = await llm.score(
        [ScoreRequest(prompt=prompt, continuations=[" Paris", " the"]),
         ScoreRequest(prompt=prompt, continuations=[" Paris", " a purple banana"])]
    )  # fmt: skip
    assert one.scoring == "next_token" and longer.scoring == "prompt_logprobs"
    assert one.logprobs[0] == pytest.approx(longer.logprobs[0], abs=0.05)
