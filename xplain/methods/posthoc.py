"""LLM post-hoc explanations of tabular and text classifiers (Kroeger et al., "Are Large Language Models Post Hoc Explainers?").

Per instance: a Gaussian neighbourhood on standardised features (categorical columns resampled from the background),
ONE black-box query for every instance's neighbourhood, in-context examples shown as changes from the instance with
features renamed A, B, C… in a seeded random order per instance (small LLMs favour early letters; in column order
that bias passed as skill), and ONE batched structured LLM round asking for the top-k features with a sign
(optionally under several shufflings, ranks aggregated). Answers that repeat or invent features are re-asked once
in one follow-up round; every answer is then checked against the black box (PGI / PGU with an interval and a
verdict), never taken on trust.

Texts (`explain_text`): the features are the text's own distinct words, the neighbourhood drops words at random,
and each text's answer schema admits only its own words. A weak LLM proposes by *choice* instead of generation
(`proposal`): it scores candidate words (the evidence's strongest and a few drawn by the row's content seed) by
likelihood in one prefix-shared scoring round, and its top k are checked and repaired like a generated answer.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from xplain.blackbox import BlackBox, TableSchema
from xplain.blackbox.schema import numeric_schema
from xplain.methods.checks import Check, Gaps, prediction_gaps, text_prediction_gaps
from xplain.llm import LLM
from xplain.llm.types import GenerationRequest, LLMError, ScoreRequest, Structured, StructuredOutputError
from xplain.errors import InvalidInput
from xplain.methods.base import Cost, MethodResult, measure_cost
from xplain.methods.chat_answers import MAX_LISTED, check_words, subject
from xplain.methods.catalog import BackgroundRows, ChatForm, Method, MethodContext, register
from xplain.methods.seeding import row_rng
from xplain.methods.words import distinct_words, remove_words
from xplain.prompts import load_prompt
from xplain.prompts.data import fence
from xplain.validation import reference_rows

Strategy = Literal["perturbation", "prediction", "instruction", "explanation"]
Proposal = Literal["auto", "generate", "choose"]
STRATEGIES: tuple[Strategy, ...] = (
    "perturbation",
    "prediction",
    "instruction",
    "explanation",
)
TEXT_STRATEGIES: tuple[Strategy, ...] = ("perturbation", "prediction")
RETRY_PROMPT = "posthoc/retry"
REASK_PROMPT = "posthoc/reask"
CHOOSE_PROMPT = "posthoc/choose"
#: Backends whose model is too weak to generate a useful proposal, so `proposal: auto` has it choose (the embedded
#: 135M model kept 0 of 12 generated proposals on unseen reviews); servers and engines generate.
CHOOSING_BACKENDS = {"llamacpp"}
MAX_FEATURES = len(string.ascii_uppercase) * 2
RATIONALE_LENGTH = 120


def feature_letters(n: int) -> list[str]:
    """A, B, … Z, then AA, AB, …: names that carry no meaning the LLM could lean on instead of the data."""
    single = list(string.ascii_uppercase)
    return (single + ["A" + c for c in single])[:n]


class PosthocOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = "perturbation"
    k: int = Field(
        default=4, ge=1, le=10, description="How many top features the LLM names."
    )
    n_samples: int = Field(
        default=24, ge=4, le=5000, description="Neighbourhood rows sampled per instance."
    )
    n_examples: int = Field(
        default=8,
        ge=2,
        le=16,
        description="Neighbours shown to the LLM (class balanced).",
    )
    sigma: float = Field(
        default=0.3,
        gt=0,
        le=10,
        description="Gaussian noise in standard deviations of each feature.",
    )
    categorical: list[int] = Field(
        default_factory=list, description="Column indices resampled, not perturbed."
    )
    resample_probability: float = Field(default=0.3, ge=0, le=1)
    n_gap_samples: int = Field(
        default=8,
        ge=2,
        le=1000,
        description="Perturbed copies per instance for PGI / PGU in the first round.",
    )
    max_gap_samples: int = Field(
        default=64,
        ge=2,
        le=4000,
        description="Budget of perturbed copies per instance: PGI / PGU sampling doubles until the check's "
        "interval excludes zero or this many were drawn.",
    )
    letter_order: Literal["shuffled", "columns"] = Field(
        default="shuffled",
        description="Tables: letters A, B, … go to the features in a seeded random order per instance and shuffle "
        "(so the LLM's preference for early letters cannot pass as skill), or in column order.",
    )
    names: Literal["hidden", "shown"] = Field(
        default="hidden",
        description="Tables: hide the columns behind letters A, B, … (the paper's mode, so the LLM reads the data, "
        "not the names), or show their names and the row's values (`workclass = Private, age = 39`).",
    )
    n_shuffles: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Tables: ask the LLM under this many letter shufflings and aggregate the ranks (Borda); the "
        "agreement between shufflings is reported as the LLM's own stability.",
    )
    drop_probability: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Text: chance that a neighbour drops each word.",
    )
    max_words: int = Field(
        default=30,
        ge=2,
        le=60,
        description="Text: the first distinct words that serve as features.",
    )
    rationales: bool = Field(
        default=False,
        description="Ask the LLM for a short reason per feature (kept only where it names the feature it explains). "
        "Off, the LLM writes only features and signs, and each feature's rationale is its measured effect: no "
        "tokens are spent on text no check reads.",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=16,
        le=1000,
        description="Tokens the LLM may write per answer; unset, the longest answer the answer's schema allows.",
    )
    repair: bool = Field(
        default=True,
        description="Return a verified explanation: a proposal that fails its check, names fewer than k usable "
        "features or is positional is re-asked once with the neighbourhood's evidence, then repaired from that "
        "evidence (fill, then swap greedily on the check); False returns the LLM's proposal as it is.",
    )
    proposal: Proposal = Field(
        default="auto",
        description="How the LLM proposes its top k. generate: it writes them as JSON under the strategy's prompt "
        "(the paper's four ICL strategies). choose (texts): it scores candidate words (the neighbourhood's 2k "
        "strongest and k more drawn by the text's own seed) by likelihood in one scoring round and proposes the k "
        "most likely; no strategy prompt, no rationales, nothing generated. auto: choose on the embedded model "
        "(llamacpp) for texts without rationales, else generate. Either proposal is then checked and repaired.",
    )
    seed: int = 0
    background: BackgroundRows = None


def proposal_mode(options: PosthocOptions, llm: LLM, kind: str) -> Literal["generate", "choose"]:
    """`options.proposal` with auto resolved: choosing needs a text (candidate words) and no generated rationale,
    and pays off where the model is weak (the embedded one); a capable server generates."""
    if options.proposal != "auto":
        return options.proposal
    weak = llm.backend.name in CHOOSING_BACKENDS
    return "choose" if kind == "text" and not options.rationales and weak else "generate"


def _draw_options(options: PosthocOptions) -> PosthocOptions:
    """The options as they seed a row's draws: the proposal mode left out, so a row has the same neighbourhood and
    checks whichever way the LLM proposes (and auto equals the mode it resolves to)."""
    return options.model_copy(update={"proposal": "auto"})


class FeatureAttribution(BaseModel):
    feature: str
    direction: Literal["+", "-"]
    rationale: str = Field(
        description="Why, in at most 120 characters: the LLM's reason when it names the feature it explains, "
        "else the neighbourhood's measured effect."
    )
    source: Literal["llm", "evidence"] = Field(
        default="llm", description="Who chose this feature: the LLM's proposal, or the repair from the evidence."
    )


class CheckedFeatures(BaseModel):
    """A top-k with its check on the black box (PGI, PGU, and PGI - PGU with its interval and verdict)."""

    features: list[FeatureAttribution]
    pgi: float | None = None
    pgu: float | None = None
    faithfulness: Check | None = None


class PosthocExplanation(MethodResult):
    """Ranked features for one instance, with the black box's own check of them beside the claim."""

    strategy: Strategy
    instance: dict[str, Any] | list[float] | str = Field(
        description="The row explained (column -> value, in the user's terms), or the text."
    )
    predicted_label: str
    features: list[FeatureAttribution] = Field(
        description="Most important first; empty if the LLM never answered."
    )
    pgi: float | None = Field(
        description="Mean change of the predicted-class probability when the named features are perturbed."
    )
    pgu: float | None = Field(
        description="The same when every other feature is perturbed (lower is better)."
    )
    faithfulness: Check | None = Field(
        default=None,
        description="PGI - PGU with its confidence interval and verdict (faithful only when it excludes zero).",
    )
    letters: list[dict[str, str]] = Field(
        default_factory=list,
        description="Tables: per shuffle, which feature each letter in the prompt stood for.",
    )
    shuffle_agreement: float | None = Field(
        default=None,
        description="Mean share of top-k features two letter shufflings agree on (1 = order-independent); None "
        "with fewer than two usable answers.",
    )
    llm_attempts: int
    rejected: list[str] = Field(
        default_factory=list,
        description="Feature names the LLM gave that were refused: outside the text or the row, or named more than "
        "once (such a name counts once, at its first rank, in `proposed`).",
    )
    error: str | None = Field(
        default=None, description="Why the LLM gave no usable proposal (the returned features then come from the evidence)."
    )
    proposed: CheckedFeatures | None = Field(
        default=None, description="The LLM's own proposal with its check, before any repair."
    )
    reasked: CheckedFeatures | None = Field(
        default=None,
        description="Where the proposal was not kept (and repair is on): the LLM's second proposal, asked once "
        "more with the neighbourhood's evidence and why the first was not kept, with its check.",
    )
    evidence_only: CheckedFeatures | None = Field(
        default=None,
        description="The top-k of the neighbourhood's evidence alone (local linear effects, no LLM) on the same "
        "black-box rows, with its check on the same draws.",
    )
    repair: str = Field(default="", description="What verification did to the proposal, and why.")
    llm_features_kept: int = Field(
        default=0, description="How many returned features the LLM proposed (first or when re-asked)."
    )
    llm_added_value: float | None = Field(
        default=None,
        description="PGI - PGU of the returned features minus that of the evidence-only top-k on the same draws: "
        "what the LLM added over the evidence at the same budget (<= 0: nothing).",
    )
    proposal: Literal["generated", "choice"] = Field(
        default="generated",
        description="How the LLM made `proposed`: generated as JSON, or chosen by likelihood among candidates.",
    )
    choice_scores: dict[str, float] | None = Field(
        default=None,
        description="Under choice: each candidate word's score, its log-likelihood as the word that makes the "
        "classifier say the predicted label minus its mean for the other classes (nats; the word's own frequency "
        "cancels); the k highest were proposed.",
    )
    positional_answer: bool | None = Field(
        default=None,
        description="Tables: True when every usable answer named exactly the first letters it was shown, across "
        "at least two shuffles (a position, not a reading of the data); None with fewer than two usable answers. "
        "Texts: True when the answer named exactly the first words of the text (two or more) and the "
        "neighbourhood's evidence does not rank those words first; None for an answer of fewer than two words.",
    )

    @property
    def verified(self) -> CheckedFeatures:
        """What is returned, with its check (the top-level features, PGI, PGU and faithfulness)."""
        return CheckedFeatures(features=self.features, pgi=self.pgi, pgu=self.pgu, faithfulness=self.faithfulness)


def _answer_schema(allowed: list[str], k: int, rationales: bool = False) -> type[BaseModel]:
    """Enum of the allowed names (letters, or a text's own words), bounded list and strings, as the grammar needs;
    a rationale field only when asked for (nothing is generated that no check reads)."""
    reason = {"rationale": (str, Field(max_length=RATIONALE_LENGTH))} if rationales else {}
    item = create_model(
        "RankedFeature",
        feature=(Literal[tuple(allowed)], ...),
        direction=(Literal["+", "-"], ...),
        **reason,
    )
    return create_model(
        "RankedFeatures", features=(list[item], Field(min_length=1, max_length=k))
    )


def sample_neighbourhood(
    x: np.ndarray,
    scale: np.ndarray,
    background: np.ndarray,
    options: PosthocOptions,
    rng: np.random.Generator,
    schema: TableSchema | None = None,
) -> np.ndarray:
    """Gaussian noise in each numeric column's own units; categorical, boolean and ordinal columns (the schema's,
    and `options.categorical`) redrawn from the background's values; integers rounded; immutables kept."""
    schema = schema or numeric_schema([f"x{j}" for j in range(x.size)])
    return schema.perturb(
        x, options.n_samples, sigma=options.sigma, scale=scale, background=background, rng=rng,
        resample_probability=options.resample_probability, resampled=options.categorical,
    )  # fmt: skip


def select_examples(probabilities: np.ndarray, n: int) -> np.ndarray:
    """Indices of the most confident neighbours, half from each side of 0.5 where both sides have some."""
    above = np.flatnonzero(probabilities >= 0.5)
    below = np.flatnonzero(probabilities < 0.5)
    n_below = min(len(below), n // 2)
    n_above = min(len(above), n - n_below)
    n_below = min(len(below), n - n_above)
    top_above = above[np.argsort(-probabilities[above])][:n_above]
    top_below = below[np.argsort(probabilities[below])][:n_below]
    return np.concatenate([top_above, top_below]).astype(int)


def local_linear_weights(deltas: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """LIME's surrogate on an already-queried neighbourhood: proximity-weighted ridge of probability on changes."""
    weights = np.exp(-np.sum(deltas**2, axis=1) / 2.0)
    centred = deltas - np.average(deltas, axis=0, weights=weights)
    target = probabilities - np.average(probabilities, weights=weights)
    gram = centred.T @ (centred * weights[:, None]) + np.eye(deltas.shape[1])
    return np.linalg.solve(gram, centred.T @ (weights * target))


def _format_examples(
    deltas: np.ndarray, outputs: list[str], letters: list[str], shown: list[list[str | None]] | None = None
) -> str:
    """Each neighbour's changes: numbers as standardised steps (`A +0.30`), and where `shown` gives the new
    value of a category or boolean, that value (`C = Private`)."""
    lines = []
    for n, (row, output) in enumerate(zip(deltas, outputs)):
        changes = ", ".join(
            f"{letter} = {shown[n][j]}" if shown and shown[n][j] is not None else f"{letter} {value:+.2f}"
            for j, (letter, value) in enumerate(zip(letters, row))
            if abs(value) >= 0.005
        )
        lines.append(f"changes: {changes or 'none'} -> {output}")
    return "\n".join(lines)


def _format_linear(weights: np.ndarray, letters: list[str], k: int) -> str:
    order = np.argsort(-np.abs(weights))[:k]
    return ", ".join(f"{letters[i]} ({'+' if weights[i] >= 0 else '-'})" for i in order)


def _problem(
    value: BaseModel | None, allowed: set[str], k: int
) -> tuple[str | None, list[str]]:
    """Why a schema-valid answer cannot be used (unknown or repeated features), and the names refused.

    A reply that never fit the schema is not re-asked here: `structured` already re-asked it with the errors.
    """
    if value is None:
        return None, []
    names = [item.feature for item in value.features]
    unknown = [n for n in names if n not in allowed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if unknown:
        return f"unknown features {unknown}.", unknown
    if repeated:
        return f"features named more than once: {repeated}.", repeated
    return None, []


def grounded_rationale(rationale: str, own: str, aliases: dict[str, str] | None = None) -> str:
    """The LLM's rationale if it names the feature it explains (tables: its letter, written back as the feature's
    name with every other named letter; texts: the word), cut to RATIONALE_LENGTH; "" when it names none, so that
    junk such as "1.1.1.1" is dropped rather than shown as a reason."""
    if aliases is None:
        if not re.search(rf"(?<!\w){re.escape(own)}(?!\w)", rationale, re.IGNORECASE):
            return ""
        return rationale.strip()[:RATIONALE_LENGTH]
    if not re.search(rf"(?<![\w]){re.escape(own)}(?![\w])", rationale):
        return ""
    written = re.sub(
        r"(?<!\w)([A-Z]{1,2})(?!\w)", lambda m: aliases.get(m.group(1), m.group(1)), rationale.strip()
    )
    return written[:RATIONALE_LENGTH]


@dataclass
class Evidence:
    """What the neighbourhood already measured for one instance, without the LLM: each feature's signed support
    for the predicted class (a local linear fit on the rows the black box scored), strongest first."""

    support: dict[str, float]
    label: str
    unit: str  # what one unit of support is: "+1 sd" (tables) or "removing it" (texts)
    discrete: frozenset[str] = frozenset()  # table columns whose unit is another value (categories, booleans)

    @property
    def order(self) -> list[str]:
        return sorted(self.support, key=lambda f: -abs(self.support[f]))

    def attribution(self, feature: str) -> FeatureAttribution:
        effect = self.support[feature]
        change = effect if self.unit == "+1 sd" else -effect
        return FeatureAttribution(
            feature=feature,
            direction="+" if effect >= 0 else "-",
            rationale=f"in the neighbourhood, {'changing it' if feature in self.discrete else self.unit} moves "
            f"P('{self.label}') by {change:+.3f}"[:RATIONALE_LENGTH],
            source="evidence",
        )


def repair_chain(proposal: list[str], evidence: list[str], k: int) -> list[list[str]]:
    """Candidate top-k sets from the LLM's proposal toward the evidence ranking, fewest changes first: the proposal
    filled to k with the evidence's best unused features, then its features swapped out one at a time, the weakest
    by the evidence first, for the evidence's next best; the evidence's own top-k last. Each set is ordered by the
    evidence."""
    kept = list(dict.fromkeys(proposal))[:k]
    rank = {f: i for i, f in enumerate(evidence)}
    current = kept + [f for f in evidence if f not in kept][: k - len(kept)]
    chain = [current]
    for weak in sorted(kept, key=lambda f: -rank.get(f, len(evidence))):
        replacement = next((f for f in evidence if f not in current), None)
        if replacement is None or rank[replacement] > rank.get(weak, len(evidence)):
            break  # the evidence has nothing better than what is left
        current = [replacement if f == weak else f for f in current]
        chain.append(current)
    chain.append(evidence[:k])
    unique: dict[frozenset, list[str]] = {}
    for candidate in chain:  # a repaired set is ranked by the evidence, which measured it
        unique.setdefault(frozenset(candidate), sorted(candidate, key=lambda f: rank.get(f, len(evidence))))
    return list(unique.values())


CheckSets = Callable[[list[int], list[list[str]]], Awaitable[list[Gaps | None]]]
#: Re-asks the LLM for the given rows, each told why its proposal was not kept: the rows' new proposals, in order.
Reask = Callable[[list[int], list[str]], Awaitable[list[list[FeatureAttribution]]]]


@dataclass
class Verification:
    proposed: CheckedFeatures
    reasked: CheckedFeatures | None
    evidence_only: CheckedFeatures
    verified: CheckedFeatures
    repair: str
    kept: int
    added_value: float | None
    draws: int  # perturbation draws spent on the checks of this instance's candidate sets


def _checked(features: list[FeatureAttribution], gaps: Gaps | None) -> CheckedFeatures:
    return CheckedFeatures(
        features=features,
        pgi=gaps.pgi if gaps else None,
        pgu=gaps.pgu if gaps else None,
        faithfulness=gaps.check if gaps else None,
    )


def _passes(gaps: Gaps | None) -> bool:
    return gaps is not None and gaps.check.verdict == "faithful"


def _why_not_kept(names: list[str], gaps: Gaps | None, positional: bool | None, k: int) -> str:
    if not names:
        return "the LLM named no usable feature"
    if positional:
        return "the answer was positional (the first letters or words it was shown)"
    if len(names) < k:
        return f"the LLM named {len(names)} usable features of k={k}"
    if gaps is None:
        return "the LLM's features were unchecked"
    return (
        f"the LLM's features were {gaps.check.verdict} (PGI - PGU {gaps.check.estimate:+.3f}, interval "
        f"{gaps.check.interval[0]:+.3f} to {gaps.check.interval[1]:+.3f})"
    )


async def verify_proposals(
    proposals: list[list[FeatureAttribution]],
    evidences: list[Evidence],
    k: int,
    check: CheckSets,
    *,
    repair: bool,
    positional: list[bool | None],
    reask: Reask | None = None,
) -> list[Verification]:
    """Propose, verify, repair. Round 1 checks every proposal and every evidence-only top-k (one black-box batch);
    a proposal with k features that passes (and is not positional) is returned as it is. With `repair`, the others
    are re-asked once, together, with the evidence and why their proposal was not kept (one LLM round), and the
    new proposals checked (one batch); one that passes is returned. What is still unkept walks `repair_chain` from
    the re-asked proposal (or the first, if the re-ask named nothing usable) in one batch, and the first set that
    passes is returned, else the best by PGI - PGU with the reason. Rationales are kept only where grounded; every
    other feature states its measured effect."""
    n = len(proposals)
    names = [[f.feature for f in p] for p in proposals]
    tops = [e.order[:k] for e in evidences]
    first_rows = [i for i in range(n) if names[i]] + list(range(n))
    first = await check(first_rows, [names[i] for i in range(n) if names[i]] + tops)
    proposal_gaps: list[Gaps | None] = [None] * n
    for i, gaps in zip(first_rows[: len(first_rows) - n], first):
        proposal_gaps[i] = gaps
    top_gaps = first[len(first) - n :]
    draws = [sum(g.check.n for g in (proposal_gaps[i], top_gaps[i]) if g) for i in range(n)]

    def accepted(features: list[str], gaps: Gaps | None, at_position: bool | None) -> bool:
        return len(features) == k and _passes(gaps) and at_position is not True

    unkept = [i for i in range(n) if repair and not accepted(names[i], proposal_gaps[i], positional[i])]
    whys = {i: _why_not_kept(names[i], proposal_gaps[i], positional[i], k) for i in range(n)}
    second: dict[int, list[FeatureAttribution]] = {}
    second_gaps: dict[int, Gaps | None] = {}
    if unkept and reask is not None:
        second = dict(zip(unkept, await reask(unkept, [whys[i] for i in unkept])))
        named = [i for i in unkept if second[i]]
        for i, gaps in zip(named, await check(named, [[f.feature for f in second[i]] for i in named]) if named else []):
            second_gaps[i] = gaps
            draws[i] += gaps.check.n if gaps else 0

    def attribution(i: int, feature: str) -> FeatureAttribution:
        llm = next((f for f in [*second.get(i, []), *proposals[i]] if f.feature == feature), None)
        measured = evidences[i].attribution(feature)
        if llm is None:
            return measured
        return llm.model_copy(update={"direction": measured.direction, "rationale": llm.rationale or measured.rationale})

    reasked_names = {i: [f.feature for f in second[i]] for i in second}
    chains: dict[int, list[list[str]]] = {}
    for i in unkept:
        if accepted(reasked_names.get(i, []), second_gaps.get(i), None):
            continue
        base = reasked_names.get(i) or names[i]
        tried = {frozenset(names[i]), frozenset(reasked_names.get(i, [])), frozenset(tops[i])}
        chains[i] = [c for c in repair_chain(base, evidences[i].order, k) if frozenset(c) not in tried]
    chain_rows = [i for i in chains for _ in chains[i]]
    third = iter(await check(chain_rows, [c for i in chains for c in chains[i]]) if chain_rows else [])
    results = []
    for i in range(n):
        proposed = _checked(proposals[i], proposal_gaps[i])
        reasked = _checked(second[i], second_gaps.get(i)) if i in second else None
        evidence_only = _checked([evidences[i].attribution(f) for f in tops[i]], top_gaps[i])
        if i not in unkept:
            chosen, gaps = names[i], proposal_gaps[i]
            reason = (
                f"none: repair is off; the LLM's proposal ({len(names[i])} of k={k} features) is returned as it is"
                if not repair
                else "none: the LLM's k features passed their check"
            )
        elif i not in chains:
            chosen, gaps = reasked_names[i], second_gaps[i]
            reason = f"re-asked: {whys[i]}; re-asked with the evidence, its k features passed their check"
        else:
            tried = [(c, next(third)) for c in chains[i]] + [(tops[i], top_gaps[i])]
            draws[i] += sum(g.check.n for _, g in tried[: len(chains[i])] if g)
            for llm_names, llm_gaps in ((reasked_names.get(i, []), second_gaps.get(i)), (names[i], proposal_gaps[i])):
                if len(llm_names) == k and llm_gaps is not None and not (positional[i] and llm_names is names[i]):
                    tried.insert(0, (llm_names, llm_gaps))
            asked = " and after a re-ask with the evidence" if reask is not None else ""
            passing = [(c, g) for c, g in tried if _passes(g)]
            if passing:
                chosen, gaps = passing[0]
                reason = (
                    f"repaired: {whys[i]}{asked}; returned the first set that passed, keeping as many LLM features as "
                    "could be"
                )
            else:
                chosen, gaps = max(tried, key=lambda t: t[1].check.estimate if t[1] else -np.inf)
                reason = (
                    f"repaired: {whys[i]}{asked}; no set of {k} features passed the check within its budget, so the "
                    "one with the largest PGI - PGU is returned and its verdict says so"
                )
        verified = _checked([attribution(i, f) for f in chosen], gaps)
        kept = sum(f in names[i] or f in reasked_names.get(i, []) for f in chosen)
        added = (
            gaps.check.estimate - top_gaps[i].check.estimate if gaps is not None and top_gaps[i] is not None else None
        )
        results.append(Verification(proposed, reasked, evidence_only, verified, reason, kept, added, draws[i]))
    return results


def positional_answer(answers: list[list[str]], letters: list[str]) -> bool | None:
    """True when at least two usable answers (letters named, one per shuffle) each named exactly the first letters
    shown; None when fewer than two answers were usable, since one answer cannot tell a position from a reading."""
    usable = [a for a in answers if a]
    if len(usable) < 2:
        return None
    return all(set(a) == set(letters[: len(a)]) for a in usable)


def positional_words(answer: list[str], shown: list[str], evidence: list[str]) -> bool | None:
    """Texts: True when the answer names exactly the first words shown (at least two: one word can be first by
    chance) while the evidence ranks other words above them; a reader whose first words also lead the evidence
    is not flagged. None for fewer than two words."""
    if len(answer) < 2:
        return None
    return set(answer) == set(shown[: len(answer)]) and set(answer) != set(evidence[: len(answer)])


def check_table(instances, n_features: int | None = None, schema: TableSchema | None = None) -> np.ndarray:
    """Rows to explain as a 2-D float array, finite except where the schema's column takes missing values, or a
    ValueError that says what is wrong with them."""
    try:
        table = np.atleast_2d(np.asarray(instances, dtype=float))
    except (TypeError, ValueError) as error:
        raise ValueError(f"rows to explain must be numbers: {error}") from error
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError(f"no rows to explain: got an array of shape {np.shape(instances)}; pass at least one row")
    if n_features is not None and table.shape[1] != n_features:
        raise ValueError(f"rows have {table.shape[1]} values but the model has {n_features} features")
    allowed = np.zeros(table.shape[1], dtype=bool)
    if schema is not None and len(schema.columns) == table.shape[1]:
        allowed = np.array([c.accepts_missing for c in schema.columns])
    bad = np.flatnonzero(~(np.isfinite(table) | (np.isnan(table) & allowed)).all(axis=1))
    if len(bad):  # InvalidInput: a caller with many rows retries them one by one, so that only this one fails
        where = f" (rows {bad[:5].tolist()})" if len(table) > 1 else ""
        raise InvalidInput(f"a missing or infinite number cannot be perturbed{where}; fill or drop it before explaining")
    return table


def letter_orders(instances: np.ndarray, options: PosthocOptions) -> list[list[np.ndarray]]:
    """Per instance and shuffle, the feature shown as each letter (order[j] is letter j's column).

    Each instance gets a random permutation seeded by its own values and the options (never by its place in the
    batch); its R shuffles are that permutation rotated by n/R steps each, so they differ and spread every feature
    over the early and late letters evenly."""
    n_shuffles = options.n_shuffles
    n_features = instances.shape[1]
    if options.letter_order == "columns":
        return [[np.arange(n_features)] * n_shuffles for _ in instances]
    bases = [row_rng(options.seed, x, _draw_options(options), "letters").permutation(n_features) for x in instances]
    return [[np.roll(base, -(r * n_features // n_shuffles)) for r in range(n_shuffles)] for base in bases]


def neighbour_surrogates(deltas: np.ndarray, probabilities: np.ndarray, chosen: np.ndarray, n: int = 3) -> list:
    """The 'explanation' strategy's in-context explanations: local linear fits centred on the row's own shown
    neighbours, from the rows already scored (other rows of the batch would make the answer depend on it)."""
    return [local_linear_weights(deltas - deltas[j], probabilities) for j in chosen[:n]]


def aggregate_rankings(answers: list[list[FeatureAttribution]], k: int) -> list[FeatureAttribution]:
    """Borda count over the shufflings' answers (rank r of k earns k - r), ties to the earlier first mention;
    the direction is the majority's, the rationale the first given."""
    points: dict[str, float] = {}
    signs: dict[str, int] = {}
    first: dict[str, FeatureAttribution] = {}
    for answer in answers:
        for rank, item in enumerate(answer):
            points[item.feature] = points.get(item.feature, 0.0) + (k - rank)
            signs[item.feature] = signs.get(item.feature, 0) + (1 if item.direction == "+" else -1)
            first.setdefault(item.feature, item)
    order = sorted(first, key=lambda f: -points[f])[:k]
    return [
        first[f].model_copy(update={"direction": first[f].direction if signs[f] == 0 else "+" if signs[f] > 0 else "-"})
        for f in order
    ]


def shuffle_agreement(answers: list[list[FeatureAttribution]], k: int) -> float | None:
    """Mean share of the top-k two usable answers have in common, over every pair of shufflings."""
    sets = [{f.feature for f in a[:k]} for a in answers if a]
    pairs = [(a, b) for n, a in enumerate(sets) for b in sets[n + 1 :]]
    if not pairs:
        return None
    return float(np.mean([len(a & b) / k for a, b in pairs]))


def split_exact(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights` by largest remainders: whole numbers that add up to `total`."""
    weights = np.asarray(weights, dtype=float)
    if weights.sum() <= 0:
        weights = np.ones(len(weights))
    exact = total * weights / weights.sum()
    shares = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - shares), kind="stable")[: total - shares.sum()]:
        shares[i] += 1
    return shares.tolist()


async def explain_tabular(
    llm: LLM,
    blackbox: BlackBox,
    instances: np.ndarray,
    background: np.ndarray,
    options: PosthocOptions | None = None,
) -> list[PosthocExplanation]:
    """Explain each row of `instances` (one black-box query for all neighbourhoods, one batched LLM round).

    Letters are assigned per instance by a seeded shuffle (kept in the result); with `n_shuffles` > 1 every
    instance is asked under several shufflings in the same round and the ranks are aggregated."""
    options = options or PosthocOptions()
    if blackbox.kind != "tabular":
        raise ValueError(
            f"explain_tabular needs a tabular black box, got kind {blackbox.kind!r}"
        )
    if proposal_mode(options, llm, "tabular") == "choose":
        raise ValueError(
            "proposal 'choose' scores a text's own words; tables are proposed by generation ('generate' or 'auto')"
        )
    instances = check_table(instances, schema=blackbox.schema)
    background = np.asarray(background, dtype=float)
    names = blackbox.feature_names or [f"x{i}" for i in range(instances.shape[1])]
    schema = blackbox.schema or numeric_schema(names)
    n_rows, n_features = instances.shape
    if background.ndim != 2 or background.shape[1] != n_features or len(background) < 2:
        raise ValueError(
            f"background must be at least 2 rows of {n_features} features, got shape {background.shape}"
        )
    named = options.names == "shown"
    if named and options.n_shuffles > 1:
        raise ValueError("n_shuffles shuffles hidden letters; with names shown there is nothing to shuffle")
    if n_features > MAX_FEATURES and not named:
        raise ValueError(
            f"at most {MAX_FEATURES} features can be renamed A..AZ; this table has {n_features}"
        )
    if options.k > n_features:
        raise ValueError(
            f"k={options.k} exceeds the {n_features} features of the table"
        )
    if any(not 0 <= c < n_features for c in options.categorical):
        raise ValueError(
            f"categorical column indices must lie in 0..{n_features - 1}, got {options.categorical}"
        )
    letters = names if named else feature_letters(n_features)
    orders = [[np.arange(n_features)]] * n_rows if named else letter_orders(instances, options)
    scale = schema.scale(background)

    with measure_cost(blackbox) as meter:
        draws = _draw_options(options)
        neighbourhoods = [
            sample_neighbourhood(x, scale, background, options, row_rng(options.seed, x, draws), schema)
            for x in instances
        ]
        probabilities = await blackbox.apredict_proba(
            np.vstack([instances, *neighbourhoods])
        )
        predicted = probabilities[:n_rows].argmax(axis=1)
        neighbour_probs = [
            probabilities[
                n_rows + i * options.n_samples : n_rows + (i + 1) * options.n_samples,
                predicted[i],
            ]
            for i in range(n_rows)
        ]
        deltas = [schema.changes(hood, x, scale) for hood, x in zip(neighbourhoods, instances)]
        shown = [_discrete_values(schema, hood) for hood in neighbourhoods]
        labels = [str(blackbox.classes_[c]) for c in predicted]
        surrogates = [
            local_linear_weights(d, p) for d, p in zip(deltas, neighbour_probs)
        ]

        template = load_prompt(f"posthoc/{options.strategy}")
        prompts, owners = [], []  # one prompt per (instance, shuffle)
        for i in range(n_rows):
            chosen = select_examples(neighbour_probs[i], options.n_examples)
            if options.strategy == "prediction":
                outputs = [
                    labels[i] if p >= 0.5 else f"not {labels[i]}"
                    for p in neighbour_probs[i][chosen]
                ]
            else:
                outputs = [f"{p:.2f}" for p in neighbour_probs[i][chosen]]
            nearby = neighbour_surrogates(deltas[i], neighbour_probs[i], chosen) if options.strategy == "explanation" else []
            for r, order in enumerate(orders[i]):
                explanations = "\n".join(_format_linear(weights[order], letters, options.k) for weights in nearby)
                prompts.append(
                    template.render(
                        label=labels[i],
                        letters=fence(schema.describe(instances[i]), label="row") if named else ", ".join(letters),
                        k=options.k,
                        reason=REASON if options.rationales else "",
                        examples=fence(
                            _format_examples(
                                deltas[i][chosen][:, order], outputs, letters,
                                [[row[c] for c in order] for row in (shown[i][n] for n in chosen)],
                            ),  # fmt: skip
                            label="data",
                        ),
                        explanations=fence(
                            explanations or "none available", label="explanations"
                        ),
                    )
                )
                owners.append((i, r))
        answer_schema = _answer_schema(letters, options.k, options.rationales)
        replies = await _ask(llm, prompts, answer_schema, options.max_tokens)

        problems = [_problem(_value(r), set(letters), options.k) for r in replies]
        retry_rows = [n for n, (problem, _) in enumerate(problems) if problem and not options.repair]
        if retry_rows:  # with repair on, the re-ask with the evidence names the problem instead
            retry = load_prompt(RETRY_PROMPT)
            follow_ups = [
                prompts[n]
                + "\n\n"
                + retry.render(
                    problem=problems[n][0],
                    letters=", ".join(letters),
                    k=options.k,
                    label=labels[owners[n][0]],
                    reason=REASON if options.rationales else "",
                )
                for n in retry_rows
            ]
            for n, reply in zip(
                retry_rows, await _ask(llm, follow_ups, answer_schema, options.max_tokens)
            ):
                replies[n] = _merge_attempts(replies[n], reply)

        def features_of(reply: Structured | StructuredOutputError, order: np.ndarray) -> list[FeatureAttribution]:
            """The answer in the table's feature names (read through the letters its prompt used); [] if unusable."""
            value = _value(reply)
            if value is None or _problem(value, set(letters), options.k)[0] is not None:
                return []
            shown = {letter: names[c] for letter, c in zip(letters, order)}
            return [
                FeatureAttribution(
                    feature=shown[f.feature], direction=f.direction,
                    rationale=grounded_rationale(getattr(f, "rationale", ""), f.feature, shown),
                )
                for f in value.features
            ]  # fmt: skip

        answers: list[list[list[FeatureAttribution]]] = [[] for _ in range(n_rows)]
        named_letters: list[list[list[str]]] = [[] for _ in range(n_rows)]
        first_prompt: dict[int, int] = {}  # instance -> its first shuffle's prompt
        for n, (reply, (i, r)) in enumerate(zip(replies, owners)):
            first_prompt.setdefault(i, n)
            found = features_of(reply, orders[i][r])
            answers[i].append(found)
            named_letters[i].append([f.feature for f in reply.value.features] if found else [])
        ranked = [aggregate_rankings(a, options.k) for a in answers]
        positional = [positional_answer(a, letters) for a in named_letters]
        discrete = frozenset(c.name for c in schema.columns if c.discrete)
        evidences = [
            Evidence(dict(zip(names, map(float, w))), label, "+1 sd", discrete) for w, label in zip(surrogates, labels)
        ]
        reasks: dict[int, Structured | StructuredOutputError] = {}

        async def reask(rows: list[int], whys: list[str]) -> list[list[FeatureAttribution]]:
            """Each row once more, under its first shuffle's letters, with the evidence in those letters."""
            follow_ups = []
            for i, why in zip(rows, whys):
                n = first_prompt[i]
                as_letter = {names[c]: letter for letter, c in zip(letters, orders[i][0])}
                follow_ups.append(
                    prompts[n] + "\n\n" + _reask_prompt(options, labels[i], problems[n][0] or why, evidences[i], as_letter)
                )
            again = await _ask(llm, follow_ups, answer_schema, options.max_tokens, attempts=1)
            reasks.update(zip(rows, again))
            return [features_of(reply, orders[i][0]) for i, reply in zip(rows, again)]

        async def check(rows: list[int], sets: list[list[str]]) -> list[Gaps | None]:
            return await prediction_gaps(
                blackbox, instances[rows], [[names.index(f) for f in chosen] for chosen in sets],
                scale=scale, sigma=options.sigma, n_samples=options.n_gap_samples,
                max_samples=options.max_gap_samples, seed=options.seed, background=background,
            )  # fmt: skip

        verified = await verify_proposals(
            ranked, evidences, options.k, check, repair=options.repair, positional=positional, reask=reask
        )

    versions = _versions(template, retry_rows, reasks)
    per_row = [
        [replies[n] for n, (i, _) in enumerate(owners) if i == row] + ([reasks[row]] if row in reasks else [])
        for row in range(n_rows)
    ]
    results = _explanations(
        "posthoc", options.strategy, versions, meter.cost,
        [table_instance(blackbox, row) for row in instances], labels, verified,
        [_attempts_and_error(r, v.proposed.features or (v.reasked.features if v.reasked else []))
         for r, v in zip(per_row, verified)],
        [[_letter_name(name, letters, orders[i][r], names) for n, (i, r) in enumerate(owners) if i == row
          for name in problems[n][1]] for row in range(n_rows)],
        [1 + options.n_samples + 2 * v.draws for v in verified],
    )  # fmt: skip
    for result, row_orders, row_answers, row_letters, row_positional in zip(
        results, orders, answers, named_letters, positional
    ):
        result.letters = [{letters[j]: names[c] for j, c in enumerate(order)} for order in row_orders]
        result.shuffle_agreement = shuffle_agreement(row_answers, options.k)
        result.positional_answer = row_positional
        usable = [a for a in row_letters if a]
        if len(usable) == 1 and set(usable[0]) == set(letters[: len(usable[0])]):
            result.notes.append(
                "the LLM named exactly the first letters it was shown; one shuffle cannot tell a position from a "
                "reading of the data (n_shuffles >= 2 can)"
            )
    return results


def _discrete_values(schema: TableSchema, rows: np.ndarray) -> list[list[str | None]]:
    """Per row and column, the value a categorical or boolean column shows in a prompt (None for numbers)."""
    discrete = [j for j, c in enumerate(schema.columns) if c.kind in ("categorical", "boolean")]
    shown: list[list[str | None]] = [[None] * len(schema.columns) for _ in range(len(rows))]
    for j in discrete:
        for n, code in enumerate(rows[:, j]):
            shown[n][j] = schema.columns[j].show(code)
    return shown


def table_instance(blackbox: BlackBox, row: np.ndarray) -> dict[str, Any] | list[float]:
    """The explained row as the user holds it: column -> value (`{"workclass": "Private", "age": 39}`)."""
    if blackbox.schema is None:
        return np.asarray(row, dtype=float).tolist()
    return blackbox.schema.records(row)[0]


def _letter_name(letter: str, letters: list[str], order: np.ndarray, names: list[str]) -> str:
    """The feature a refused letter stood for in its prompt (the letter itself if it stood for none)."""
    return names[order[letters.index(letter)]] if letter in letters else letter


def _explanations(
    method: str,
    strategy: Strategy,
    versions: list[str],
    cost: Cost,
    instances: list,
    labels: list[str],
    verified: list[Verification],
    tries: list[tuple[int, str | None]],
    rejected: list[list[str]],
    rows_sent: list[int],
) -> list[PosthocExplanation]:
    """One result per instance, with its LLM tries and why it gave no usable proposal (`tries`). Black-box rows are
    split exactly in proportion to the rows each instance sent (so they add up to the measured total); the batched
    LLM round's usage and the seconds are shared evenly."""
    n = len(instances)
    queries = split_exact(cost.blackbox_queries, rows_sent)
    shares = cost.split(n)
    results = []
    for i in range(n):
        found = verified[i]
        attempts, error = tries[i]
        results.append(
            PosthocExplanation(
                method=method,
                prompt_versions=versions,
                cost=shares[i].model_copy(update={"blackbox_queries": queries[i]}),
                strategy=strategy,
                instance=instances[i],
                predicted_label=labels[i],
                features=found.verified.features,
                pgi=found.verified.pgi,
                pgu=found.verified.pgu,
                faithfulness=found.verified.faithfulness,
                llm_attempts=attempts,
                rejected=rejected[i],
                error=error,
                proposed=found.proposed,
                reasked=found.reasked,
                evidence_only=found.evidence_only,
                repair=found.repair,
                llm_features_kept=found.kept,
                llm_added_value=found.added_value,
            )
        )
    return results


async def _ask(
    llm: LLM,
    prompts: list[str],
    schema: type[BaseModel] | list[type[BaseModel]],
    max_tokens: int,
    attempts: int | None = None,
) -> list[Structured | StructuredOutputError]:
    """ONE structured batch; `schema` is shared, or one per prompt (each text its own word enum)."""
    requests = [GenerationRequest.user(p, max_tokens=max_tokens, temperature=0.0) for p in prompts]
    return await llm.structured(requests, schema, on_error="return", attempts=attempts)


def _value(reply: Structured | StructuredOutputError) -> BaseModel | None:
    return reply.value if isinstance(reply, Structured) else None


def _merge_attempts(
    first: Structured | StructuredOutputError,
    second: Structured | StructuredOutputError,
):
    """Keep the follow-up's answer, counting the first round's tries in its attempts."""
    if isinstance(second, Structured):
        earlier = first.attempts if isinstance(first, Structured) else 1
        return second.model_copy(update={"attempts": second.attempts + earlier})
    return second


def _attempts_and_error(
    replies: list[Structured | StructuredOutputError], features: list[FeatureAttribution]
):
    """Tries summed over an instance's prompts (one per shuffle); an error only when no answer was usable."""
    attempts = sum(r.attempts if isinstance(r, Structured) else 1 for r in replies)
    if features:
        return attempts, None
    failed = [r for r in replies if isinstance(r, StructuredOutputError)]
    if len(failed) == len(replies):
        return attempts, f"the LLM never gave a schema-valid answer: {failed[0].errors[:200]}"
    return attempts, "the LLM's answer named unknown or repeated features even after a re-ask"


def word_removal_masks(
    n_words: int, options: PosthocOptions, rng: np.random.Generator
) -> np.ndarray:
    """Which words each neighbour drops (True = removed): every word independently with `drop_probability`."""
    return rng.random((options.n_samples, n_words)) < options.drop_probability


def _format_removals(masks: np.ndarray, outputs: list[str], words: list[str]) -> str:
    return "\n".join(
        f"removed: {', '.join(w for w, gone in zip(words, mask) if gone) or 'nothing'} -> {output}"
        for mask, output in zip(masks, outputs)
    )


REASON = " and one short reason that names it"
#: How many of the evidence's strongest features a re-ask shows, per feature asked for.
REASK_EVIDENCE_PER_K = 2


def _reask_prompt(
    options: PosthocOptions, label: str, problem: str, evidence: Evidence, shown_as: dict[str, str] | None = None
) -> str:
    """The follow-up to a proposal that was not kept: why, and the evidence's strongest features (by the names the
    prompt used: a text's words, or a table's letters) with their measured effect on P(label)."""
    unit = "removing the word" if evidence.unit == "removing it" else "raising the feature by one standard deviation"
    lines = []
    for feature in evidence.order[: REASK_EVIDENCE_PER_K * options.k]:
        effect = evidence.support[feature] * (1 if evidence.unit == "+1 sd" else -1)
        lines.append(f"{(shown_as or {}).get(feature, feature)}: {effect:+.3f}")
    return load_prompt(REASK_PROMPT).render(
        problem=problem.rstrip("."), label=label, unit=unit, k=options.k,
        evidence=fence("\n".join(lines), label="evidence"), reason=REASON if options.rationales else "",
    )  # fmt: skip


#: A choice scores the evidence's REASK_EVIDENCE_PER_K * k strongest words and this many more per k, drawn by the
#: text's own seed, so the LLM can name a word the evidence ranks low and the evidence does not decide alone.
CHOICE_EXTRA_PER_K = 1


@dataclass
class Choice:
    """The LLM's choice for one text: each candidate's score (nats) and the k best, best first."""

    scores: dict[str, float]
    chosen: list[str]


def choice_candidates(words: list[str], evidence: list[str], k: int, rng: np.random.Generator) -> list[str]:
    """The words a choice scores: the evidence's 2k strongest, then k others of the text drawn by `rng`."""
    strongest = evidence[: REASK_EVIDENCE_PER_K * k]
    rest = [w for w in words if w not in strongest]
    drawn = rng.choice(len(rest), size=min(len(rest), CHOICE_EXTRA_PER_K * k), replace=False) if rest else []
    return strongest + [rest[j] for j in sorted(drawn)]


async def choose_words(
    llm: LLM, texts: list[str], labels: list[str], classes: list[str], candidates: list[list[str]], k: int
) -> list[Choice | LLMError]:
    """The LLM proposes by likelihood, not generation: ONE scoring round with one request per text and class, the
    template ending in the class ("…the one that most makes the classifier say 'positive' is:"), each continued by
    every candidate word. A word's score is its log-likelihood after the predicted label minus its mean after the
    other classes, so what it owes to its own frequency and length cancels and what ties it to the label remains
    (on unseen reviews this contrast beat the raw likelihood and a contrast with no label). The k best are the
    choice, ties to the evidence's order. Each candidate is scored on its own, so the choice cannot depend on their
    order, a position or a format; a text the LLM cannot score (too long) gets its error."""
    template = load_prompt(CHOOSE_PROMPT)
    requests = [
        ScoreRequest(prompt=template.render(text=fence(text, label="text"), label=target),
                     continuations=[f" {w}" for w in words])
        for text, label, words in zip(texts, labels, candidates)
        for target in [label, *(c for c in classes if c != label)]
    ]  # fmt: skip
    scored = iter(await llm.score(requests, on_error="return"))
    choices: list[Choice | LLMError] = []
    for words in candidates:
        given, *others = [next(scored) for _ in classes]
        failed = next((s for s in (given, *others) if isinstance(s, LLMError)), None)
        if failed is not None:
            choices.append(failed)
            continue
        contrast = np.asarray(given.logprobs) - (np.mean([s.logprobs for s in others], axis=0) if others else 0.0)
        scores = {w: float(v) for w, v in zip(words, contrast)}
        best = np.argsort(-contrast, kind="stable")[:k]  # ties keep the evidence's order
        choices.append(Choice(scores, [words[j] for j in best]))
    return choices


def _versions(template, retried: list[int], reasked: dict) -> list[str]:
    """The templates a call used: the strategy's, then the format retry's and the re-ask's where they were sent."""
    return (
        [template.ref]
        + ([load_prompt(RETRY_PROMPT).ref] if retried else [])
        + ([load_prompt(REASK_PROMPT).ref] if reasked else [])
    )


def _text_problem(
    reply: Structured | StructuredOutputError, allowed: set[str]
) -> tuple[str | None, list[str]]:
    """Why a text answer cannot be used, and the words refused: a word outside the text, or one named twice
    (\"great, great, great\" would turn k=3 into one word)."""
    if isinstance(reply, StructuredOutputError):
        return (
            f"it did not fit the answer format: {reply.errors[:200]}",
            _names_outside(reply.raw, allowed),
        )
    named = [f.feature for f in reply.value.features]
    unknown = [n for n in named if n not in allowed]
    if unknown:
        return f"unknown words {unknown}.", unknown
    repeated = sorted({n for n in named if named.count(n) > 1})
    if repeated:
        return f"words named more than once: {repeated}; name {len(named)} different words.", repeated
    return None, []


def _first_mentions(features: list) -> list:
    """Each named feature once, at its first (highest) rank."""
    seen: set[str] = set()
    return [f for f in features if not (f.feature in seen or seen.add(f.feature))]


def _names_outside(raw: str, allowed: set[str]) -> list[str]:
    """Feature names in a schema-invalid JSON reply that are not allowed, so refused words are on record."""
    try:
        found = json.loads(raw[raw.find("{") : raw.rfind("}") + 1])
        names = [item["feature"] for item in found["features"]]
    except (ValueError, KeyError, TypeError):
        return []
    return [n for n in names if isinstance(n, str) and n not in allowed]


async def explain_text(
    llm: LLM,
    blackbox: BlackBox,
    texts: list[str],
    options: PosthocOptions | None = None,
) -> list[PosthocExplanation]:
    """Explain each text by its own words: one black-box query for all word-removal neighbourhoods, one LLM round.

    Generated proposals: the answer schema of each text allows only that text's words, and answers are validated
    against them anyway; replies that fail are re-asked together in one follow-up round. Chosen proposals: one
    scoring round ranks each text's candidate words (`choose_words`). PGI / PGU remove the named words vs as many
    other words and re-query the black box.
    """
    options = options or PosthocOptions()
    if blackbox.kind != "text":
        raise ValueError(
            f"explain_text needs a text black box, got kind {blackbox.kind!r}"
        )
    if (
        isinstance(texts, str)
        or not texts
        or not all(isinstance(t, str) for t in texts)
    ):
        raise ValueError("texts must be a non-empty list of strings")
    if options.strategy not in TEXT_STRATEGIES:
        raise ValueError(
            f"text explanations support the strategies {', '.join(TEXT_STRATEGIES)}, got {options.strategy!r}"
        )
    if options.n_shuffles > 1:
        raise ValueError(
            "n_shuffles applies to tables (letters stand for columns); texts are explained by their own words"
        )
    mode = proposal_mode(options, llm, "text")
    if mode == "choose" and options.rationales:
        raise ValueError(
            "rationales are generated text and proposal 'choose' generates nothing: use proposal 'generate' (or "
            "'auto') for rationales, or leave rationales off"
        )
    vocabularies = [distinct_words(t, options.max_words) for t in texts]
    for number, words in enumerate(vocabularies, 1):
        if len(words) < options.k:
            raise ValueError(
                f"text {number} has {len(words)} distinct words, fewer than k={options.k}"
            )
    n_texts = len(texts)

    with measure_cost(blackbox) as meter:
        masks = [
            word_removal_masks(len(w), options, row_rng(options.seed, text, _draw_options(options)))
            for text, w in zip(texts, vocabularies)
        ]
        neighbours = [
            remove_words(text, [w for w, gone in zip(words, row) if gone])
            for text, words, mask in zip(texts, vocabularies, masks)
            for row in mask
        ]
        probabilities = await blackbox.apredict_proba(list(texts) + neighbours)
        predicted = probabilities[:n_texts].argmax(axis=1)
        labels = [str(blackbox.classes_[c]) for c in predicted]
        neighbour_probs = [
            probabilities[n_texts + i * options.n_samples : n_texts + (i + 1) * options.n_samples, predicted[i]]
            for i in range(n_texts)
        ]
        # occlusion evidence: a local linear fit of P(label) on which words each neighbour removed
        evidences = [
            Evidence(
                {w: -float(e) for w, e in zip(words, local_linear_weights(mask.astype(float), probs))},
                label, "removing it",
            )
            for words, mask, probs, label in zip(vocabularies, masks, neighbour_probs, labels)
        ]  # fmt: skip

        async def check(rows: list[int], sets: list[list[str]]) -> list[Gaps | None]:
            return await text_prediction_gaps(
                blackbox, [texts[i] for i in rows], sets, n_samples=options.n_gap_samples,
                max_samples=options.max_gap_samples, seed=options.seed,
            )  # fmt: skip

        choices: list[Choice | LLMError] = []
        reasks: dict[int, Structured | StructuredOutputError] = {}
        reask: Reask | None = None
        if mode == "choose":
            draws = _draw_options(options)
            candidates = [
                choice_candidates(words, evidence.order, options.k, row_rng(options.seed, text, draws, "choice"))
                for text, words, evidence in zip(texts, vocabularies, evidences)
            ]
            choices = await choose_words(llm, texts, labels, [str(c) for c in blackbox.classes_], candidates, options.k)
            ranked = [
                [] if isinstance(c, LLMError) else [evidence.attribution(w).model_copy(update={"rationale": "",
                 "source": "llm"}) for w in c.chosen]
                for c, evidence in zip(choices, evidences)
            ]  # fmt: skip
        else:
            template = load_prompt(f"posthoc/text_{options.strategy}")
            reason = REASON if options.rationales else ""
            prompts = []
            for i, (text, words) in enumerate(zip(texts, vocabularies)):
                chosen = select_examples(neighbour_probs[i], options.n_examples)
                if options.strategy == "prediction":
                    outputs = [labels[i] if p >= 0.5 else f"not {labels[i]}" for p in neighbour_probs[i][chosen]]
                else:
                    outputs = [f"{p:.2f}" for p in neighbour_probs[i][chosen]]
                prompts.append(
                    template.render(
                        label=labels[i], k=options.k, reason=reason, text=fence(text, label="text"),
                        words=fence(", ".join(words), label="words"),
                        examples=fence(_format_removals(masks[i][chosen], outputs, words), label="data"),
                    )
                )  # fmt: skip
            schemas = [_answer_schema(words, options.k, options.rationales) for words in vocabularies]
            replies = await _ask(llm, prompts, schemas, options.max_tokens, attempts=1)  # re-asked below in own words

            problems = [_text_problem(r, set(words)) for r, words in zip(replies, vocabularies)]
            retry_rows = [i for i, (problem, _) in enumerate(problems) if problem and not options.repair]
            if retry_rows:  # with repair on, the re-ask with the evidence names the problem instead
                retry = load_prompt(RETRY_PROMPT)
                follow_ups = [
                    prompts[i] + "\n\n" + retry.render(
                        problem=problems[i][0], letters=fence(", ".join(vocabularies[i]), label="words"),
                        k=options.k, label=labels[i], reason=reason,
                    )
                    for i in retry_rows
                ]  # fmt: skip
                again = await _ask(llm, follow_ups, [schemas[i] for i in retry_rows], options.max_tokens, attempts=1)
                for i, reply in zip(retry_rows, again):
                    replies[i] = _merge_attempts(replies[i], reply)

            def words_of(reply: Structured | StructuredOutputError, words: list[str]) -> list[FeatureAttribution]:
                value = _value(reply)
                if value is None or any(f.feature not in words for f in value.features):
                    return []
                # a reply still repeating words keeps each word at its first rank
                return [
                    FeatureAttribution(
                        feature=f.feature, direction=f.direction,
                        rationale=grounded_rationale(getattr(f, "rationale", ""), f.feature),
                    )
                    for f in _first_mentions(value.features)
                ]  # fmt: skip

            ranked = [words_of(reply, words) for reply, words in zip(replies, vocabularies)]

            async def reask(rows: list[int], whys: list[str]) -> list[list[FeatureAttribution]]:
                follow_ups = [
                    prompts[i] + "\n\n" + _reask_prompt(options, labels[i], problems[i][0] or why, evidences[i])
                    for i, why in zip(rows, whys)
                ]
                again = await _ask(llm, follow_ups, [schemas[i] for i in rows], options.max_tokens, attempts=1)
                reasks.update(zip(rows, again))
                return [words_of(reply, vocabularies[i]) for i, reply in zip(rows, again)]

        positional = [
            positional_words([f.feature for f in named], words, evidence.order)
            for named, words, evidence in zip(ranked, vocabularies, evidences)
        ]
        verified = await verify_proposals(
            ranked, evidences, options.k, check, repair=options.repair, positional=positional, reask=reask
        )

    if mode == "choose":  # one scoring round, nothing generated that could be malformed or refused
        versions = [load_prompt(CHOOSE_PROMPT).ref]
        tries = [(1, f"the LLM could not score the candidate words: {c}" if isinstance(c, LLMError) else None)
                 for c in choices]  # fmt: skip
        rejected: list[list[str]] = [[] for _ in texts]
    else:
        versions = _versions(template, retry_rows, reasks)
        replies_per_text = [[r, *([reasks[i]] if i in reasks else [])] for i, r in enumerate(replies)]
        tries = [_attempts_and_error(r, v.proposed.features or (v.reasked.features if v.reasked else []))
                 for r, v in zip(replies_per_text, verified)]  # fmt: skip
        rejected = [p[1] for p in problems]
    results = _explanations(
        "posthoc", options.strategy, versions, meter.cost, list(texts), labels, verified, tries, rejected,
        [2 + options.n_samples + v.draws for v in verified],
    )  # fmt: skip
    for i, (result, flag) in enumerate(zip(results, positional)):
        result.positional_answer = flag
        if mode == "choose":
            result.proposal = "choice"
            result.choice_scores = None if isinstance(choices[i], LLMError) else choices[i].scores
    return results


async def _run_posthoc(ctx: MethodContext, rows: list, options: PosthocOptions) -> list[PosthocExplanation | Exception]:
    """Tables: every row in one LLM round against the background; texts: each by its own words, a text with
    fewer than k distinct words failing alone."""
    if ctx.blackbox.kind == "tabular":
        background = reference_rows(ctx.blackbox, options.background if options.background is not None else ctx.reference)
        if background is None:
            raise InvalidInput("posthoc needs background rows: pass options.background (at least 2 rows like the data)")
        return await explain_tabular(ctx.llm, ctx.blackbox, np.asarray(rows, dtype=float), background, options)
    short = [len(distinct_words(text, options.max_words)) < options.k for text in rows]
    explained = iter(await explain_text(ctx.llm, ctx.blackbox, [t for t, s in zip(rows, short) if not s], options)
                     if not all(short) else [])  # fmt: skip
    return [
        InvalidInput(f"the text has fewer than k={options.k} distinct words to rank") if s else next(explained)
        for s in short
    ]


def _chat_answer(r: dict[str, Any]) -> str:
    features = r.get("features") or []
    named = ", ".join(f"{f['feature']} ({f.get('direction', '')})" for f in features[:MAX_LISTED])
    verdict = (r.get("faithfulness") or {}).get("verdict")
    pgi, pgu = (None if r.get(key) is None else round(r[key], 4) for key in ("pgi", "pgu"))  # as the tool showed
    check = {"pgi": pgi, "pgu": pgu, "top_k": len(features), "verdict": verdict}
    proposed = (r.get("proposed") or {}).get("features")
    if proposed is None or [f["feature"] for f in proposed] == [f["feature"] for f in features]:
        return f"For {subject(r)} the LLM names these features: {named or 'none'}.{check_words(check)}"
    from_llm = sum(f.get("source") == "llm" for f in features)
    first = ", ".join(f"{f['feature']} ({f.get('direction', '')})" for f in proposed[:MAX_LISTED]) or "none"
    first_verdict = ((r.get("proposed") or {}).get("faithfulness") or {}).get("verdict") or "not checked"
    return (
        f"For {subject(r)} the verified features are: {named or 'none'} ({from_llm} of {len(features)} proposed by "
        f"the LLM, which first named {first}: {first_verdict}).{check_words(check)}"
    )


register(
    Method(
        name="posthoc",
        description="The LLM's top features for each prediction (generated under four in-context strategies, or on a "
        "weak model chosen by likelihood among a text's candidate words; tables and texts), checked on the black box "
        "by PGI and PGU and repaired from the neighbourhood's evidence when they fail.",
        inputs=("tabular_row", "text"),
        options=PosthocOptions,
        result=PosthocExplanation,
        run=_run_posthoc,
        chat=ChatForm(
            " to hear the LLM's own explanation of one row, checked on the model.",
            (r"\bpost[- ]?hoc\b", r"\b(?:llm|language model)\b.{0,30}\b(?:explain|explanation|think|reasons?)\b"),
            _chat_answer,
        ),
    )
)
