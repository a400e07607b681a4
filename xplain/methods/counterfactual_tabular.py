"""Tabular counterfactuals: the LLM proposes changed feature values under the user's constraints (immutable
features, ranges, allowed directions). Constraints are checked against the schema before anything is queried, and
every proposal is checked against them before it may reach the black box; a violating proposal is rejected with
its reason, never scored as valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from xplain.blackbox import BlackBox
from xplain.blackbox.schema import numeric_schema
from xplain.llm import LLM, GenerationRequest
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
    with_costs,
)
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

PROPOSE_PROMPT = "counterfactual/tabular_propose"
RETRY_PROMPT = "counterfactual/tabular_retry"
FEEDBACK_SHOWN = 4


class FeatureConstraint(BaseModel):
    """What a counterfactual may do with one feature."""

    model_config = ConfigDict(extra="forbid")

    immutable: bool = False
    min: float | None = None
    max: float | None = None
    direction: Literal["any", "increase", "decrease"] = "any"
    integer: bool = Field(
        False,
        description="Whole numbers only (counts, years). Inferred from the reference rows when every value of the "
        "column is a whole number, unless set.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> FeatureConstraint:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    def violation(self, old: float, new: float) -> str | None:
        """Why changing a feature from `old` to `new` breaks this constraint, or None."""
        if self.immutable:
            return "is immutable"
        if not math.isfinite(new):
            return f"got a non-finite value {new}"
        if self.integer and new != round(new):
            return f"{new:g} is not a whole number"
        if self.min is not None and new < self.min:
            return f"{new:g} is below its minimum {self.min:g}"
        if self.max is not None and new > self.max:
            return f"{new:g} is above its maximum {self.max:g}"
        if self.direction == "increase" and new < old:
            return f"may only increase, but went {old:g} -> {new:g}"
        if self.direction == "decrease" and new > old:
            return f"may only decrease, but went {old:g} -> {new:g}"
        return None


def validate_constraints(
    feature_names: Sequence[str],
    constraints: Mapping[str, FeatureConstraint | Mapping] | None,
    reference: np.ndarray | None = None,
) -> dict[str, FeatureConstraint]:
    """One constraint per feature (default: free), or a ValueError that names what to fix. Columns of
    `reference` (training rows) that hold only whole numbers get `integer: true` unless the constraint sets it."""
    constraints = dict(constraints or {})
    unknown = sorted(set(constraints) - set(feature_names))
    if unknown:
        raise ValueError(f"constraints name unknown feature(s) {unknown}; the features are {list(feature_names)}")
    checked: dict[str, FeatureConstraint] = {}
    for name in feature_names:
        given = constraints.get(name, FeatureConstraint())
        try:
            checked[name] = given if isinstance(given, FeatureConstraint) else FeatureConstraint.model_validate(given)
        except ValueError as error:
            raise ValueError(f"constraint on {name!r} is invalid: {error}") from error
    if all(c.immutable for c in checked.values()):
        raise ValueError("every feature is immutable, so no counterfactual can exist; free at least one")
    if reference is not None and len(reference):
        whole = np.all(np.isfinite(reference) & (reference == np.round(reference)), axis=0)
        for column, name in enumerate(feature_names):
            if whole[column] and "integer" not in checked[name].model_fields_set:
                checked[name] = checked[name].model_copy(update={"integer": True})
    return checked


Value = bool | int | float | str | None


class FeatureChange(BaseModel):
    """One column's change, in the user's own values (a number, a category, a boolean; None when missing)."""

    feature: str
    old: Value
    new: Value
    proposed_by_llm: bool | None = Field(
        None,
        description="Whether the LLM proposed this value: always with strategy llm, never with search; guided: the "
        "LLM's pick, or else the value the black box's evidence found.",
    )


class TabularCounterfactual(CandidateBase):
    values: dict[str, Value] | list[float] = Field(
        description="The whole counterfactual row: column -> value in the user's terms (a list for a model whose "
        "columns have no names)."
    )
    changes: list[FeatureChange]


class TabularCounterfactualExplanation(ExplanationBase):
    row: dict[str, Value] | list[float] = Field(description="The row, column -> value in the user's terms.")
    counterfactuals: list[TabularCounterfactual] = Field(description="Valid ones first, then by features changed.")
    guide_columns: dict[str, float] = Field(
        default_factory=dict,
        description="Guided search: the columns edited, each with the largest rise in the probability of leaving "
        "the original class (or of the target) that changing it alone gave, measured on the black box.",
    )
    proposed: dict[str, list[Value]] = Field(
        default_factory=dict,
        description="Guided search: per guide column, the values the LLM proposed (its ranking of the column's "
        "candidates), beside what the search returned.",
    )

    @property
    def valid(self) -> list[TabularCounterfactual]:
        return [c for c in self.counterfactuals if c.valid]


class TabularCounterfactualResult(MethodResult):
    method: str = "counterfactual_tabular"
    feature_names: list[str]
    constraints: dict[str, FeatureConstraint]
    explanations: list[TabularCounterfactualExplanation]


def proposals_schema(
    mutable: Sequence[str], per_request: int, max_changes: int, categories: bool = False
) -> type[BaseModel]:
    """Feature names are an enum of the mutable ones, so a constrained decoder cannot even name a fixed feature;
    a table with categorical columns takes category names as values too (checked against the seen ones)."""
    value = float | Annotated[str, Field(max_length=60)] if categories else float
    change = create_model("Change", feature=(Literal[tuple(mutable)], ...), value=(value, ...))
    proposal = create_model("Proposal", changes=(list[change], Field(min_length=1, max_length=max_changes)))
    return create_model("Proposals", proposals=(list[proposal], Field(min_length=1, max_length=per_request)))


class TabularSearch(CounterfactualSearch[TabularCounterfactual]):
    def __init__(
        self,
        llm: LLM,
        blackbox: BlackBox,
        *,
        constraints: dict[str, FeatureConstraint],
        reference: np.ndarray | None,
        label_names: dict[Label, str],
        per_request: int,
        max_changes: int,
        max_rounds: int,
    ) -> None:
        super().__init__(llm, blackbox, max_rounds=max_rounds)
        self.names = list(blackbox.feature_names or [])
        self.table = blackbox.schema or numeric_schema(self.names)
        self.constraints = constraints
        self.label_names = label_names
        self.per_request = per_request
        self.max_changes = max_changes
        self.mutable = [n for n in self.names if not constraints[n].immutable]
        discrete = any(self.table.column(n).discrete for n in self.mutable)
        self._schema = proposals_schema(self.mutable, per_request, max_changes, categories=discrete)
        self.typical = None if reference is None else np.nanpercentile(reference, [5, 95], axis=0)

    @property
    def schema(self) -> type[BaseModel]:
        return self._schema

    def allowed_line(self, name: str, value: float) -> str:
        constraint, column = self.constraints[name], self.names.index(name)
        kind = self.table.columns[column]
        if kind.discrete:
            seen = [str(c) for c in (kind.categories or [True, False]) if c is not None]
            return f"- {name}: one of {', '.join(seen)} (now {kind.show(value)})"
        parts = []
        if constraint.min is not None:
            parts.append(f"at least {constraint.min:.4g}")
        if constraint.max is not None:
            parts.append(f"at most {constraint.max:.4g}")
        if not parts and self.typical is not None:
            parts.append(f"typically {self.typical[0, column]:.4g} to {self.typical[1, column]:.4g}")
        if constraint.direction != "any":
            parts.append(f"{constraint.direction} only (now {value:.4g})")
        if constraint.integer:
            parts.append("whole numbers only")
        return f"- {name}: {', '.join(parts) or 'any value'}"

    def request(self, state: SearchState[TabularCounterfactual], round_number: int) -> GenerationRequest:
        row = state.model_input
        values = {
            "row": fence("\n".join(f"{c.name} = {c.show(v)}" for c, v in zip(self.table.columns, row)), label="row"),
            "allowed": "\n".join(self.allowed_line(n, row[self.names.index(n)]) for n in self.mutable),
            "fixed": ", ".join(n for n in self.names if self.constraints[n].immutable) or "none",
            "label": class_name(state.original.prediction, self.label_names),
            "goal": goal_phrase(state.original.prediction, state.target, self.label_names),
            "n": self.per_request,
            "max_changes": self.max_changes,
        }
        if state.feedback:
            prompt = load_prompt(RETRY_PROMPT)
            values["attempts"] = fence("\n".join(state.feedback[-FEEDBACK_SHOWN:]), label="attempts")
        else:
            prompt = load_prompt(PROPOSE_PROMPT)
        state.extra.setdefault("prompts", set()).add(prompt.ref)
        return GenerationRequest.user(prompt.render(**values), max_tokens=48 + 40 * self.per_request * self.max_changes)

    def screen(self, state, reply, round_number):
        proposals = []
        row = state.model_input
        for proposal in reply.proposals:
            described = ", ".join(f"{c.feature} = {c.value}" for c in proposal.changes)
            problem, new_row = self.apply(row, [(c.feature, c.value) for c in proposal.changes])
            key = None if new_row is None else np.asarray(new_row).tobytes().hex()
            if problem is None and key in state.seen:
                problem = "duplicate of an earlier proposal"
            if problem:
                state.rejected.append(Rejected(candidate=described, reason=problem, round=round_number))
                continue
            state.seen.add(key)
            changes = [
                FeatureChange(
                    feature=c.name, old=c.decode(np.array([o]))[0], new=c.decode(np.array([v]))[0], proposed_by_llm=True
                )
                for c, o, v in zip(self.table.columns, row, new_row)
                if not _same_code(o, v)
            ]
            proposals.append(Proposal(changes, new_row, len(changes)))
        return proposals

    def apply(self, row: list[float], changes: list[tuple[str, Any]]) -> tuple[str | None, list[float] | None]:
        """The changed (encoded) row, or why the changes are not allowed (checked here whatever the decoder
        enforced): a category must be one the model knows, a number a number."""
        named = [name for name, _ in changes]
        if len(set(named)) != len(named):
            return "changes the same feature twice", None
        new_row = list(row)
        for name, value in changes:
            if name not in self.constraints:
                return f"{name!r} is not a feature", None
            column = self.names.index(name)
            kind = self.table.columns[column]
            if kind.discrete:
                try:
                    code = kind.encode(value)
                except ValueError as error:
                    return str(error), None
                if _same_code(code, row[column]):
                    continue
                if self.constraints[name].immutable:
                    return f"{name} is immutable", None
                new_row[column] = code
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                return f"{name} = {value!r} is not a number", None
            if _same_shown(number, row[column]):
                continue
            problem = self.constraints[name].violation(row[column], number)
            if problem:
                return f"{name} {problem}", None
            new_row[column] = number
        if all(_same_code(a, b) for a, b in zip(new_row, row)):
            return "unchanged", None
        return None, new_row

    def candidate(self, proposal: Proposal, verdict: Verdict, round_number: int) -> TabularCounterfactual:
        return TabularCounterfactual(
            values=self.table.records(np.asarray(proposal.model_input))[0],
            changes=proposal.payload,
            edit_size=proposal.edit_size,
            round=round_number,
            **verdict.model_dump(),
        )

    def feedback(self, proposal: Proposal, verdict: Verdict) -> str:
        described = ", ".join(f"{c.feature} {shown(c.old)} -> {shown(c.new)}" for c in proposal.payload)
        label = class_name(verdict.prediction, self.label_names)
        return f"{described}: still {label} (probability {verdict.probability:.2f})"


def shown(value: Value) -> str:
    """A changed value as people read it: numbers to 4 significant digits, categories as they are."""
    if value is None:
        return "missing"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def numeric_change(change: FeatureChange) -> float:
    """How far a number moved (0 for a category or boolean, which has no distance)."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (change.old, change.new))
    return float(change.new) - float(change.old) if numbers else 0.0


def _same_code(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _same_shown(new: float, old: float) -> bool:
    """LLMs copy values they were shown rounded; a copy (same to 4 significant digits) is no change."""
    return f"{new:.4g}" == f"{old:.4g}"


def check_rows(blackbox: BlackBox, rows: np.ndarray | Sequence[Sequence[float]]) -> list[list[float]]:
    if blackbox.kind != "tabular" or not blackbox.feature_names:
        raise ValueError(f"tabular counterfactuals need a 'tabular' black box with feature names; got {blackbox!r}")
    array = np.asarray(rows, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"rows must be a non-empty 2-D table (rows x features), got shape {array.shape}")
    if array.shape[1] != len(blackbox.feature_names):
        raise ValueError(f"rows have {array.shape[1]} values but the model has {len(blackbox.feature_names)} features")
    accepts = np.array([c.accepts_missing for c in blackbox.schema.columns]) if blackbox.schema else False
    if not (np.isfinite(array) | (np.isnan(array) & accepts)).all():
        raise ValueError("rows contain NaN or infinite values; fill them before asking for counterfactuals")
    return array.tolist()


async def tabular_counterfactuals(
    llm: LLM,
    blackbox: BlackBox,
    rows: np.ndarray | Sequence[Sequence[float]],
    *,
    constraints: Mapping[str, FeatureConstraint | Mapping] | None = None,
    target: Label | None = None,
    reference: np.ndarray | None = None,
    label_names: dict[Label, str] | None = None,
    candidates_per_round: int = 2,
    max_changes: int = 3,
    max_rounds: int = 3,
) -> TabularCounterfactualResult:
    """Counterfactuals for many rows at once under `constraints` (feature -> FeatureConstraint or its dict).

    `reference` (e.g. training rows) gives the LLM each feature's typical range, and marks whole-number columns
    `integer` unless a constraint says otherwise. Everything is validated before
    the first query; each round is one batched LLM call and one black-box batch.
    """
    table = check_rows(blackbox, rows)
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or reference.shape[1] != len(blackbox.feature_names):
            raise ValueError(f"reference must have {len(blackbox.feature_names)} columns, got shape {reference.shape}")
    checked = validate_constraints(blackbox.feature_names, constraints, reference)
    if not 1 <= candidates_per_round <= 5:
        raise ValueError(f"candidates_per_round must be between 1 and 5, got {candidates_per_round}")
    if max_changes < 1:
        raise ValueError(f"max_changes must be at least 1, got {max_changes}")
    target = check_target(blackbox, target)
    with measure_cost(blackbox) as meter:
        search = TabularSearch(
            llm,
            blackbox,
            constraints=checked,
            reference=reference,
            label_names=label_names or {},
            per_request=candidates_per_round,
            max_changes=max_changes,
            max_rounds=max_rounds,
        )
        states = await search.run(await search.start(table, [target] * len(table)))
    return TabularCounterfactualResult(
        feature_names=list(blackbox.feature_names),
        constraints=checked,
        explanations=with_costs(
            [
                TabularCounterfactualExplanation(
                    row=search.table.records(np.asarray(s.model_input))[0], counterfactuals=s.ordered(),
                    **s.common_fields(),
                )  # fmt: skip
                for s in states
            ],
            meter.cost,
        ),
        prompt_versions=sorted(set().union(*(s.extra.get("prompts", set()) for s in states))),
        cost=meter.cost,
    )
