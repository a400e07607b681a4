"""iPrompt: find the rule behind (input, output) pairs as a prompt, and check it by using it.

The LLM proposes candidate instructions from random examples (one batched round). Every candidate is scored by
the mean log-likelihood of the true outputs given instruction + input over a sample of training pairs -- one `score`
call for all candidates x examples, with an instruction-free baseline in the same call. The best are kept; each is
truncated at a random word and regenerated (one batched round), and the new candidates are scored the same way.
At the end, the top prompts are used as zero-shot prompts on held-out pairs (one batched round): that accuracy is
the check of the explanation (DESIGN.md rule 1).

Near-miss rules: a prompt that scores well may still say no more than a rule that fits most pairs without being
the rule -- always give the commonest output, copy the input, give its first or last word. Those rules are
programs, so their held-out accuracy is exact (no LLM); each measured prompt's held-out answers are compared with
the best one's on the same pairs (paired t interval), and their instructions are scored in the likelihood round
beside the candidates. A prompt is good only when it beats them; the result says when the best one does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from xplain.llm import LLM, GenerationRequest, ScoreRequest
from xplain.methods.catalog import Method, MethodContext, register
from xplain.validation import check_pair
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.checks import Check, paired_difference_check, proportion_check
from xplain.methods.sasc import clean_explanation
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

MIN_EXAMPLES = 4
ANSWER_TRIM = " \t\"'`.,;:!?"


class IPromptOptions(BaseModel):
    n_candidates: int = Field(4, ge=1, le=32, description="Instructions proposed at the start.")
    n_keep: int = Field(2, ge=1, le=16, description="Best candidates kept (and mutated) each iteration.")
    n_mutations: int = Field(2, ge=0, le=8, description="Mutations of each kept candidate per iteration.")
    n_iterations: int = Field(2, ge=0, le=10, description="Rounds of mutate-and-score after the first proposals.")
    examples_in_prompt: int = Field(6, ge=1, le=30, description="Pairs shown to the LLM per proposal.")
    n_score_examples: int = Field(8, ge=1, le=200, description="Training pairs each candidate is scored on.")
    heldout_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    n_heldout: int = Field(12, ge=1, le=500, description="Most held-out pairs used for accuracy.")
    n_accuracy: int = Field(3, ge=1, le=16, description="Top candidates whose held-out accuracy is measured.")
    proposal_max_tokens: int = Field(40, ge=4, le=200)
    answer_max_tokens: int = Field(16, ge=1, le=200)
    seed: int = 0


class PromptCandidate(BaseModel):
    prompt: str
    loglik: float = Field(description="Mean log-likelihood (nats) of the true outputs given prompt + input.")
    gain: float = Field(description="loglik minus that of the same frame without an instruction.")
    iteration: int
    origin: Literal["proposed", "mutated"]
    heldout_accuracy: float | None = Field(None, description="Exact-match accuracy as a zero-shot prompt.")
    heldout_check: Check | None = Field(
        None, description="The held-out accuracy with its Wilson interval (from the number of held-out pairs)."
    )
    quotes_example: str | None = Field(
        None,
        description="A training pair the prompt copies (e.g. '12 -> even'): such prompts win the likelihood "
        "ranking by quoting, not by stating a rule, so they rank below every prompt that does not.",
    )
    near_miss_check: Check | None = Field(
        None,
        description="Held-out accuracy minus the best near-miss rule's, on the same pairs (paired t interval): "
        "'faithful' only when the prompt beats every rule that merely fits most pairs. None where not measured.",
    )
    loglik_over_near_misses: float | None = Field(
        None, description="loglik minus the best near-miss rule's (> 0: the likelihood prefers this prompt)."
    )


class NearMissRule(BaseModel):
    """A rule that fits many pairs without being the rule: the bar a prompt must clear."""

    name: Literal["majority", "copy", "first_word", "last_word"]
    prompt: str = Field(description="The rule as an instruction (scored by likelihood beside the candidates).")
    train_fit: float = Field(description="Share of training pairs the rule gives exactly.")
    heldout_accuracy: float = Field(description="Its exact-match accuracy on the held-out pairs (computed, no LLM).")
    loglik: float = Field(description="Mean log-likelihood of the true outputs after its instruction.")


class IPromptResult(MethodResult):
    method: str = "iprompt"
    candidates: list[PromptCandidate] = Field(description="By log-likelihood, best first.")
    baseline_loglik: float
    n_train: int
    n_heldout: int
    case_sensitive: bool = Field(
        False, description="Answers were compared with letter case, because the task's outputs differ by case."
    )
    near_misses: list[NearMissRule] = Field(
        default_factory=list, description="The near-miss rules a good prompt must beat, best held-out first."
    )
    heldout_separates: bool | None = Field(
        None,
        description="Whether the held-out check told the measured prompts apart (the best one's interval above the "
        "worst one's); False when every prompt scored alike (e.g. all 0: the LLM follows no prompt here, so the "
        "check cannot tell a true rule from noise); None with fewer than two measured.",
    )

    @property
    def best(self) -> PromptCandidate | None:
        return self.candidates[0] if self.candidates else None


async def explain_dataset(
    llm: LLM, inputs: Sequence[str], outputs: Sequence[str], options: IPromptOptions | None = None
) -> IPromptResult:
    """Search for the instruction that best explains how `inputs` map to `outputs`."""
    options = options or IPromptOptions()
    train, heldout = _split(inputs, outputs, options)
    rng = np.random.default_rng(options.seed)
    scored_on = [train[i] for i in rng.permutation(len(train))[: options.n_score_examples]]
    prompts = [load_prompt(f"iprompt/{name}") for name in ("propose", "mutate", "score_frame", "zero_shot")]
    case_sensitive = case_matters(train)
    with measure_cost() as meter:
        proposals = await _propose(llm, train, rng, options)
        rules = near_miss_rules(train, case_sensitive=case_sensitive)
        baseline, *logliks = await score_prompts(llm, ["", *proposals, *(prompt for _, prompt, _ in rules)], scored_on)
        logliks, rule_logliks = logliks[: len(proposals)], logliks[len(proposals) :]
        pool = {
            p: PromptCandidate(
                prompt=p, loglik=s, gain=s - baseline, iteration=0, origin="proposed", quotes_example=quoted_example(p, train)
            )
            for p, s in zip(proposals, logliks)
        }
        for iteration in range(1, options.n_iterations + 1):
            kept = keep_best(pool.values(), options.n_keep)
            mutants = [m for m in await _mutate(llm, kept, train, rng, options) if m not in pool]
            for prompt, score in zip(mutants, await score_prompts(llm, mutants, scored_on)):
                pool[prompt] = PromptCandidate(
                    prompt=prompt, loglik=score, gain=score - baseline, iteration=iteration, origin="mutated",
                    quotes_example=quoted_example(prompt, train),
                )  # fmt: skip
        ranked = keep_best(pool.values(), len(pool))
        hits = await heldout_hits(
            llm, [c.prompt for c in ranked[: options.n_accuracy]], heldout, options, case_sensitive=case_sensitive
        )
    misses = sorted(
        (
            NearMissRule(
                name=name, prompt=prompt, loglik=score,
                train_fit=float(rule_hits(predict, train, case_sensitive).mean()),
                heldout_accuracy=float(rule_hits(predict, heldout, case_sensitive).mean()),
            )
            for (name, prompt, predict), score in zip(rules, rule_logliks)
        ),
        key=lambda rule: (-rule.heldout_accuracy, -rule.train_fit),
    )  # fmt: skip
    bar = rule_hits({name: predict for name, _, predict in rules}[misses[0].name], heldout, case_sensitive)
    best_rule_loglik = max(rule.loglik for rule in misses)
    ranked = [
        c.model_copy(
            update={
                "heldout_accuracy": None if row is None else float(row.mean()),
                "heldout_check": None if row is None else proportion_check(int(row.sum()), len(heldout)),
                "near_miss_check": None if row is None else paired_difference_check(row - bar),
                "loglik_over_near_misses": c.loglik - best_rule_loglik,
            }
        )
        for c, row in zip(ranked, [*hits, *[None] * len(ranked)])
    ]  # fmt: skip
    measured = [float(row.mean()) for row in hits]
    separates = heldout_separates([c.heldout_check for c in ranked if c.heldout_check is not None])
    notes = [] if separates is not False else [
        "the held-out check scored every measured prompt alike (best "
        f"{max(measured):.2f} of {len(heldout)} pairs): with this LLM it cannot tell a true rule from noise, so "
        "only the log-likelihood ranking orders the candidates"
    ]
    best = ranked[0] if ranked else None
    if best is not None and best.near_miss_check is not None and best.near_miss_check.verdict != "faithful":
        low, high = best.near_miss_check.interval
        notes.append(
            f"the best prompt does not beat the near-miss rule '{misses[0].prompt}' ({misses[0].name}): held-out "
            f"{best.heldout_accuracy:.2f} against {misses[0].heldout_accuracy:.2f} on the same {len(heldout)} pairs "
            f"(difference {best.near_miss_check.estimate:+.2f}, 95% interval [{low:.2f}, {high:.2f}]), so the pairs "
            "do not show it is better than a rule that merely fits many of them"
        )
    return IPromptResult(
        notes=notes,
        near_misses=misses,
        heldout_separates=separates,
        candidates=ranked,
        baseline_loglik=baseline,
        n_train=len(train),
        n_heldout=len(heldout),
        case_sensitive=case_sensitive,
        prompt_versions=[p.ref for p in prompts],
        cost=meter.cost,
    )


def case_matters(pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether letter case carries the task: some output is its input in another case ("abc" -> "ABC"), or two
    different outputs differ only by case."""
    if any(y != x and y.lower() == x.lower() for x, y in pairs):
        return True
    outputs = {y for _, y in pairs}
    return len({y.lower() for y in outputs}) < len(outputs)


def quoted_example(prompt: str, pairs: Sequence[tuple[str, str]]) -> str | None:
    """The first training pair the prompt copies as "input <separator> output" ("12 -> even", "12: even")."""
    for x, y in pairs:
        if re.search(rf"(?<!\w){re.escape(x)}(?!\w)\W{{1,8}}(?<!\w){re.escape(y)}(?!\w)", prompt, re.IGNORECASE):
            return f"{x} -> {y}"
    return None


def _split(
    inputs: Sequence[str], outputs: Sequence[str], options: IPromptOptions
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    if isinstance(inputs, str) or isinstance(outputs, str):
        raise ValueError("inputs and outputs must be lists of strings, not single strings")
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs; give one output per input")
    pairs = [(str(x).strip(), str(y).strip()) for x, y in zip(inputs, outputs)]
    if len(pairs) < MIN_EXAMPLES:
        raise ValueError(f"iPrompt needs at least {MIN_EXAMPLES} (input, output) pairs, got {len(pairs)}")
    empty = [i for i, (x, y) in enumerate(pairs) if not x or not y]
    if empty:
        raise ValueError(f"pairs {empty[:5]} have an empty input or output; remove or fill them")
    order = np.random.default_rng(options.seed).permutation(len(pairs))
    n_heldout = min(options.n_heldout, max(1, round(len(pairs) * options.heldout_fraction)))
    return [pairs[i] for i in order[n_heldout:]], [pairs[i] for i in order[:n_heldout]]


def _examples_block(pairs: Sequence[tuple[str, str]]) -> str:
    return fence("\n".join(f"{x} -> {y}" for x, y in pairs))


def _sample(pairs: list[tuple[str, str]], rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    return [pairs[i] for i in rng.choice(len(pairs), min(k, len(pairs)), replace=False)]


async def _propose(
    llm: LLM, train: list[tuple[str, str]], rng: np.random.Generator, options: IPromptOptions
) -> list[str]:
    """Candidate instructions from random example subsets, one round; distinct and non-empty."""
    template = load_prompt("iprompt/propose")
    requests = [
        GenerationRequest.user(
            template.render(examples=_examples_block(_sample(train, rng, options.examples_in_prompt))),
            max_tokens=options.proposal_max_tokens,
        )
        for _ in range(options.n_candidates)
    ]
    return _distinct(clean_explanation(c.text) for c in await llm.generate(requests))


async def _mutate(
    llm: LLM,
    kept: list[PromptCandidate],
    train: list[tuple[str, str]],
    rng: np.random.Generator,
    options: IPromptOptions,
) -> list[str]:
    """Truncate each kept prompt at a random word and let the LLM write the rest, all in one round."""
    template = load_prompt("iprompt/mutate")
    prefixes, requests = [], []
    for candidate in kept:
        for _ in range(options.n_mutations):
            prefix = truncate(candidate.prompt, rng)
            prefixes.append(prefix)
            examples = _examples_block(_sample(train, rng, options.examples_in_prompt))
            requests.append(
                GenerationRequest.user(
                    template.render(examples=examples, prefix=prefix), max_tokens=options.proposal_max_tokens
                )
            )
    replies = await llm.generate(requests) if requests else []
    return _distinct(join_continuation(p, clean_explanation(r.text)) for p, r in zip(prefixes, replies))


def truncate(prompt: str, rng: np.random.Generator) -> str:
    """The prompt cut after a random number of words (at least one, fewer than all when it has several)."""
    tokens = prompt.split()
    keep = int(rng.integers(1, len(tokens))) if len(tokens) > 1 else 1
    return " ".join(tokens[:keep])


def join_continuation(prefix: str, reply: str) -> str:
    """The mutated prompt: the reply if it restates the prefix, else prefix + reply."""
    if not reply:
        return ""
    if reply.lower().startswith(prefix.lower()):
        return reply
    return f"{prefix} {reply}"


def _distinct(prompts) -> list[str]:
    seen: dict[str, str] = {}
    for prompt in prompts:
        if prompt and prompt.lower() not in seen:
            seen[prompt.lower()] = prompt
    return list(seen.values())


async def score_prompts(llm: LLM, prompts: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[float]:
    """Mean log-likelihood of each pair's output given prompt + input: ONE score call for all prompts x pairs."""
    if not prompts:
        return []
    frame = load_prompt("iprompt/score_frame")
    requests = [
        ScoreRequest(prompt=frame.render(instruction=prompt, input=x), continuations=[f" {y}"])
        for prompt in prompts
        for x, y in pairs
    ]
    scores = await llm.score(requests)
    per_pair = np.array([s.logprobs[0] for s in scores]).reshape(len(prompts), len(pairs))
    return per_pair.mean(axis=1).tolist()


def keep_best(candidates, n: int) -> list[PromptCandidate]:
    """The n candidates with the highest log-likelihood, those quoting a training example after all others; ties
    go to the earlier candidate."""
    return sorted(candidates, key=lambda c: (c.quotes_example is not None, -c.loglik))[:n]


def heldout_separates(checks: Sequence[Check]) -> bool | None:
    """True when the best held-out accuracy's interval lies above the worst's; None with fewer than two."""
    if len(checks) < 2:
        return None
    best = max(checks, key=lambda c: c.estimate)
    worst = min(checks, key=lambda c: c.estimate)
    return best.interval[0] > worst.interval[1]


async def heldout_hits(
    llm: LLM,
    prompts: Sequence[str],
    heldout: Sequence[tuple[str, str]],
    options: IPromptOptions,
    *,
    case_sensitive: bool = False,
) -> list[np.ndarray]:
    """Per prompt used zero-shot, 1.0 or 0.0 per held-out pair (exact match); one generate round for all."""
    if not prompts:
        return []
    template = load_prompt("iprompt/zero_shot")
    requests = [
        GenerationRequest.user(template.render(instruction=p, input=fence(x)), max_tokens=options.answer_max_tokens)
        for p in prompts
        for x, _ in heldout
    ]
    replies = await llm.generate(requests)
    hits = np.array(
        [answer_matches(r.text, y, case_sensitive=case_sensitive) for r, (_, y) in zip(replies, heldout * len(prompts))],
        dtype=float,
    )
    return list(hits.reshape(len(prompts), len(heldout)))


def near_miss_rules(
    train: Sequence[tuple[str, str]], *, case_sensitive: bool = False
) -> list[tuple[str, str, Callable[[str], str]]]:
    """(name, instruction, rule) for each near-miss rule: the commonest training output always (kept even when it
    fits little: it is the chance level), and copying the input, its first or its last word where they give at
    least one training pair."""
    outputs = [y if case_sensitive else y.lower() for _, y in train]
    values, counts = np.unique(outputs, return_counts=True)
    common = next(y for _, y in train if (y if case_sensitive else y.lower()) == values[counts.argmax()])
    rules: list[tuple[str, str, Callable[[str], str]]] = [
        ("majority", f'Answer "{common}" whatever the input.', lambda x: common),
        ("copy", "Repeat the input.", lambda x: x),
        ("first_word", "Answer with the first word of the input.", lambda x: x.split()[0] if x.split() else ""),
        ("last_word", "Answer with the last word of the input.", lambda x: x.split()[-1] if x.split() else ""),
    ]
    return rules[:1] + [r for r in rules[1:] if rule_hits(r[2], train, case_sensitive).any()]


def rule_hits(rule: Callable[[str], str], pairs: Sequence[tuple[str, str]], case_sensitive: bool) -> np.ndarray:
    """1.0 or 0.0 per pair: whether the rule's output matches, as a zero-shot answer would be judged."""
    return np.array([answer_matches(rule(x), y, case_sensitive=case_sensitive) for x, y in pairs], dtype=float)


def answer_matches(reply: str, target: str, *, case_sensitive: bool = False) -> bool:
    """The reply's first line starts with the target's words (quotes and end punctuation ignored; case too,
    unless the task's outputs differ by case)."""
    line = next((line for line in reply.splitlines() if line.strip()), "")
    said = re.sub(r"^(?:output|answer)\s*:\s*", "", line.strip(), flags=re.IGNORECASE)
    if not case_sensitive:
        said, target = said.lower(), target.lower()
    said, wanted = said.split(), target.split()
    said = [w.strip(ANSWER_TRIM) for w in said[: len(wanted)]]
    return bool(wanted) and said == [w.strip(ANSWER_TRIM) for w in wanted]


async def _iprompt(ctx: MethodContext, items: list, options: IPromptOptions) -> IPromptResult:
    pairs = [check_pair(item) for item in items]
    return await explain_dataset(ctx.llm, [i for i, _ in pairs], [o for _, o in pairs], options)


register(
    Method(
        name="iprompt",
        description="The instruction that best explains how inputs map to outputs (iPrompt), with its held-out "
        "accuracy when used as a prompt.",
        inputs=("pairs",),
        options=IPromptOptions,
        result=IPromptResult,
        run=_iprompt,
        unit="set",
        long_running=True,
        needs_model=False,
        min_inputs=MIN_EXAMPLES,
    )
)
