"""The verification loop every counterfactual search shares (DESIGN.md rule 1: the black box decides, not the LLM).

Each round sends ONE batched LLM call across every input still without a confirmed counterfactual, screens the
proposals (unchanged, duplicate, constraint-breaking ones never reach the black box), re-scores all survivors in
ONE black-box batch, and feeds the ones that did not flip back to the LLM with the model's verdict. A candidate is
marked valid only when the black box's own prediction on it reaches the target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from xplain.blackbox import BlackBox
from xplain.blackbox.errors import QueryBudgetExceeded
from xplain.llm import LLM, GenerationRequest, StructuredOutputError
from xplain.methods.base import Cost, ShowsItself

Label = int | float | str | bool
RETRY_TEMPERATURE = 0.7


class Verdict(BaseModel):
    """The black box's answer on one input, read against the target."""

    prediction: Label
    probability: float = Field(description="Probability of the predicted class.")
    target_probability: float = Field(
        description="Probability of the target class, or of leaving the original class when no target is set."
    )
    valid: bool = Field(description="True only when the black box's prediction reached the target.")


class Rejected(BaseModel):
    """A proposal dropped before (or instead of) querying the black box, and why."""

    candidate: str
    reason: str
    round: int


class CandidateBase(BaseModel):
    """What every scored counterfactual carries: the black box's verdict and the cost of finding it."""

    valid: bool
    prediction: Label
    probability: float
    target_probability: float
    edit_size: int = Field(description="Token-level edit distance (text) or number of changed features (tabular).")
    round: int


class ExplanationBase(ShowsItself):
    """Per input: its original prediction, what was tried, and what it cost."""

    original_prediction: Label
    original_probability: float
    target: Label | None = Field(None, description="The class asked for; None means any class but the original.")
    rejected: list[Rejected] = Field(default_factory=list)
    rounds_used: int = 0
    llm_requests: int = 0
    blackbox_queries: int = Field(
        0,
        description="Rows this input's search asked the black box about, the original and cached answers included "
        "(`cost.blackbox_queries` is instead an equal share of the rows the black box actually evaluated).",
    )
    stopped_by: str | None = Field(None, description="Why the search ended early, if it did (e.g. query budget).")
    prompt_versions: list[str] = Field(default_factory=list, description="`name@version` of each template used.")
    cost: Cost = Field(
        default_factory=Cost,
        description="This input's equal share of what the search cost (LLM calls and tokens, black-box queries, time).",
    )


C = TypeVar("C", bound=CandidateBase)
E = TypeVar("E", bound=ExplanationBase)


def with_costs(explanations: list[E], cost: Cost) -> list[E]:
    """Each input's equal share of the cost of a search that batched them all (the shares add up to it; black-box
    queries are the rows the model evaluated, cache hits not counted, as in every method's cost)."""
    if not explanations:
        return explanations
    return [e.model_copy(update={"cost": share}) for e, share in zip(explanations, cost.split(len(explanations)))]


def plain_label(value: Any) -> Label:
    """A class label as a JSON-able Python scalar."""
    return value.item() if isinstance(value, np.generic) else value


def read_verdict(blackbox: BlackBox, probabilities: np.ndarray, original: Label, target: Label | None) -> Verdict:
    classes = [plain_label(c) for c in blackbox.classes_]
    predicted = int(np.argmax(probabilities))
    if target is None:
        target_probability = 1.0 - float(probabilities[classes.index(original)])
        valid = classes[predicted] != original
    else:
        target_probability = float(probabilities[classes.index(target)])
        valid = classes[predicted] == target
    return Verdict(
        prediction=classes[predicted],
        probability=float(probabilities[predicted]),
        target_probability=target_probability,
        valid=valid,
    )


def check_target(blackbox: BlackBox, target: Label | None) -> Label | None:
    """A target must be one of the black box's classes; say which ones exist when it is not."""
    if not blackbox.is_classifier:
        raise ValueError(f"counterfactuals need a classifier; {blackbox.name} is a 'module' black box")
    if target is None or blackbox.classes_ is None:
        return target
    classes = [plain_label(c) for c in blackbox.classes_]
    if target in classes:
        return target
    by_text = {str(c): c for c in classes}
    if str(target) in by_text:
        return by_text[str(target)]
    raise ValueError(f"target {target!r} is not a class of {blackbox.name}; its classes are {classes}")


def class_name(label: Label, names: dict[Label, str]) -> str:
    return names.get(label, str(label))


def goal_phrase(original: Label, target: Label | None, names: dict[Label, str]) -> str:
    """What the LLM is asked to reach, in words: the target class, or any class but the original."""
    if target is None:
        return f"anything other than '{class_name(original, names)}'"
    return f"'{class_name(target, names)}'"


@dataclass
class SearchState(Generic[C]):
    """One input's search: its original verdict, what the LLM was told, and what the black box confirmed."""

    model_input: Any
    original: Verdict
    target: Label | None
    found: list[C] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    rounds: int = 0
    llm_requests: int = 0
    queries: int = 1
    stopped_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.stopped_by is not None or any(c.valid for c in self.found)

    def ordered(self) -> list[C]:
        """Valid first, then the smallest edits, then the closest to the target."""
        return sorted(self.found, key=lambda c: (not c.valid, c.edit_size, -c.target_probability))

    def common_fields(self) -> dict[str, Any]:
        return {
            "original_prediction": self.original.prediction,
            "original_probability": self.original.probability,
            "target": self.target,
            "rejected": self.rejected,
            "rounds_used": self.rounds,
            "llm_requests": self.llm_requests,
            "blackbox_queries": self.queries,
            "stopped_by": self.stopped_by,
        }


@dataclass
class Proposal:
    """A screened candidate ready for the black box: what to show the user, what the model eats, its edit size."""

    payload: Any
    model_input: Any
    edit_size: int


class CounterfactualSearch(ABC, Generic[C]):
    """The loop; subclasses say how to ask (requests, schema) and how to screen and record proposals."""

    def __init__(self, llm: LLM, blackbox: BlackBox, *, max_rounds: int) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        self.llm = llm
        self.blackbox = blackbox
        self.max_rounds = max_rounds

    @property
    @abstractmethod
    def schema(self) -> type[BaseModel]: ...

    @abstractmethod
    def request(self, state: SearchState[C], round_number: int) -> GenerationRequest: ...

    @abstractmethod
    def screen(self, state: SearchState[C], reply: BaseModel, round_number: int) -> list[Proposal]:
        """Turn a reply into proposals worth querying; record every dropped one in `state.rejected`."""

    @abstractmethod
    def candidate(self, proposal: Proposal, verdict: Verdict, round_number: int) -> C: ...

    @abstractmethod
    def feedback(self, proposal: Proposal, verdict: Verdict) -> str:
        """One line telling the LLM what the black box said about a proposal that did not reach the target."""

    async def start(self, inputs: Sequence[Any], targets: Sequence[Label | None]) -> list[SearchState[C]]:
        """Score every original in one black-box batch."""
        probabilities = await self.blackbox.apredict_proba(list(inputs))
        classes = [plain_label(c) for c in self.blackbox.classes_]
        targets = [check_target(self.blackbox, t) for t in targets]  # classes may only be known from now on
        states = []
        for model_input, row, target in zip(inputs, probabilities, targets):
            original = classes[int(np.argmax(row))]
            verdict = read_verdict(self.blackbox, row, original, target)
            state: SearchState[C] = SearchState(model_input=model_input, original=verdict, target=target)
            if target is not None and original == target:
                state.stopped_by = f"the black box already predicts the target {target!r}"
            states.append(state)
        return states

    async def run(self, states: list[SearchState[C]], first_round: int = 1) -> list[SearchState[C]]:
        for round_number in range(first_round, first_round + self.max_rounds):
            pending = [s for s in states if not s.done]
            if not pending:
                break
            requests = [self.request(s, round_number) for s in pending]
            if round_number > first_round:  # the deterministic answer already failed: sample for variety
                requests = [
                    r.model_copy(update={"temperature": RETRY_TEMPERATURE, "seed": round_number}) for r in requests
                ]
            replies = await self.llm.structured(requests, self.schema, on_error="return")
            batch: list[tuple[SearchState[C], Proposal]] = []
            for state, reply in zip(pending, replies):
                state.rounds += 1
                if isinstance(reply, StructuredOutputError):
                    state.llm_requests += self.llm.structured_attempts
                    state.rejected.append(
                        Rejected(
                            candidate=reply.raw[:300], reason="the reply never matched the schema", round=round_number
                        )
                    )
                    state.feedback.append("(your last reply was not valid JSON of the asked form)")
                    continue
                state.llm_requests += reply.attempts
                already_rejected = len(state.rejected)
                batch.extend((state, p) for p in self.screen(state, reply.value, round_number))
                # Dropped proposals go back too, so the next prompt differs and a cached reply is not repeated.
                state.feedback.extend(
                    f'"{r.candidate}" -> dropped: {r.reason}' for r in state.rejected[already_rejected:]
                )
            if not batch:
                continue
            try:
                probabilities = await self.blackbox.apredict_proba([p.model_input for _, p in batch])
            except QueryBudgetExceeded as exceeded:
                for state in pending:
                    state.stopped_by = f"black-box query budget: {exceeded}"
                break
            for (state, proposal), row in zip(batch, probabilities):
                verdict = read_verdict(self.blackbox, row, state.original.prediction, state.target)
                state.queries += 1
                state.found.append(self.candidate(proposal, verdict, round_number))
                if not verdict.valid:
                    state.feedback.append(self.feedback(proposal, verdict))
        return states
