"""SASC (Summarize and Score): explain a text -> float module in words, and check the words on the module.

Summarize: the module scores every 1..3-gram of a corpus in one batched pass; the LLM names a common theme of
random subsets of the top n-grams (one batched round). Score: for each candidate theme the LLM writes texts about
it and texts not about it (one batched round for all candidates); the module scores all of them in one pass, and
a candidate's score is the gap in mean response, in units of the module's standard deviation over the n-grams.
The score is the module's own verdict on each LLM claim (DESIGN.md rule 1).

Near misses: that gap cannot tell a vague or too broad explanation ("text", "things people enjoy") from a precise
one, since texts written about anything can carry the concept. So, as delphi's detection scoring does with hard
negatives, the module's top corpus texts are set beside near misses -- the corpus texts most like them (TF-IDF
cosine) that the module scores at or below its median -- and the LLM judges whether each candidate fits each of
them (log-likelihood of " yes" minus " no", one batched score call). A candidate separates the near misses when
the judged gap's Welch interval lies above zero; candidates that do rank before those that do not.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from xplain.blackbox import BlackBox
from xplain.llm import LLM, GenerationRequest, ScoreRequest
from xplain.methods.catalog import Method, MethodContext, register
from xplain.validation import to_text
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.checks import Check, two_sample_check
from xplain.methods.ngrams import default_corpus, top_k, unique_ngrams
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

LIST_MARKER = re.compile(r"^\s*(?:[-*•]+|\d+[.)]|\(?[a-z]\))\s*")
THEME_LEAD = re.compile(r"^(?:the )?(?:common )?(?:theme|rule)(?: (?:among|of) (?:these|the) phrases)?(?:\s+is|\s*:)\s*", re.IGNORECASE)


class SASCOptions(BaseModel):
    max_ngram: int = Field(3, ge=1, le=5, description="Longest n-gram scored.")
    top_ngrams: int = Field(
        40, ge=1, le=1000, description="How many top-activating n-grams candidates are drawn from."
    )
    n_candidates: int = Field(3, ge=1, le=20, description="Candidate explanations (one random subset each).")
    subset_size: int = Field(20, ge=1, le=100, description="Top n-grams shown to the LLM per candidate.")
    n_texts: int = Field(5, ge=1, le=20, description="Related and unrelated texts written per candidate (each).")
    summary_max_tokens: int = Field(24, ge=4, le=200)
    texts_max_tokens: int = Field(200, ge=16, le=2000)
    n_near_misses: int = Field(
        8, ge=0, le=100,
        description="The module's top corpus texts, and as many near misses (the most similar texts it scores low), "
        "that the LLM judges against each candidate; 0 turns the near-miss check off.",
    )  # fmt: skip
    seed: int = 0


class NgramActivation(BaseModel):
    ngram: str
    activation: float


class ExplanationCandidate(BaseModel):
    """One candidate explanation and the module's verdict on it."""

    explanation: str
    score: float | None = Field(
        description="(mean related - mean unrelated) / module std over the corpus; None when the LLM wrote no "
        "usable texts on one side."
    )
    mean_related: float | None
    mean_unrelated: float | None
    check: Check | None = Field(
        None,
        description="The score with a Welch interval over the per-text responses (their spread, not one related "
        "and one unrelated mean); 'faithful' only when the interval lies above zero.",
    )
    near_miss_check: Check | None = Field(
        None,
        description="How well the explanation tells the module's top corpus texts from their near misses: the LLM's "
        "judged fit (log p(yes) - log p(no), nats) on the top texts minus on the near misses, with a Welch interval. "
        "'faithful' only when it lies above zero; a vague or too broad explanation fits both alike. None when the "
        "check is off or the corpus has fewer than two top texts (above the module's median) or near misses.",
    )
    related_texts: list[str]
    unrelated_texts: list[str]
    shown_ngrams: list[str] = Field(description="The top n-grams this candidate was summarised from.")

    @property
    def separates_near_misses(self) -> bool:
        return self.near_miss_check is not None and self.near_miss_check.verdict == "faithful"


class SASCResult(MethodResult):
    method: str = "sasc"
    candidates: list[ExplanationCandidate] = Field(description="Best first; unscored candidates last.")
    top_ngrams: list[NgramActivation]
    n_ngrams: int
    module_mean: float
    module_std: float
    top_texts: list[str] = Field(default_factory=list, description="The corpus texts the module scores highest.")
    near_misses: list[str] = Field(
        default_factory=list,
        description="The corpus texts most like the top texts (TF-IDF cosine) that the module scores at or below its "
        "median: what a precise explanation must not fit.",
    )

    @property
    def best(self) -> ExplanationCandidate | None:
        return self.candidates[0] if self.candidates else None


async def explain_module(
    llm: LLM,
    module: BlackBox,
    corpus: Sequence[str] | None = None,
    options: SASCOptions | None = None,
) -> SASCResult:
    """Summarize and score `module` (a 'module' black box) over `corpus` (default: movie-review sentences)."""
    options = options or SASCOptions()
    if module.kind != "module":
        raise ValueError(f"SASC explains a 'module' black box (text -> float); {module.name} is {module.kind!r}")
    corpus = list(default_corpus() if corpus is None else corpus)
    ngrams = unique_ngrams(corpus, options.max_ngram)
    if not ngrams:
        raise ValueError("the corpus has no words to build n-grams from; pass texts with words in them")
    prompts = [load_prompt(f"sasc/{name}") for name in ("summarize", "related", "unrelated")]
    with measure_cost(module) as meter:
        responses = await module.apredict(ngrams + corpus if options.n_near_misses else ngrams)
        activations, corpus_responses = responses[: len(ngrams)], responses[len(ngrams) :]
        std = float(activations.std())
        if std == 0.0:
            raise ValueError(f"{module.name} gives every n-gram the same value; there is no response to explain")
        top = top_k(ngrams, activations, options.top_ngrams)
        subsets = _subsets([n for n, _ in top], options)
        explanations = await _summarize(llm, subsets, options)
        top_texts, misses = near_misses(corpus, corpus_responses, options.n_near_misses)
        candidates, checks = await asyncio.gather(  # independent rounds: written texts, and the judge's scores
            _score(llm, module, explanations, std, options),
            judge_near_misses(llm, list(explanations), top_texts, misses),
        )
        candidates = [c.model_copy(update={"near_miss_check": check}) for c, check in zip(candidates, checks)]
        if any(checks):
            prompts.append(load_prompt("sasc/judge"))
    ranked = rank(candidates)
    notes = []
    if ranked and top_texts and misses and not ranked[0].separates_near_misses:
        notes.append(
            "no candidate told the module's top texts from their near misses (the LLM's judged fit was not higher "
            "on the top texts): each may be too vague or too broad, or this LLM cannot judge; the ranking is by "
            "the related / unrelated score alone"
        )
    return SASCResult(
        notes=notes,
        candidates=ranked,
        top_texts=top_texts,
        near_misses=misses,
        top_ngrams=[NgramActivation(ngram=n, activation=a) for n, a in top],
        n_ngrams=len(ngrams),
        module_mean=float(activations.mean()),
        module_std=std,
        prompt_versions=[p.ref for p in prompts],
        cost=meter.cost,
    )


def _subsets(top: list[str], options: SASCOptions) -> list[list[str]]:
    """One random subset of the top n-grams per candidate, each in activation order."""
    rng = np.random.default_rng(options.seed)
    size = min(options.subset_size, len(top))
    return [[top[i] for i in sorted(rng.choice(len(top), size, replace=False))] for _ in range(options.n_candidates)]


async def _summarize(llm: LLM, subsets: list[list[str]], options: SASCOptions) -> dict[str, list[str]]:
    """Ask for a theme per subset, all in one round; distinct, non-empty themes with the n-grams behind them."""
    template = load_prompt("sasc/summarize")
    requests = [
        GenerationRequest.user(template.render(phrases=fence("\n".join(s))), max_tokens=options.summary_max_tokens)
        for s in subsets
    ]
    replies = await llm.generate(requests)
    themes: dict[str, list[str]] = {}
    for subset, reply in zip(subsets, replies):
        theme = clean_explanation(reply.text)
        if theme and theme.lower() not in {t.lower() for t in themes}:
            themes[theme] = subset
    return themes


async def _score(
    llm: LLM, module: BlackBox, explanations: dict[str, list[str]], std: float, options: SASCOptions
) -> list[ExplanationCandidate]:
    """Texts about / not about every candidate in one LLM round, then one module pass over all of them."""
    related, unrelated = load_prompt("sasc/related"), load_prompt("sasc/unrelated")
    requests = [
        GenerationRequest.user(
            template.render(explanation=fence(explanation), n=options.n_texts), max_tokens=options.texts_max_tokens
        )
        for explanation in explanations
        for template in (related, unrelated)
    ]
    replies = await llm.generate(requests)
    texts = [split_lines(reply.text, options.n_texts) for reply in replies]
    flat = [text for group in texts for text in group]
    responses = iter((await module.apredict(flat)).tolist() if flat else [])
    candidates = []
    for position, (explanation, shown) in enumerate(explanations.items()):
        about, not_about = texts[2 * position], texts[2 * position + 1]
        about_values = [next(responses) for _ in about]
        not_about_values = [next(responses) for _ in not_about]
        candidates.append(
            ExplanationCandidate(
                explanation=explanation,
                score=explanation_score(about_values, not_about_values, std),
                mean_related=float(np.mean(about_values)) if about_values else None,
                mean_unrelated=float(np.mean(not_about_values)) if not_about_values else None,
                check=two_sample_check(about_values, not_about_values, scale=std),
                related_texts=about,
                unrelated_texts=not_about,
                shown_ngrams=shown,
            )
        )
    return candidates


def near_misses(texts: Sequence[str], responses: Sequence[float], n: int) -> tuple[list[str], list[str]]:
    """The n distinct texts the module scores highest (above its median), and the n distinct texts at or below the
    median most like any of them by TF-IDF cosine (word 1-2-grams): the hard negatives of delphi's detection
    scoring. Empty lists when n is 0 or the corpus has fewer than two of either."""
    values = np.asarray(responses, dtype=float)
    unique = {text: i for i, text in reversed(list(enumerate(texts)))}  # first occurrence of each text
    order = sorted(unique.values())
    if n < 1 or len(order) < 2:
        return [], []
    median = float(np.median(values[order]))
    high = [i for i in sorted(order, key=lambda i: -values[i]) if values[i] > median][:n]
    low = [i for i in order if values[i] <= median]
    if len(high) < 2 or len(low) < 2:  # one text on a side gives no spread to judge a gap by
        return [], []
    try:
        matrix = TfidfVectorizer(ngram_range=(1, 2)).fit_transform([texts[i] for i in order])
    except ValueError:  # no words at all
        return [], []
    row = {i: position for position, i in enumerate(order)}
    closeness = cosine_similarity(matrix[[row[i] for i in low]], matrix[[row[i] for i in high]]).max(axis=1)
    nearest = [low[j] for j in np.argsort(-closeness, kind="stable")[:n]]
    return [texts[i] for i in high], [texts[i] for i in nearest]


async def judge_near_misses(
    llm: LLM, explanations: Sequence[str], top_texts: Sequence[str], misses: Sequence[str]
) -> list[Check | None]:
    """Per explanation: the LLM's judged fit (log p(" yes") - log p(" no")) on the top texts minus on the near
    misses, with a Welch interval; one score call for every explanation x text. None for all without texts."""
    if not explanations or not top_texts or not misses:
        return [None] * len(explanations)
    judge = load_prompt("sasc/judge")
    texts = [*top_texts, *misses]
    requests = [
        ScoreRequest(
            prompt=judge.render(text=fence(text, label="text"), explanation=fence(explanation, label="description")),
            continuations=[" yes", " no"],
        )
        for explanation in explanations
        for text in texts
    ]
    scores = await llm.score(requests)
    fit = np.array([s.logprobs[0] - s.logprobs[1] for s in scores]).reshape(len(explanations), len(texts))
    return [two_sample_check(row[: len(top_texts)], row[len(top_texts) :]) for row in fit]


def explanation_score(related: Sequence[float], unrelated: Sequence[float], std: float) -> float | None:
    """SASC's score: the gap between mean responses on related and unrelated texts, in module standard deviations."""
    if not related or not unrelated:
        return None
    if std <= 0:
        raise ValueError(f"the module's standard deviation must be positive, got {std}")
    return float((np.mean(related) - np.mean(unrelated)) / std)


def rank(candidates: Sequence[ExplanationCandidate]) -> list[ExplanationCandidate]:
    """Scored candidates that separate the near misses first, then the other scored ones, each by score; those
    without a score last, in their original order."""
    return sorted(candidates, key=lambda c: (c.score is None, not c.separates_near_misses, -(c.score or 0.0)))


def clean_explanation(text: str) -> str:
    """The first non-empty line of a reply, without list markers, quotes or a trailing full stop."""
    for line in text.splitlines():
        line = LIST_MARKER.sub("", line).strip().strip("\"'`*").strip()
        line = THEME_LEAD.sub("", line).rstrip(".").strip().strip("\"'`").strip()
        if line:
            return line[:200]
    return ""


def split_lines(text: str, limit: int) -> list[str]:
    """At most `limit` distinct sentences, one per line, without list markers."""
    sentences: list[str] = []
    for line in text.splitlines():
        line = LIST_MARKER.sub("", line).strip().strip('"').strip()
        if len(line.split()) >= 2 and line not in sentences:
            sentences.append(line[:300])
        if len(sentences) == limit:
            break
    return sentences


async def _sasc(ctx: MethodContext, corpus: list, options: SASCOptions) -> SASCResult:
    """The inputs are the corpus whose n-grams are scored; none means the bundled movie-review sentences."""
    texts = [to_text(item) for item in corpus]
    return await explain_module(ctx.llm, ctx.blackbox, texts or None, options)


register(
    Method(
        name="sasc",
        description="What a text -> number model responds to, in words (Summarize and Score), scored on the model.",
        inputs=("module",),
        options=SASCOptions,
        result=SASCResult,
        run=_sasc,
        unit="set",
        long_running=True,
        min_inputs=0,
    )
)
