"""The in-process vLLM backend's mapping onto vLLM's API (generation, prompt log-probabilities, one-token labels read
from the next token's top log-probabilities, the batch-invariant switch), checked with a stand-in `vllm` module
(vLLM itself needs a GPU; `tests/integration/test_vllm_gpu.py` runs the real engine where one exists)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from xplain.llm import GenerationRequest, ScoreRequest, make_llm
from xplain.llm.types import LLMUnavailableError
from xplain.settings import Settings
from xplain.testing.openai_stub import StubTokenizer


@dataclass
class SamplingParams:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] | None = None
    seed: int | None = None
    structured_outputs: object = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None


@dataclass
class StructuredOutputsParams:
    json: dict | None = None


@dataclass
class Logprob:
    logprob: float


@dataclass
class Output:
    text: str
    token_ids: list[int]
    finish_reason: str = "stop"
    logprobs: list | None = None


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[Output]
    prompt_logprobs: list | None = None


class Tokenizer:
    """Characters as tokens; BOS = 0 when special tokens are asked for."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return ([0] if add_special_tokens else []) + [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join("<s>" if i == 0 else chr(i) for i in ids)


class SentencePieceTokenizer:
    """The stub server's SentencePiece-style tokenizer: a dummy "▁" in front, pieces that merge across seams."""

    def __init__(self) -> None:
        self.inner = StubTokenizer("sentencepiece")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.inner.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int]) -> str:
        return self.inner.decode(ids)


def token_logprob(token: int) -> float:
    return -(token % 7) - 0.5


SAMPLED = 5  # the token every fake completion generates


@dataclass
class FakeEngine:
    calls: list = field(default_factory=list)
    tokenizer: object = field(default_factory=Tokenizer)
    #: Token ids ranked for a completion's top `logprobs` (vLLM ranks the whole vocabulary), with the sampled one.
    vocabulary: list[int] = field(default_factory=list)

    def get_tokenizer(self):
        return self.tokenizer

    def chat(self, conversations, sampling_params, use_tqdm):
        self.calls.append(("chat", conversations, sampling_params))
        return [RequestOutput([1, 2, 3], [Output(f"chat:{c[-1]['content']}", [9, 9])]) for c in conversations]

    def generate(self, prompts, sampling_params, use_tqdm):
        self.calls.append(("generate", prompts, sampling_params))
        outputs = []
        for prompt in prompts:
            if isinstance(prompt, dict) and sampling_params.logprobs:  # the next token's top log-probabilities
                ranked = sorted(self.vocabulary, key=token_logprob, reverse=True)[: sampling_params.logprobs]
                top = {t: Logprob(token_logprob(t)) for t in [*ranked, SAMPLED]}
                outputs.append(RequestOutput(prompt["prompt_token_ids"], [Output("", [SAMPLED], logprobs=[top])]))
            elif isinstance(prompt, dict):  # TokensPrompt: score every prompt position
                ids = prompt["prompt_token_ids"]
                rows = [None] + [{t: Logprob(token_logprob(t))} for t in ids[1:]]
                outputs.append(RequestOutput(ids, [Output("", [5])], rows))
            else:
                outputs.append(RequestOutput([1], [Output(f"text:{prompt}", [4, 4, 4])]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)  # restored after the test, whatever the backend sets
    engine = FakeEngine()
    vllm = types.ModuleType("vllm")
    vllm.__version__ = "0.11.0"
    vllm.LLM = lambda **kwargs: engine
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams = SamplingParams
    sampling.StructuredOutputsParams = StructuredOutputsParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    for name, module in {"vllm": vllm, "vllm.sampling_params": sampling, "vllm.inputs": inputs}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return engine


async def test_chat_and_raw_prompts_go_to_the_engine_in_one_call_each_and_keep_order(fake_vllm):
    llm = make_llm(Settings(llm_backend="vllm", llm_model="some/model", cache_enabled=False))
    requests = [
        GenerationRequest.user("a"),
        GenerationRequest(prompt="b", max_tokens=3),
        GenerationRequest.user("c", json_schema={"type": "object"}),
    ]
    out = await llm.generate(requests)
    assert [c.text for c in out] == ["chat:a", "text:b", "chat:c"]
    assert [kind for kind, *_ in fake_vllm.calls] == ["chat", "generate"]
    _, conversations, params = fake_vllm.calls[0]
    assert len(conversations) == 2
    assert params[1].structured_outputs == StructuredOutputsParams(json={"type": "object"})
    assert params[0].structured_outputs is None and params[0].temperature == 0.0
    assert out[1].usage.completion_tokens == 3


async def test_scores_read_prompt_logprobs_at_the_continuation(fake_vllm):
    llm = make_llm(Settings(llm_backend="vllm", llm_model="some/model", cache_enabled=False))
    [first, second] = await llm.score(
        [ScoreRequest(prompt="ab", continuations=["c", "de"]), ScoreRequest(prompt="x", continuations=["y"])]
    )
    assert first.logprobs == pytest.approx([token_logprob(ord("c")), token_logprob(ord("d")) + token_logprob(ord("e"))])
    assert first.token_counts == [1, 2]
    assert second.logprobs == pytest.approx([token_logprob(ord("y"))])
    assert [first.scoring, second.scoring] == ["prompt_logprobs"] * 2  # "y" is not among the top ones: read back
    kind, prompts, params = fake_vllm.calls[-1]
    assert kind == "generate" and len(prompts) == 3, "every pair in one engine call"
    assert prompts[0]["prompt_token_ids"] == [0, ord("a"), ord("b"), ord("c")]
    assert params.prompt_logprobs == 0


async def test_one_token_labels_are_read_from_the_next_token_in_one_engine_call_equal_to_prompt_logprobs(fake_vllm):
    asked = [ScoreRequest(prompt="ab", continuations=["y", "z"]), ScoreRequest(prompt="cd", continuations=["y", "z"])]
    llm = make_llm(Settings(llm_backend="vllm", llm_model="some/model", cache_enabled=False))
    read_back = await llm.score(asked)  # "y" and "z" are not among the top ones of an empty vocabulary
    fake_vllm.calls.clear()
    fake_vllm.vocabulary = [ord(c) for c in "xyz"]
    scored = await llm.score(asked)
    assert [s.scoring for s in scored] == ["next_token"] * 2
    assert [s.scoring for s in read_back] == ["prompt_logprobs"] * 2
    [(kind, prompts, params)] = fake_vllm.calls
    assert [p["prompt_token_ids"] for p in prompts] == [[0, ord("a"), ord("b")], [0, ord("c"), ord("d")]]
    assert params.max_tokens == 1 and params.logprobs == 20 and params.prompt_logprobs is None
    for by_next_token, by_prompt in zip(scored, read_back):
        assert by_next_token.logprobs == pytest.approx(by_prompt.logprobs, abs=1e-9)
        assert by_next_token.logprobs == pytest.approx([token_logprob(ord("y")), token_logprob(ord("z"))], abs=1e-9)
        assert by_next_token.token_counts == [1, 1]


async def test_a_label_outside_the_top_20_is_read_from_prompt_logprobs_exactly_the_others_keep_next_token(fake_vllm):
    fake_vllm.vocabulary = [7 * k for k in range(10, 31)]  # 21 ids of the best log-probability, "F" (70) among them
    llm = make_llm(Settings(llm_backend="vllm", llm_model="some/model", cache_enabled=False))
    outside, inside = await llm.score(
        [ScoreRequest(prompt="ab", continuations=["F", "y"]), ScoreRequest(prompt="ab", continuations=["F", "T"])]
    )
    assert outside.scoring == "prompt_logprobs" and inside.scoring == "next_token"
    assert outside.logprobs == pytest.approx([token_logprob(70), token_logprob(ord("y"))], abs=1e-9)
    assert inside.logprobs == pytest.approx([token_logprob(70), token_logprob(ord("T"))], abs=1e-9)
    assert [len(prompts) for _, prompts, _ in fake_vllm.calls] == [2, 2]  # both heads, then "y"'s request's pairs


def test_vllm_backend_needs_a_model_name(fake_vllm):
    with pytest.raises(ValueError, match="XPLAIN_LLM_MODEL"):
        make_llm(Settings(llm_backend="vllm"))


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(LLMUnavailableError, match=r"xplain\[gpu\]"):
        make_llm(Settings(llm_backend="vllm", llm_model="m"))


def test_a_vllm_older_than_0_11_is_refused_at_start(fake_vllm):
    sys.modules["vllm"].__version__ = "0.10.2"
    with pytest.raises(LLMUnavailableError, match=r"vLLM 0\.11 or later.*0\.10\.2"):
        make_llm(Settings(llm_backend="vllm", llm_model="m"))


async def test_scores_tokenize_prompt_and_continuation_together_on_a_sentencepiece_tokenizer(fake_vllm):
    fake_vllm.tokenizer = SentencePieceTokenizer()
    encode = fake_vllm.tokenizer.encode
    llm = make_llm(Settings(llm_backend="vllm", llm_model="some/model", cache_enabled=False))
    [scores] = await llm.score([ScoreRequest(prompt="Answer: ", continuations=[" yes", "yes", "no way"])])
    [(_, prompts, _)] = fake_vllm.calls  # one of three labels is two tokens: prompt log-probabilities at once
    texts = ("Answer:  yes", "Answer: yes", "Answer: no way")
    assert [p["prompt_token_ids"] for p in prompts] == [encode(t) for t in texts]
    yes_alone, yes_after = encode("Answer:  yes")[-1], encode("Answer: yes")[-1]  # "▁yes" after "▁", or merged
    no, way = encode("Answer: no way")[-2:]
    assert scores.token_counts == [1, 1, 2], "no extra '▁' piece from tokenizing a continuation alone"
    assert scores.logprobs == pytest.approx(
        [token_logprob(yes_alone), token_logprob(yes_after), token_logprob(no) + token_logprob(way)]
    )


async def test_the_engine_runs_batch_invariant_unless_told_not_to(fake_vllm, monkeypatch):
    import os

    llm = make_llm(Settings(llm_backend="vllm", llm_model="some/model", cache_enabled=False))
    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"
    assert (await llm.check()).endswith("(batch-invariant)")
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "0")  # the operator's word wins
    llm = make_llm(Settings(llm_backend="vllm", llm_model="some/model", cache_enabled=False))
    assert "batch-invariant" not in await llm.check()
    monkeypatch.delenv("VLLM_BATCH_INVARIANT")
    make_llm(Settings(llm_backend="vllm", llm_model="some/model", llm_batch_invariant=False, cache_enabled=False))
    assert "VLLM_BATCH_INVARIANT" not in os.environ
