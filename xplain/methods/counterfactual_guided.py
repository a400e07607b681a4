"""Text counterfactuals as a guided search: the black box says which words move it, the LLM proposes what to put
in their place, the search keeps the edits that flip, fewest first.

1. Guide (black box): occlude each distinct word in ONE batch; the words whose removal most lowers the original
   class's probability are the places to edit.
2. Propose (LLM): for each such word, replacement words in ONE batched structured round (a capable model writes
   fluent ones); the user's `substitutes` join them, and deleting the word is always a candidate. Where a place has
   more candidates than it may keep, the LM ranks them by the log-likelihood of the edited words around the place
   (`llm.score`): a weak model that cannot write a replacement can still tell which reads better. The goal class's
   own name (the two likeliest goal classes' without a target) is tried at every place too: a classifier keyed to a
   word (an LLM classifier whose prompt names the labels) flips on it when a weak LLM proposes nothing usable.
   With reference texts, the black box ranks words too (`probe_vocabulary`): their most frequent words, each sent
   alone in ONE batch, and the `GOAL_WORDS` it reads most as the goal are each text's goal words; at every place
   the LM keeps the ones that read best there (the same scoring round). On IMDB with the 135M model, whose
   proposals are mostly "..." or the label's name, these words are what turns 3-4 weak edits into a flip.
3. Search (black box): every one-word edit in one batch; none flips, then the edit that moved the prediction most
   is kept and every second edit on top of it is tried, and so on up to `max_edits`. Only what the black box
   confirms is valid. Fluency is the LM's log-likelihood change from the original, reported per counterfactual.

Everything a text gets depends on the text and the options alone (greedy choices have fixed tie-breaks)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field, StringConstraints

from xplain.blackbox import BlackBox
from xplain.llm import LLM, GenerationRequest, ScoreRequest, StructuredOutputError
from xplain.methods.counterfactual import Label, Rejected, Verdict, class_name, goal_phrase, plain_label, read_verdict
from xplain.methods.words import WORD, distinct_words
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

SUBSTITUTES_PROMPT = "counterfactual/text_substitutes"
FLUENCY_PROMPT = "counterfactual/fluency"
#: Goal classes whose names are tried at every place when no target is set.
GOAL_NAMES = 2
#: Reference words sent to the black box alone, the most frequent first: enough that a classifier's strongest words
#: ("worst", "awful", "excellent" in IMDB's 400 commonest) are among them.
VOCABULARY = 400
#: Goal words a text keeps from that probe; the LM picks the most fluent few of them at each place.
GOAL_WORDS = 8
#: Words either side of a place that the LM reads to rank its replacements.
FLUENCY_WINDOW = 4
_SINGLE_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]{0,19}$")
_PIECES = re.compile(f"({WORD.pattern})")  # split keeping the words at the odd positions


class Substitutes(BaseModel):
    """Bounded so that a small model's grammar stops (OFFLINE.md)."""

    words: list[Annotated[str, StringConstraints(min_length=1, max_length=20)]] = Field(min_length=1, max_length=4)


def replace_words(text: str, edits: dict[str, str]) -> str:
    """The text with every occurrence of each (lower-cased) word replaced ("" deletes it), spacing tidied."""
    pieces = _PIECES.split(text)
    out = [edits.get(p.lower(), p) if i % 2 else p for i, p in enumerate(pieces)]
    return " ".join("".join(out).split())


@dataclass
class GuidedState:
    text: str
    original: Verdict
    target: Label | None
    places: list[str] = field(default_factory=list)  # words to edit, the strongest first
    occlusion: dict[str, float] = field(default_factory=dict)  # word -> change in target probability when removed
    candidates: dict[str, list[str]] = field(default_factory=dict)  # word -> replacements ("" = delete)
    base: dict[str, str] = field(default_factory=dict)  # edits kept so far (greedy)
    tried: set[str] = field(default_factory=set)
    found: list[tuple[dict[str, str], str, Verdict]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    queries: int = 1
    llm_requests: int = 0
    steps: int = 0
    stopped_by: str | None = None
    goals: list[Label] = field(default_factory=list)  # the classes a flip may reach, likeliest first
    goal_words: dict[str, float] = field(default_factory=dict)  # reference word -> goal probability, read alone

    @property
    def done(self) -> bool:
        return self.stopped_by is not None or any(v.valid for _, _, v in self.found)


async def occlude(blackbox: BlackBox, states: list[GuidedState], max_words: int, places: int) -> None:
    """Step 1: one black-box batch of every text with one of its distinct words removed."""
    variants = [(s, w) for s in states if not s.done for w in distinct_words(s.text, max_words)]
    if not variants:
        return
    probabilities = await blackbox.apredict_proba([replace_words(s.text, {w: ""}) for s, w in variants])
    for (state, word), row in zip(variants, probabilities):
        state.queries += 1
        verdict = read_verdict(blackbox, row, state.original.prediction, state.target)
        state.occlusion[word] = verdict.target_probability - state.original.target_probability
    for state in states:
        ranked = sorted(state.occlusion, key=lambda w: -state.occlusion[w])  # stable: text order breaks ties
        state.places = ranked[:places]


def reference_vocabulary(texts: Sequence[str], size: int = VOCABULARY) -> list[str]:
    """The `size` single words (letters only) found in the most reference texts, lower-cased; ties alphabetical."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w in distinct_words(text) if _SINGLE_WORD.match(w))
    return [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]]


async def probe_vocabulary(blackbox: BlackBox, states: list[GuidedState], vocabulary: Sequence[str]) -> None:
    """One black-box batch of every vocabulary word alone: each open text keeps the `GOAL_WORDS` words whose own
    probability of its goal (of leaving its class, without a target) is highest and above the median word's (a
    word that reads as neutral as most is no push, however fluent). The probe does not depend on the text, so a
    text gets the same words alone or in a batch; each counts the probe's rows as its own."""
    open_states = [s for s in states if not s.done]
    if not vocabulary or not open_states:
        return
    probabilities = await blackbox.apredict_proba(list(vocabulary))
    for state in open_states:
        state.queries += len(vocabulary)
        verdicts = (read_verdict(blackbox, row, state.original.prediction, state.target) for row in probabilities)
        reads = np.array([verdict.target_probability for verdict in verdicts])
        order = [i for i in np.argsort(-reads, kind="stable")[:GOAL_WORDS] if reads[i] > np.median(reads)]
        state.goal_words = {vocabulary[i]: round(float(reads[i]), 4) for i in order}


async def propose(
    llm: LLM,
    states: list[GuidedState],
    *,
    task: str,
    label_names: dict[Label, str],
    per_place: int,
    substitutes: Sequence[str],
) -> list[str]:
    """Step 2: one batched LLM round for every (text, place); candidates ranked by the LM when too many."""
    template = load_prompt(SUBSTITUTES_PROMPT)
    asks = [(s, w) for s in states if not s.done for w in s.places]
    requests = [
        GenerationRequest.user(
            template.render(
                task=task, text=fence(s.text), word=w, n=per_place,
                label=class_name(s.original.prediction, label_names),
                goal=goal_phrase(s.original.prediction, s.target, label_names),
            ),
            max_tokens=24 + 12 * per_place, temperature=0.0,
        )
        for s, w in asks
    ]  # fmt: skip
    replies = await llm.structured(requests, Substitutes, on_error="return") if requests else []
    offered = [w.lower() for w in substitutes if _SINGLE_WORD.match(w)]
    to_rank: list[tuple[GuidedState, str, list[str], list[str], list[str]]] = []
    for (state, word), reply in zip(asks, replies):
        if isinstance(reply, StructuredOutputError):
            state.llm_requests += llm.structured_attempts
            state.rejected.append(Rejected(candidate=reply.raw[:200], reason="the reply never matched the schema", round=1))
            proposed = []
        else:
            state.llm_requests += reply.attempts
            proposed = []
            for candidate in (c.strip().lower() for c in reply.value.words):
                if not _SINGLE_WORD.match(candidate) or candidate == word:
                    state.rejected.append(Rejected(candidate=candidate, reason=f"not a one-word replacement of {word!r}", round=1))
                else:
                    proposed.append(candidate)
        pool = list(dict.fromkeys(proposed + [o for o in offered if o != word]))
        named = [n for n in _goal_names(state, label_names) if n != word and n not in pool]
        vocabulary = [g for g in state.goal_words if g != word and g not in pool and g not in named]
        state.candidates[word] = [""] + pool + named + vocabulary  # deleting the word is always a candidate
        if len(pool) > per_place or len(vocabulary) > per_place:
            to_rank.append((state, word, pool, named, vocabulary))
    if to_rank:
        prompt = load_prompt(FLUENCY_PROMPT).render()
        scores = await llm.score(
            [
                ScoreRequest(prompt=prompt, continuations=[" " + around(s.text, w, c) for c in pool + vocabulary])
                for s, w, pool, _, vocabulary in to_rank
            ]
        )
        for (state, word, pool, named, vocabulary), scored in zip(to_rank, scores):
            logprobs = np.asarray(scored.logprobs)
            kept = _most_fluent(pool, logprobs[: len(pool)], per_place)
            state.candidates[word] = [""] + kept + named + _most_fluent(vocabulary, logprobs[len(pool) :], per_place)
    return [template.ref] + ([load_prompt(FLUENCY_PROMPT).ref] if to_rank else [])


def around(text: str, word: str, replacement: str, width: int = FLUENCY_WINDOW) -> str:
    """The `width` words either side of the first `word` in `text`, with `replacement` in its place: what the LM
    scores to rank replacements (a one-word change reads well or badly where it stands; scoring the whole text
    costs 3-4x more on the embedded model for nearly the same order)."""
    pieces = _PIECES.split(text)
    at = next(i for i in range(1, len(pieces), 2) if pieces[i].lower() == word)
    window = pieces[max(0, at - 2 * width) : at] + [replacement] + pieces[at + 1 : at + 2 * width + 1]
    return " ".join("".join(window).split())


def _most_fluent(words: list[str], logprobs: np.ndarray, keep: int) -> list[str]:
    """The `keep` words whose edited text the LM finds likeliest (ties: the given order)."""
    return [words[i] for i in np.argsort(-logprobs, kind="stable")[:keep]]


def _goal_names(state: GuidedState, label_names: dict[Label, str]) -> list[str]:
    """The goal classes' names that are single words, as replacement candidates."""
    names = (class_name(goal, label_names).strip().lower() for goal in state.goals)
    return [name for name in dict.fromkeys(names) if _SINGLE_WORD.match(name)]


def _edits(state: GuidedState) -> list[dict[str, str]]:
    """Every one-word edit on top of the kept ones, in a fixed order (place strength, then candidate order)."""
    out = []
    for word in state.places:
        if word in state.base:
            continue
        for candidate in state.candidates.get(word, [""]):
            edit = {**state.base, word: candidate}
            key = repr(sorted(edit.items()))
            if key not in state.tried:
                state.tried.add(key)
                out.append(edit)
    return out


async def search(blackbox: BlackBox, states: list[GuidedState], max_edits: int) -> None:
    """Step 3: grow the edit set one word at a time, each step one black-box batch over every text still open."""
    for step in range(1, max_edits + 1):
        batch = [(s, e) for s in states if not s.done for e in _edits(s)]
        if not batch:
            break
        probabilities = await blackbox.apredict_proba([replace_words(s.text, e) for s, e in batch])
        best: dict[int, tuple[float, dict[str, str]]] = {}
        for (state, edit), row in zip(batch, probabilities):
            state.queries += 1
            verdict = read_verdict(blackbox, row, state.original.prediction, state.target)
            state.found.append((edit, replace_words(state.text, edit), verdict))
            if id(state) not in best or verdict.target_probability > best[id(state)][0]:
                best[id(state)] = (verdict.target_probability, edit)
        for state in states:
            if id(state) in best:
                state.steps = step
                state.base = best[id(state)][1]


async def removal_search(blackbox: BlackBox, states: list[GuidedState]) -> None:
    """The search without an LLM: the words whose removal moved the prediction towards the goal (step 1's
    occlusion, strongest first) removed one more at a time, every prefix in one black-box batch; all are kept, so
    the fewest removals that flip come first."""
    batch = []
    for state in (s for s in states if not s.done):
        supporting = [w for w in sorted(state.occlusion, key=lambda w: -state.occlusion[w]) if state.occlusion[w] > 0]
        batch += [(state, {w: "" for w in supporting[:n]}) for n in range(1, len(supporting) + 1)]
        if not supporting:
            state.stopped_by = "removing any one word does not move the prediction towards the goal"
    if not batch:
        return
    probabilities = await blackbox.apredict_proba([replace_words(s.text, e) for s, e in batch])
    for (state, edit), row in zip(batch, probabilities):
        state.queries += 1
        state.steps = max(state.steps, len(edit))
        verdict = read_verdict(blackbox, row, state.original.prediction, state.target)
        state.found.append((edit, replace_words(state.text, edit), verdict))


async def fluency_changes(llm: LLM, pairs: list[tuple[str, str]]) -> list[float]:
    """LM log-likelihood (nats) of each edited text minus that of its original, in one batched score call."""
    if not pairs:
        return []
    prompt = load_prompt(FLUENCY_PROMPT).render()
    scores = await llm.score([ScoreRequest(prompt=prompt, continuations=[" " + a, " " + b]) for a, b in pairs])
    return [float(s.logprobs[1] - s.logprobs[0]) for s in scores]


def start_states(blackbox: BlackBox, texts: Sequence[str], probabilities: np.ndarray, target: Label | None) -> list[GuidedState]:
    classes = [plain_label(c) for c in blackbox.classes_]
    states = []
    for text, row in zip(texts, probabilities):
        original = classes[int(np.argmax(row))]
        state = GuidedState(text=text, original=read_verdict(blackbox, row, original, target), target=target)
        others = [classes[i] for i in np.argsort(-row, kind="stable") if classes[i] != original]
        state.goals = [target] if target is not None else others[:GOAL_NAMES]
        if target is not None and original == target:
            state.stopped_by = f"the black box already predicts the target {target!r}"
        states.append(state)
    return states
