"""Text counterfactuals: concept-targeted edits (Gat et al.), minimal label-flipping edits, and the three-step causal
variant (latent features -> input words -> edit); plus concept effects (CEBaB-style ICaCE / average effect).

Every candidate is re-scored by the black box; see `counterfactual.CounterfactualSearch` for the loop.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from xplain.blackbox import BlackBox
from xplain.llm import LLM, GenerationRequest, StructuredOutputError
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.counterfactual import (
    CandidateBase,
    CounterfactualSearch,
    ExplanationBase,
    Label,
    Proposal,
    Rejected,
    SearchState,
    Verdict,
    check_target,
    class_name,
    goal_phrase,
    plain_label,
    with_costs,
)
from xplain.methods import counterfactual_guided as guided
from xplain.methods.words import WORD
from xplain.prompts import load_prompt
from xplain.prompts.data import fence
from xplain.validation import reference_rows

Mode = Literal["target", "concept", "causal", "guided", "search"]
PROMPTS = {
    "target": "counterfactual/text_target",
    "concept": "counterfactual/text_concept",
    "causal": "counterfactual/text_causal_edit",
}
RETRY_PROMPT = "counterfactual/text_retry"
FEATURES_PROMPT = "counterfactual/text_causal_features"
WORDS_PROMPT = "counterfactual/text_causal_words"
FEEDBACK_SHOWN = 3
MAX_TEXT_CHARS = 1500

_TOKEN = re.compile(rf"{WORD.pattern}|[^\w\s]")  # words as every method reads them, and punctuation
# Phrases that mean the LLM talked about the task instead of rewriting the text (ANCHORS.md, Gat et al.).
_TASK_TALK = re.compile(
    r"\b(review|not mentioned|counterfactual|rewritten|rewrite|edited text|original text|classifier|"
    r"here is|as an ai|concept)\b",
    re.IGNORECASE,
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def token_edit_distance(a: str, b: str) -> int:
    """Levenshtein distance over word and punctuation tokens."""
    left, right = tokens(a), tokens(b)
    previous = list(range(len(right) + 1))
    for i, token in enumerate(left, start=1):
        current = [i]
        for j, other in enumerate(right, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (token != other)))
        previous = current
    return previous[-1]


def token_diff(original: str, edited: str) -> list[tuple[Literal["same", "removed", "added"], str]]:
    """Token runs marked same / removed / added, for a highlighted diff view."""
    left, right = tokens(original), tokens(edited)
    pieces: list[tuple[Literal["same", "removed", "added"], str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=left, b=right, autojunk=False).get_opcodes():
        if tag == "equal":
            pieces.append(("same", " ".join(left[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(("removed", " ".join(left[i1:i2])))
        if j2 > j1:
            pieces.append(("added", " ".join(right[j1:j2])))
    return pieces


def drop_reason(original: str, candidate: str, seen: set[str]) -> str | None:
    """Why a generated text is not a usable counterfactual: unchanged, a duplicate, or talk about the task."""
    key = " ".join(tokens(candidate.lower()))
    words = set(WORD.findall(candidate.lower()))
    if not words:
        return "no words"
    if not words & set(WORD.findall(original.lower())):
        return "shares no word with the original (not an edit of it)"
    if key == " ".join(tokens(original.lower())):
        return "unchanged"
    if key in seen:
        return "duplicate"
    talk = {m.lower() for m in _TASK_TALK.findall(candidate)} - {m.lower() for m in _TASK_TALK.findall(original)}
    if talk:
        return f"talks about the task ({', '.join(sorted(talk))})"
    return None


class TextCounterfactual(CandidateBase):
    text: str
    log_likelihood_change: float | None = Field(
        None,
        description="Guided mode, valid ones: the LM's log-likelihood (nats) of the edited text minus the original's "
        "(fluency; near 0 or above reads as naturally as the original).",
    )


class TextCounterfactualExplanation(ExplanationBase):
    text: str
    counterfactuals: list[TextCounterfactual] = Field(description="Valid ones first, then by edit size.")
    latent_features: list[str] = Field(default_factory=list, description="Causal mode: features the LLM named.")
    linked_words: list[str] = Field(
        default_factory=list, description="Causal mode: the words it tied to them that do occur in the text."
    )
    words_not_in_text: list[str] = Field(
        default_factory=list, description="Causal mode: words it named that the text does not contain (unverified)."
    )
    guide_words: dict[str, float] = Field(
        default_factory=dict,
        description="Guided mode: the words edited first, each with how much removing it moved the probability of "
        "leaving the original class (or of the target), measured on the black box.",
    )
    goal_words: dict[str, float] = Field(
        default_factory=dict,
        description="Guided mode with reference texts: their words the black box, reading each alone, gives the "
        "highest probability of the goal (that probability); the LM keeps the most fluent at each place.",
    )

    @property
    def valid(self) -> list[TextCounterfactual]:
        return [c for c in self.counterfactuals if c.valid]


class TextCounterfactualResult(MethodResult):
    method: str = "counterfactual_text"
    mode: Mode
    concept: str | None = None
    concept_value: str | None = None
    explanations: list[TextCounterfactualExplanation]


class LatentFeatures(BaseModel):
    features: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] = Field(min_length=1, max_length=3)


class LinkedWords(BaseModel):
    words: list[Annotated[str, StringConstraints(min_length=1, max_length=30)]] = Field(min_length=1, max_length=8)


def edits_schema(texts: Sequence[str], per_request: int) -> type[BaseModel]:
    """`{"edits": [...]}` with every string bounded (small models need bounds to stop), sized to the inputs."""
    limit = min(MAX_TEXT_CHARS, 2 * max(len(t) for t in texts) + 40)
    edit = Annotated[str, StringConstraints(min_length=1, max_length=limit)]
    return create_model("TextEdits", edits=(list[edit], Field(min_length=1, max_length=per_request)))


def check_texts(texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    if not texts:
        raise ValueError("no texts given: pass at least one text to explain")
    for position, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {position} is empty or not a string; every input must be non-empty text")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(
                f"text {position} has {len(text)} characters; at most {MAX_TEXT_CHARS} fit the LLM's context — shorten it"
            )
    return texts


class TextSearch(CounterfactualSearch[TextCounterfactual]):
    def __init__(
        self,
        llm: LLM,
        blackbox: BlackBox,
        *,
        mode: Mode,
        texts: Sequence[str],
        concept: str | None,
        concept_value: str | None,
        task: str,
        label_names: dict[Label, str],
        per_request: int,
        max_rounds: int,
    ) -> None:
        super().__init__(llm, blackbox, max_rounds=max_rounds)
        self.mode = mode
        self.concept = concept
        self.concept_value = concept_value
        self.task = task
        self.label_names = label_names
        self.per_request = per_request
        self._schema = edits_schema(texts, per_request)

    @property
    def schema(self) -> type[BaseModel]:
        return self._schema

    def request(self, state: SearchState[TextCounterfactual], round_number: int) -> GenerationRequest:
        values = {
            "text": fence(state.model_input),
            "task": self.task,
            "label": class_name(state.original.prediction, self.label_names),
            "goal": goal_phrase(state.original.prediction, state.target, self.label_names),
            "n": self.per_request,
            "concept": self.concept or "",
            "value": self.concept_value or "the opposite",
            "features": "; ".join(state.extra.get("latent_features", [])) or "(none named)",
            "words": ", ".join(state.extra.get("linked_words", [])) or "(none found in the text)",
        }
        if state.feedback:
            name = RETRY_PROMPT
            values["attempts"] = fence("\n".join(state.feedback[-FEEDBACK_SHOWN:]), label="attempts")
        else:
            name = PROMPTS[self.mode]
        prompt = load_prompt(name)
        state.extra.setdefault("prompts", set()).add(prompt.ref)
        return GenerationRequest.user(prompt.render(**values), max_tokens=self._max_tokens(state.model_input))

    def _max_tokens(self, text: str) -> int:
        return min(768, self.per_request * (len(text) // 2 + 24) + 16)

    def screen(self, state, reply, round_number):
        proposals = []
        for edited in reply.edits:
            edited = edited.strip()
            reason = drop_reason(state.model_input, edited, state.seen)
            if reason:
                state.rejected.append(Rejected(candidate=edited, reason=reason, round=round_number))
                continue
            state.seen.add(" ".join(tokens(edited.lower())))
            proposals.append(Proposal(edited, edited, token_edit_distance(state.model_input, edited)))
        return proposals

    def candidate(self, proposal: Proposal, verdict: Verdict, round_number: int) -> TextCounterfactual:
        return TextCounterfactual(
            text=proposal.payload, edit_size=proposal.edit_size, round=round_number, **verdict.model_dump()
        )

    def feedback(self, proposal: Proposal, verdict: Verdict) -> str:
        label = class_name(verdict.prediction, self.label_names)
        return f'"{proposal.payload}" -> still {label} (probability {verdict.probability:.2f})'


async def _causal_rounds(
    llm: LLM, search: TextSearch, states: list[SearchState[TextCounterfactual]], task: str
) -> None:
    """Rounds 1-2 of the causal variant, each ONE batched call: latent features, then the words tied to them."""
    pending = [s for s in states if not s.done]
    features_prompt, words_prompt = load_prompt(FEATURES_PROMPT), load_prompt(WORDS_PROMPT)
    feature_replies = await llm.structured(
        [
            GenerationRequest.user(
                features_prompt.render(
                    text=fence(s.model_input), task=task, label=class_name(s.original.prediction, search.label_names)
                ),
                max_tokens=96,
            )
            for s in pending
        ],
        LatentFeatures,
        on_error="return",
    )
    for state, reply in zip(pending, feature_replies):
        state.llm_requests += llm.structured_attempts if isinstance(reply, StructuredOutputError) else reply.attempts
        state.extra["latent_features"] = [] if isinstance(reply, StructuredOutputError) else reply.value.features
        state.extra.setdefault("prompts", set()).add(features_prompt.ref)
    word_replies = await llm.structured(
        [
            GenerationRequest.user(
                words_prompt.render(
                    text=fence(s.model_input), features="; ".join(s.extra["latent_features"]) or "(none named)"
                ),
                max_tokens=96,
            )
            for s in pending
        ],
        LinkedWords,
        on_error="return",
    )
    for state, reply in zip(pending, word_replies):
        state.llm_requests += llm.structured_attempts if isinstance(reply, StructuredOutputError) else reply.attempts
        named = [] if isinstance(reply, StructuredOutputError) else reply.value.words
        present = {t.lower() for t in tokens(state.model_input)}
        state.extra["linked_words"] = [w for w in named if all(t.lower() in present for t in tokens(w))]
        state.extra["words_not_in_text"] = [w for w in named if w not in state.extra["linked_words"]]
        state.extra["prompts"].add(words_prompt.ref)
        state.rounds += 2


async def text_counterfactuals(
    llm: LLM,
    blackbox: BlackBox,
    texts: Sequence[str],
    *,
    mode: Mode = "target",
    concept: str | None = None,
    concept_value: str | None = None,
    target: Label | None = None,
    task: str = "text classifier",
    label_names: dict[Label, str] | None = None,
    candidates_per_round: int = 2,
    max_rounds: int = 3,
    substitutes: Sequence[str] = (),
    reference: Sequence[str] | None = None,
    reference_words: int = guided.VOCABULARY,
) -> TextCounterfactualResult:
    """Counterfactuals for many texts at once; each LLM round is one batched call across all of them.

    `mode`: "target" (minimal edit until the prediction reaches `target`, or any other class), "concept" (change
    `concept` to `concept_value` keeping the rest), "causal" (latent features -> words -> edit; two extra rounds),
    "guided" (the black box's occlusion picks the words, the LLM proposes replacements, the search keeps the
    fewest edits that flip; `candidates_per_round` replacements per word, `max_rounds` words at most; with
    `reference` texts like the model's data, the black box also ranks their `reference_words` commonest words as
    replacements; see
    `counterfactual_guided`), "search" (no LLM: the words that support the prediction removed, strongest first,
    until it flips; `llm` may be None).
    """
    texts = check_texts(texts)
    if blackbox.kind != "text":
        raise ValueError(f"text counterfactuals need a 'text' black box; {blackbox.name} is {blackbox.kind!r}")
    if mode not in (*PROMPTS, "guided", "search"):
        raise ValueError(f"mode must be one of {[*PROMPTS, 'guided', 'search']}, got {mode!r}")
    if mode == "concept" and not (concept and concept.strip()):
        raise ValueError("mode 'concept' needs a concept to change, e.g. concept='service'")
    if not 1 <= candidates_per_round <= 5:
        raise ValueError(f"candidates_per_round must be between 1 and 5, got {candidates_per_round}")
    if not 0 <= reference_words <= 2000:
        raise ValueError(f"reference_words must be between 0 and 2000, got {reference_words}")
    target = check_target(blackbox, target)
    if mode in ("guided", "search"):
        return await _guided(
            None if mode == "search" else llm, blackbox, texts, target=target, task=task, label_names=label_names or {},
            per_place=candidates_per_round, max_edits=max_rounds, substitutes=substitutes, removal=mode == "search",
            vocabulary=guided.reference_vocabulary(reference or (), reference_words) if mode == "guided" else (),
        )  # fmt: skip
    with measure_cost(blackbox) as meter:
        search = TextSearch(
            llm,
            blackbox,
            mode=mode,
            texts=texts,
            concept=concept,
            concept_value=concept_value,
            task=task,
            label_names=label_names or {},
            per_request=candidates_per_round,
            max_rounds=max_rounds,
        )
        states = await search.start(texts, [target] * len(texts))
        if mode == "causal":
            await _causal_rounds(llm, search, states, task)
        await search.run(states, first_round=3 if mode == "causal" else 1)
    explanations = [
        TextCounterfactualExplanation(
            text=s.model_input,
            counterfactuals=s.ordered(),
            latent_features=s.extra.get("latent_features", []),
            linked_words=s.extra.get("linked_words", []),
            words_not_in_text=s.extra.get("words_not_in_text", []),
            **s.common_fields(),
        )
        for s in states
    ]
    return TextCounterfactualResult(
        mode=mode,
        concept=concept,
        concept_value=concept_value,
        explanations=with_costs(explanations, meter.cost),
        prompt_versions=sorted(set().union(*(s.extra.get("prompts", set()) for s in states))),
        cost=meter.cost,
    )


GUIDED_PLACES = 4  # words edited at most: max_edits + 2, at least this many
GUIDED_MAX_WORDS = 40


async def _guided(
    llm: LLM | None,
    blackbox: BlackBox,
    texts: list[str],
    *,
    target: Label | None,
    task: str,
    label_names: dict[Label, str],
    per_place: int,
    max_edits: int,
    substitutes: Sequence[str],
    removal: bool = False,
    vocabulary: Sequence[str] = (),
) -> TextCounterfactualResult:
    """The guided search (one black-box batch per step, one black-box batch probing the reference texts' words, one
    LLM round of proposals, one LM scoring round); with
    `removal`, the black box's own search instead (one batch of ever longer removals, no LLM unless for fluency)."""
    with measure_cost(blackbox) as meter:
        states = guided.start_states(blackbox, texts, await blackbox.apredict_proba(texts), target)
        if removal:
            await guided.occlude(blackbox, states, GUIDED_MAX_WORDS, GUIDED_MAX_WORDS)
            await guided.removal_search(blackbox, states)
            versions: list[str] = []
        else:
            await guided.occlude(blackbox, states, GUIDED_MAX_WORDS, max(GUIDED_PLACES, max_edits + 2))
            await guided.probe_vocabulary(blackbox, states, vocabulary)
            versions = await guided.propose(
                llm, states, task=task, label_names=label_names, per_place=per_place, substitutes=substitutes
            )
            await guided.search(blackbox, states, max_edits)
        # fluency of each text's best valid edit (the smallest, then the most decided), in one LM scoring round
        smallest = {
            id(s): min(flips, key=lambda f: (token_edit_distance(s.text, f[0]), -f[1].target_probability))[0]
            for s in states
            if (flips := [(edited, verdict) for _, edited, verdict in s.found if verdict.valid])
        }
        scored = [s for s in states if id(s) in smallest] if llm is not None else []
        changes = dict(zip(map(id, scored), await guided.fluency_changes(llm, [(s.text, smallest[id(s)]) for s in scored])))
        if scored:
            versions = sorted({*versions, load_prompt(guided.FLUENCY_PROMPT).ref})
    unflipped = "no flip with every supporting word removed" if removal else f"no flip within {max_edits} edited words"
    explanations = []
    for state in states:
        candidates = [
            TextCounterfactual(
                text=edited, edit_size=token_edit_distance(state.text, edited), round=len(edit),
                log_likelihood_change=changes.get(id(state)) if smallest.get(id(state)) == edited else None,
                **verdict.model_dump(),
            )
            for edit, edited, verdict in state.found
        ]  # fmt: skip
        candidates.sort(key=lambda c: (not c.valid, c.edit_size, -c.target_probability))
        explanations.append(
            TextCounterfactualExplanation(
                text=state.text, counterfactuals=candidates[:10],
                guide_words={w: state.occlusion[w] for w in state.places if state.occlusion[w] > 0 or not removal},
                goal_words=state.goal_words,
                original_prediction=state.original.prediction, original_probability=state.original.probability,
                target=state.target, rejected=state.rejected, rounds_used=state.steps,
                llm_requests=state.llm_requests, blackbox_queries=state.queries,
                stopped_by=state.stopped_by or (None if state.done else unflipped),
            )
        )  # fmt: skip
    return TextCounterfactualResult(
        mode="search" if removal else "guided", explanations=with_costs(explanations, meter.cost), prompt_versions=versions, cost=meter.cost
    )


# -- concept effects --------------------------------------------------------------------------------------------


class IndividualEffect(BaseModel):
    """ICaCE for one text: mean output change between the text and its kept concept edits."""

    text: str
    edits: list[str]
    original_output: float
    edited_outputs: list[float]
    effect: float | None = Field(description="None when every edit was dropped (nothing to measure).")
    dropped: list[Rejected] = Field(default_factory=list)


class ConceptEffectResult(MethodResult):
    method: str = "concept_effect"
    concept: str
    concept_value: str | None
    output: str = Field(description="What was measured: the probability of this class, or the module's output.")
    individual: list[IndividualEffect]
    average_effect: float | None = Field(description="Mean ICaCE over texts with at least one kept edit.")
    texts_measured: int


async def concept_effect(
    llm: LLM,
    blackbox: BlackBox,
    texts: Sequence[str],
    concept: str,
    *,
    concept_value: str | None = None,
    output_class: Label | None = None,
    task: str = "text classifier",
    edits_per_text: int = 1,
) -> ConceptEffectResult:
    """How much the black box's output moves when only `concept` changes: one batched LLM round of concept edits,
    one black-box batch over originals and edits. Unchanged, duplicate and task-talking edits are dropped."""
    texts = check_texts(texts)
    if not concept.strip():
        raise ValueError("concept is empty: name the concept to change, e.g. 'service'")
    if blackbox.kind == "tabular":
        raise ValueError(f"concept effects are for text black boxes; {blackbox.name} is tabular")
    if not 1 <= edits_per_text <= 5:
        raise ValueError(f"edits_per_text must be between 1 and 5, got {edits_per_text}")
    prompt = load_prompt(PROMPTS["concept"])
    with measure_cost(blackbox) as meter:
        requests = [
            GenerationRequest.user(
                prompt.render(
                    text=fence(t), task=task, concept=concept, value=concept_value or "the opposite", n=edits_per_text
                ),
                max_tokens=min(768, edits_per_text * (len(t) // 2 + 24) + 16),
            )
            for t in texts
        ]
        replies = await llm.structured(requests, edits_schema(texts, edits_per_text), on_error="return")
        kept: list[list[str]] = []
        dropped: list[list[Rejected]] = []
        for text, reply in zip(texts, replies):
            seen: set[str] = set()
            keep, drop = [], []
            if isinstance(reply, StructuredOutputError):
                drop.append(Rejected(candidate=reply.raw[:300], reason="the reply never matched the schema", round=1))
            else:
                for edited in (e.strip() for e in reply.value.edits):
                    reason = drop_reason(text, edited, seen)
                    if reason:
                        drop.append(Rejected(candidate=edited, reason=reason, round=1))
                    else:
                        seen.add(" ".join(tokens(edited.lower())))
                        keep.append(edited)
            kept.append(keep)
            dropped.append(drop)
        outputs, output = await _outputs(blackbox, [*texts, *(e for keep in kept for e in keep)], output_class)
    individual, position = [], len(texts)
    for i, text in enumerate(texts):
        edited_outputs = outputs[position : position + len(kept[i])]
        position += len(kept[i])
        individual.append(
            IndividualEffect(
                text=text,
                edits=kept[i],
                original_output=outputs[i],
                edited_outputs=edited_outputs,
                effect=float(np.mean(edited_outputs) - outputs[i]) if edited_outputs else None,
                dropped=dropped[i],
            )
        )
    measured = [e.effect for e in individual if e.effect is not None]
    return ConceptEffectResult(
        concept=concept,
        concept_value=concept_value,
        output=output,
        individual=individual,
        average_effect=float(np.mean(measured)) if measured else None,
        texts_measured=len(measured),
        prompt_versions=[prompt.ref],
        cost=meter.cost,
    )


async def _outputs(blackbox: BlackBox, texts: list[str], output_class: Label | None) -> tuple[list[float], str]:
    """The measured output of every text (one batch): a class probability, or a module's float."""
    if not blackbox.is_classifier:
        return [float(v) for v in await blackbox.apredict(texts)], "module output"
    probabilities = await blackbox.apredict_proba(texts)
    classes = [plain_label(c) for c in blackbox.classes_]
    chosen = check_target(blackbox, output_class) if output_class is not None else classes[-1]
    column = classes.index(chosen)
    return [float(v) for v in probabilities[:, column]], f"probability of class {chosen!r}"


# The catalog's counterfactual methods; the tabular search lives in counterfactual_tabular, which this module may
# import (it never imports this one).
from xplain.methods.chat_answers import said, subject  # noqa: E402
from xplain.methods.catalog import BackgroundRows, ChatForm, Method, MethodContext, register  # noqa: E402
from xplain.validation import to_text  # noqa: E402
from xplain.methods.counterfactual_tabular import (  # noqa: E402
    FeatureConstraint,
    TabularCounterfactualExplanation,
    tabular_counterfactuals,
)
from xplain.methods.counterfactual_table_search import (  # noqa: E402
    guided_tabular_counterfactuals,
    path_counterfactuals,
)


Strategy = Literal["guided", "llm", "search"]


class CounterfactualOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = Field(
        "guided",
        description="guided: the black box picks the words / columns that move it, the LLM proposes replacements "
        "(texts) or ranks candidate values (tables), the fewest edits that flip are kept; llm: the LLM writes the "
        "edits and the black box's verdicts go back to it each round; search: the black box alone (texts: "
        "supporting words removed; tables: a walk towards the nearest reference rows of another class, pruned).",
    )
    mode: Literal["target", "concept", "causal"] = Field(
        "target",
        description="Texts, strategy llm: edit toward the target, change one concept, or causal (latent features "
        "-> words -> edit).",
    )
    concept: str | None = Field(None, max_length=100, description="Concept mode: the concept to change.")
    concept_value: str | None = Field(None, max_length=100, description="Concept mode: its new value.")
    target: str | int | None = Field(None, description="Class to reach; default: any other class.")
    constraints: dict[str, FeatureConstraint] = Field(
        default_factory=dict,
        description="Tables: feature -> {immutable, min, max, direction, ...}; columns the model's schema marks "
        "immutable are never changed either.",
    )
    max_rounds: int = Field(
        3, ge=1, le=10, description="Strategy llm: LLM rounds; guided: the most words or columns edited."
    )
    candidates_per_round: int = Field(
        2, ge=1, le=5, description="Guided: replacements (values) kept per word (column); llm: proposals per round."
    )
    substitutes: list[Annotated[str, StringConstraints(max_length=20)]] = Field(
        default_factory=list,
        max_length=200,
        description="Texts, guided: replacement words to try besides the LLM's (ranked by the LM's fluency).",
    )
    reference_words: int = Field(
        guided.VOCABULARY,
        ge=0,
        le=2000,
        description="Texts, guided: how many of the reference texts' commonest words the black box reads alone (one "
        "batch of that many rows) to find replacements that push it toward the goal; 0 turns this off.",
    )
    background: BackgroundRows = None


async def _counterfactual(
    ctx: MethodContext, rows: list, options: CounterfactualOptions
) -> list[TabularCounterfactualExplanation | TextCounterfactualExplanation]:
    """All the rows in one search (each step one batch); valid counterfactuals, confirmed by the black box, first
    in each row's explanation, with what the search cost in `cost`."""
    if ctx.blackbox.kind == "tabular":
        reference = reference_rows(ctx.blackbox, options.background if options.background is not None else ctx.reference)
        common = dict(constraints=options.constraints, target=options.target, reference=reference)
        if options.strategy == "search":
            result = await path_counterfactuals(ctx.blackbox, rows, **common)
        elif options.strategy == "guided":
            result = await guided_tabular_counterfactuals(
                ctx.llm, ctx.blackbox, rows, per_place=options.candidates_per_round, max_changes=options.max_rounds,
                **common,
            )  # fmt: skip
        else:
            result = await tabular_counterfactuals(
                ctx.llm, ctx.blackbox, rows, candidates_per_round=options.candidates_per_round,
                max_rounds=options.max_rounds, **common,
            )  # fmt: skip
    else:
        mode = options.mode if options.strategy == "llm" else options.strategy
        result = await text_counterfactuals(
            ctx.llm, ctx.blackbox, rows, mode=mode, concept=options.concept, concept_value=options.concept_value,
            substitutes=options.substitutes, target=options.target, candidates_per_round=options.candidates_per_round,
            max_rounds=options.max_rounds, reference_words=options.reference_words,
            reference=[str(t) for t in ctx.reference] if ctx.reference is not None else None,
        )  # fmt: skip
    return [e.model_copy(update={"prompt_versions": result.prompt_versions}) for e in result.explanations]


def _chat_answer(r: dict[str, Any]) -> str:
    """A counterfactual search's result as the chat says it: the smallest verified flip, or why there is none."""
    shown = r.get("counterfactuals") or []
    valid = [c for c in shown if c.get("valid")]
    label, probability = r["original_prediction"], said(r["original_probability"])
    head = f"For {subject(r)} the model predicts {label} (probability {probability})"
    if "already" in str(r.get("stopped_by", "")):
        return f"For {subject(r)} the model already predicts {label} (probability {probability}): nothing to flip."
    if not valid:
        # no count: the tool shows the model only the first few candidates, so a count would be a number it never saw
        return f"{head}. None of the candidate changes flipped the prediction when the model re-checked them."
    best = valid[0]
    if "changes" in best:  # a row: [{feature, old, new}]
        edit = "setting " + ", ".join(
            f"{c['feature']} from {said(c['old'])} to {said(c['new'])}" for c in best["changes"]
        )
    else:
        edit = f'rewriting it as "{str(best.get("text", ""))[:160]}"'
    return (
        f"{head}. The smallest change found that flips it: {edit} gives {best['prediction']} "
        f"(probability {said(best['probability'])}), re-checked by the model."
    )


register(
    Method(
        name="counterfactual",
        description="Edited inputs that flip the black box's decision, for texts and tables, each confirmed by "
        "re-querying it: a guided search (the black box picks where to edit, the LLM proposes what), the LLM's own "
        "edits, or the black box's search alone.",
        inputs=("tabular_row", "text"),
        options=CounterfactualOptions,
        result=TabularCounterfactualExplanation | TextCounterfactualExplanation,
        run=_counterfactual,
        chat=ChatForm(
            " to know what must change for the model to decide differently.",
            (r"\bcounterfactual", r"\b(?:have|has|need|needs) to (?:change|be different)\b",
             r"\bwhat (?:would|must|needs? to|has to|should|could|will)(?: (?:need|needs|have|has) to)? (?:i |we )?"
             r"(?:change|be different|differ)|\bwhat would it take\b",
             r"\b(?:smallest|minimal|minimum|least)\s+(?:change|edit)", r"\b(?:flip|flips|reverse|overturn)\b",
             r"\b(?:change|alter)\b.{0,30}\b(?:prediction|decision|label|outcome|verdict|classification)\b",
             r"\b(?:to|would|could) (?:be|become|get|turn(?: into)?) CLASS\b",
             r"\bhow (?:could|can|would|do) (?:it|this|we|i)\b.{0,40}\b(?:become|get|be classified|turn)\b"),
            _chat_answer,
        ),
    )
)


class ConceptEffectOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concept: str = Field(min_length=1, max_length=100, description="The concept to change, e.g. 'service'.")
    concept_value: str | None = Field(None, max_length=100, description="Its new value; the LLM picks if unset.")
    output_class: str | int | None = Field(None, description="Measure this class's probability; default: the first.")
    edits_per_text: int = Field(1, ge=1, le=5)


async def _concept_effect(ctx: MethodContext, texts: list, options: ConceptEffectOptions) -> ConceptEffectResult:
    return await concept_effect(
        ctx.llm, ctx.blackbox, [to_text(t) for t in texts], options.concept, concept_value=options.concept_value,
        output_class=options.output_class, edits_per_text=options.edits_per_text,
    )  # fmt: skip


register(
    Method(
        name="concept_effect",
        description="How much the black box's output moves when only one concept of the texts changes "
        "(LLM-edited counterfactuals, re-scored by the model).",
        inputs=("text",),
        options=ConceptEffectOptions,
        result=ConceptEffectResult,
        run=_concept_effect,
        unit="set",
    )
)
