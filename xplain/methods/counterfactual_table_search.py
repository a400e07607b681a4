"""Tabular counterfactuals found by searching with the black box, fewest changed columns first.

Guided (the default): the black box guides, the LLM proposes, the search keeps what flips.
1. Guide (black box): every mutable column set alone to each of its candidate values — a category or boolean to the
   schema's other values, a number to values seen in the reference rows (their 5th to 95th percentiles) that the
   constraints allow — in ONE batch; the columns whose change most raises the probability of leaving the original
   class (or of the target) are the places to edit. A single change that flips is already a counterfactual.
2. Propose (LLM): for each place, the LM scores the column's candidate values as continuations of a prompt that
   shows the row and the goal (one batched `score` round; a weak model that cannot write a value can still rank
   them); its top picks, and the value the black box found best for that column, are the values searched.
3. Search (black box): no single change flips, then the best few edits are kept and every second column is added
   on top of each, and so on up to `max_changes` columns; one batch per step. Only what the black box confirms is
   valid. Immutable columns (the constraints' and the schema's) are never candidates. Last, each number in the
   smallest flips is tried at the candidate values nearer the row's own (one batch), so the smallest move that
   still flips comes first.

Path (strategy "search", no LLM): walk from the row towards the nearest reference rows of another class until the
label flips, then put back every column the flip does not need, one batch per round.

Everything a row gets depends on the row, the reference rows and the options alone (fixed tie-breaks, no draws).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from xplain.blackbox import BlackBox
from xplain.blackbox.schema import TableSchema, numeric_schema
from xplain.llm import LLM, ScoreRequest
from xplain.methods.base import measure_cost
from xplain.methods.counterfactual import Label, Verdict, check_target, class_name, goal_phrase, plain_label, read_verdict, with_costs
from xplain.methods.counterfactual_tabular import (
    FeatureChange,
    FeatureConstraint,
    TabularCounterfactual,
    TabularCounterfactualExplanation,
    TabularCounterfactualResult,
    check_rows,
    validate_constraints,
)
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

VALUE_PROMPT = "counterfactual/tabular_value"
QUANTILES = (5, 25, 50, 75, 95)  # the reference values a number may take
GUIDE_PLACES = 4  # columns searched at most: max_changes + 2, at least this many
BEAM = 3  # partial edits carried from one step to the next
SHOWN = 10  # counterfactuals kept per row: the valid ones first
PATH_STEPS = np.linspace(0.0, 1.0, 21)[1:]
PATH_STARTS = 5


@dataclass
class TableSpace:
    """What a search may do with a table: its columns, the constraints (immutables folded in), the reference rows."""

    blackbox: BlackBox
    schema: TableSchema
    constraints: dict[str, FeatureConstraint]
    reference: np.ndarray | None

    @classmethod
    def of(
        cls,
        blackbox: BlackBox,
        constraints: Mapping[str, FeatureConstraint | Mapping] | None,
        reference: np.ndarray | None,
    ) -> TableSpace:
        names = list(blackbox.feature_names or [])
        schema = blackbox.schema or numeric_schema(names)
        if reference is not None:
            reference = np.asarray(reference, dtype=np.float64)
            if reference.ndim != 2 or reference.shape[1] != len(names):
                raise ValueError(f"reference must have {len(names)} columns, got shape {reference.shape}")
        checked = validate_constraints(names, _with_schema_immutables(schema, constraints), reference)
        return cls(blackbox, schema, checked, reference)

    @property
    def names(self) -> list[str]:
        return self.schema.names

    def mutable(self, j: int) -> bool:
        return not (self.constraints[self.names[j]].immutable or self.schema.columns[j].immutable)

    def values(self, row: np.ndarray) -> dict[int, list[float]]:
        """Each mutable column's candidate values (encoded) other than the row's own: the schema's categories, the
        other boolean, or reference values of a number that its constraint allows."""
        out: dict[int, list[float]] = {}
        for j, column in enumerate(self.schema.columns):
            if not self.mutable(j):
                continue
            if column.kind == "boolean":
                values = [0.0, 1.0]
            elif column.categories is not None:
                values = [float(i) for i, c in enumerate(column.categories) if c is not None]
            else:
                seen = np.empty(0) if self.reference is None else self.reference[:, j]
                seen = seen[np.isfinite(seen)]
                if not len(seen):
                    continue
                values = sorted({float(v) for v in np.percentile(seen, QUANTILES, method="nearest")})
                constraint = self.constraints[column.name]
                values = [v for v in values if np.isnan(row[j]) or constraint.violation(float(row[j]), v) is None]
            kept = [v for v in values if not _same(v, row[j])]
            if kept:
                out[j] = kept
        return out

    def edited(self, row: np.ndarray, edit: Mapping[int, float]) -> np.ndarray:
        new = np.array(row, dtype=np.float64)
        for j, value in edit.items():
            new[j] = value
        return new

    def distance(self, row: np.ndarray, new: np.ndarray) -> float:
        """How far an edit moved: numbers in the reference's standard deviations, a changed category 1."""
        scale = self.schema.scale(self.reference if self.reference is not None else row[None, :])
        return float(np.abs(self.schema.changes(new[None, :], row, scale)).sum())

    def counterfactual(
        self, row: np.ndarray, edit: Mapping[int, float], verdict: Verdict, step: int, proposed: Mapping[int, list[float]] | None
    ) -> TabularCounterfactual:
        new = self.edited(row, edit)
        changes = [
            FeatureChange(
                feature=self.names[j], old=column.decode(row[j : j + 1])[0], new=column.decode(new[j : j + 1])[0],
                proposed_by_llm=proposed is not None and any(_same(edit[j], v) for v in proposed.get(j, [])),
            )
            for j, column in enumerate(self.schema.columns)
            if j in edit and not _same(row[j], new[j])
        ]  # fmt: skip
        return TabularCounterfactual(
            values=self.schema.records(new[None, :])[0], changes=changes, edit_size=len(changes), round=step,
            **verdict.model_dump(),
        )  # fmt: skip


def _with_schema_immutables(
    schema: TableSchema, constraints: Mapping[str, FeatureConstraint | Mapping] | None
) -> dict[str, FeatureConstraint | Mapping]:
    """The user's constraints, with every column the schema marks immutable made immutable too."""
    merged: dict[str, FeatureConstraint | Mapping] = dict(constraints or {})
    for column in schema.columns:
        if column.immutable:
            given = merged.get(column.name, {})
            given = given.model_dump() if isinstance(given, FeatureConstraint) else dict(given)
            merged[column.name] = {**given, "immutable": True}
    return merged


def _same(a: float, b: float) -> bool:
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


@dataclass
class RowSearch:
    row: np.ndarray
    original: Verdict
    target: Label | None
    values: dict[int, list[float]] = field(default_factory=dict)
    guide: dict[int, float] = field(default_factory=dict)  # column -> best rise of the target probability alone
    evidence: dict[int, float] = field(default_factory=dict)  # column -> the value that gave it
    places: list[int] = field(default_factory=list)
    proposed: dict[int, list[float]] = field(default_factory=dict)  # column -> the LLM's picks, best first
    found: list[tuple[dict[int, float], Verdict, int]] = field(default_factory=list)
    beam: list[dict[int, float]] = field(default_factory=list)
    tried: set[str] = field(default_factory=set)
    queries: int = 1
    llm_requests: int = 0
    steps: int = 0
    stopped_by: str | None = None

    @property
    def done(self) -> bool:
        return self.stopped_by is not None or any(v.valid for _, v, _ in self.found)


async def _start(blackbox: BlackBox, rows: np.ndarray, target: Label | None) -> list[RowSearch]:
    probabilities = await blackbox.apredict_proba(rows)
    classes = [plain_label(c) for c in blackbox.classes_]
    states = []
    for row, p in zip(rows, probabilities):
        original = classes[int(np.argmax(p))]
        state = RowSearch(row=row, original=read_verdict(blackbox, p, original, target), target=target)
        if target is not None and original == target:
            state.stopped_by = f"the black box already predicts the target {target!r}"
        states.append(state)
    return states


async def _evaluate(space: TableSpace, batch: list[tuple[RowSearch, dict[int, float]]], step: int) -> None:
    """One black-box batch of edits; each verdict recorded on its row's search."""
    if not batch:
        return
    probabilities = await space.blackbox.apredict_proba(np.vstack([space.edited(s.row, e) for s, e in batch]))
    for (state, edit), p in zip(batch, probabilities):
        state.queries += 1
        state.steps = step
        state.found.append((edit, read_verdict(space.blackbox, p, state.original.prediction, state.target), step))


async def _guide(space: TableSpace, states: list[RowSearch], places: int) -> None:
    """Step 1: every single-column change of every open row, in one batch."""
    for state in states:
        state.values = space.values(state.row)
        state.tried = {json.dumps({j: v}) for j, vs in state.values.items() for v in vs}
    await _evaluate(space, [(s, {j: v}) for s in states if not s.done for j, vs in s.values.items() for v in vs], 1)
    for state in states:
        for edit, verdict, _ in state.found:
            [(j, value)] = edit.items()
            gain = verdict.target_probability - state.original.target_probability
            if j not in state.guide or gain > state.guide[j]:
                state.guide[j] = gain
                if gain > 0:  # a value that moves the model towards the goal is evidence; no move, none
                    state.evidence[j] = value
        state.places = sorted(state.guide, key=lambda j: -state.guide[j])[:places]  # stable: column order breaks ties


async def _propose(space: TableSpace, llm: LLM, states: list[RowSearch], per_place: int, label_names) -> str | None:
    """Step 2: one batched LM scoring round over the places of each row still without a flip that have more than
    one value (a boolean's only other value needs no choosing)."""
    template = load_prompt(VALUE_PROMPT)
    asks = [(s, j) for s in states if not s.done for j in s.places if len(s.values[j]) > 1]
    if not asks:
        return None
    requests = [
        ScoreRequest(
            prompt=template.render(
                row=fence(space.schema.describe(s.row), label="row"), column=space.names[j],
                label=class_name(s.original.prediction, label_names),
                goal=goal_phrase(s.original.prediction, s.target, label_names),
            ),
            continuations=[f" {space.schema.columns[j].show(v)}" for v in s.values[j]],
        )
        for s, j in asks
    ]  # fmt: skip
    scores = await llm.score(requests)
    for (state, j), scored in zip(asks, scores):
        state.llm_requests += 1
        per_token = [lp / max(n, 1) for lp, n in zip(scored.logprobs, scored.token_counts)]
        order = np.argsort(-np.asarray(per_token), kind="stable")[:per_place]
        state.proposed[j] = [state.values[j][i] for i in order]
    return template.ref


async def _search(space: TableSpace, states: list[RowSearch], max_changes: int) -> None:
    """Step 3: grow the best edits one column at a time, one batch a step; a column takes the LLM's picks and the
    value that moved the black box most when changed alone (if any did)."""
    for state in states:
        singles = [(e, v) for e, v, _ in state.found if next(iter(e)) in state.places]
        state.beam = [e for e, _ in sorted(singles, key=lambda f: -f[1].target_probability)[:BEAM]]
    for step in range(2, max_changes + 1):
        batch = []
        for state in (s for s in states if not s.done):
            for base in state.beam:
                for j in (j for j in state.places if j not in base):
                    only = state.values[j] if len(state.values[j]) == 1 else []  # nothing to choose: no LLM asked
                    evidence = [state.evidence[j]] if j in state.evidence else []
                    for value in dict.fromkeys([*state.proposed.get(j, only), *evidence]):
                        edit = {**base, j: value}
                        key = json.dumps(dict(sorted(edit.items())))
                        if key not in state.tried:
                            state.tried.add(key)
                            batch.append((state, edit))
        if not batch:
            break
        await _evaluate(space, batch, step)
        for state in states:
            latest = [(e, v) for e, v, s in state.found if s == step]
            if latest:
                state.beam = [e for e, _ in sorted(latest, key=lambda f: -f[1].target_probability)[:BEAM]]


async def _tighten(space: TableSpace, states: list[RowSearch]) -> None:
    """Each flip of the fewest columns, with one of its numbers moved back to each candidate value nearer the row's
    own (one batch for all rows): the search took the value that moved the model most, and a smaller move may
    flip it too."""
    batch = []
    for state in states:
        flips = [(e, step) for e, v, step in state.found if v.valid]
        fewest = min((len(e) for e, _ in flips), default=0)
        for edit, step in (f for f in flips if len(f[0]) == fewest):
            for j, value in edit.items():
                if space.schema.columns[j].discrete or np.isnan(state.row[j]):
                    continue
                nearer = [v for v in state.values.get(j, []) if abs(v - state.row[j]) < abs(value - state.row[j])]
                for v in nearer:
                    tighter = {**edit, j: v}
                    key = json.dumps(dict(sorted(tighter.items())))
                    if key not in state.tried:
                        state.tried.add(key)
                        batch.append((state, tighter, step))
    if not batch:
        return
    probabilities = await space.blackbox.apredict_proba(np.vstack([space.edited(s.row, e) for s, e, _ in batch]))
    for (state, edit, step), p in zip(batch, probabilities):
        state.queries += 1
        state.found.append((edit, read_verdict(space.blackbox, p, state.original.prediction, state.target), step))


def _explanation(space: TableSpace, state: RowSearch, guided: bool, stopped: str) -> TabularCounterfactualExplanation:
    candidates = [
        (space.counterfactual(state.row, e, v, step, state.proposed if guided else None), e)
        for e, v, step in state.found
    ]
    candidates.sort(
        key=lambda c: (not c[0].valid, c[0].edit_size, space.distance(state.row, space.edited(state.row, c[1])),
                       -c[0].target_probability)
    )  # fmt: skip
    unique = list({json.dumps(c.values, sort_keys=True, default=str): c for c, _ in candidates}.values())
    shown_values = {
        space.names[j]: space.schema.columns[j].decode(np.asarray(vs, dtype=float)) for j, vs in state.proposed.items()
    }
    return TabularCounterfactualExplanation(
        row=space.schema.records(state.row[None, :])[0], counterfactuals=unique[:SHOWN],
        guide_columns={space.names[j]: state.guide[j] for j in state.places} if guided else {},
        proposed=shown_values if guided else {},
        original_prediction=state.original.prediction, original_probability=state.original.probability,
        target=state.target, rounds_used=state.steps, llm_requests=state.llm_requests,
        blackbox_queries=state.queries, stopped_by=state.stopped_by or (None if state.done else stopped),
    )  # fmt: skip


async def guided_tabular_counterfactuals(
    llm: LLM,
    blackbox: BlackBox,
    rows: np.ndarray | Sequence[Sequence[float]],
    *,
    constraints: Mapping[str, FeatureConstraint | Mapping] | None = None,
    target: Label | None = None,
    reference: np.ndarray | None = None,
    label_names: dict[Label, str] | None = None,
    per_place: int = 2,
    max_changes: int = 3,
) -> TabularCounterfactualResult:
    """Guided counterfactuals for many (encoded) rows at once: each step is one batch over every open row; the
    LLM's share is one scoring round. `reference` rows give the numbers' candidate values (without them only
    categories and booleans move)."""
    table = np.asarray(check_rows(blackbox, rows), dtype=np.float64)
    space = TableSpace.of(blackbox, constraints, reference)
    if max_changes < 1:
        raise ValueError(f"max_changes must be at least 1, got {max_changes}")
    target = check_target(blackbox, target)
    versions = []
    with measure_cost(blackbox) as meter:
        states = await _start(blackbox, table, target)
        await _guide(space, states, max(GUIDE_PLACES, max_changes + 2))
        version = await _propose(space, llm, states, per_place, label_names or {})
        versions += [version] if version else []
        await _search(space, states, max_changes)
        await _tighten(space, states)
    explanations = [_explanation(space, s, True, f"no flip within {max_changes} changed columns") for s in states]
    return TabularCounterfactualResult(
        feature_names=space.names, constraints=space.constraints,
        explanations=with_costs(explanations, meter.cost), prompt_versions=versions, cost=meter.cost,
    )  # fmt: skip


async def path_counterfactuals(
    blackbox: BlackBox,
    rows: np.ndarray | Sequence[Sequence[float]],
    *,
    constraints: Mapping[str, FeatureConstraint | Mapping] | None = None,
    target: Label | None = None,
    reference: np.ndarray | None = None,
) -> TabularCounterfactualResult:
    """Counterfactuals with the black box alone: for each row, the path towards each of the nearest reference rows
    the model puts in another class (the target, if set) is walked until the label flips (a category, boolean or
    ordinal takes the other row's value halfway, an integer stays whole); then columns go back to the row's values,
    the largest change first, while the flip holds."""
    table = np.asarray(check_rows(blackbox, rows), dtype=np.float64)
    space = TableSpace.of(blackbox, constraints, reference)
    if space.reference is None or len(space.reference) < 2:
        raise ValueError("the path search walks towards reference rows of another class: give at least 2 reference rows")
    target = check_target(blackbox, target)
    with measure_cost(blackbox) as meter:
        states = await _start(blackbox, table, target)
        labels = np.asarray(await blackbox.apredict_proba(space.reference)).argmax(axis=1)
        for state in states:
            if not state.done:
                await _walk(space, state, labels)
    explanations = [_explanation(space, s, False, "no reference row of another class could be reached") for s in states]
    return TabularCounterfactualResult(
        feature_names=space.names, constraints=space.constraints,
        explanations=with_costs(explanations, meter.cost), cost=meter.cost,
    )  # fmt: skip


def _reached(space: TableSpace, state: RowSearch, labels: np.ndarray) -> np.ndarray:
    classes = [plain_label(c) for c in space.blackbox.classes_]
    if state.target is not None:
        return labels == classes.index(state.target)
    return labels != classes.index(state.original.prediction)


async def _walk(space: TableSpace, state: RowSearch, reference_labels: np.ndarray) -> None:
    x, reference = state.row, space.reference
    others = np.flatnonzero(_reached(space, state, reference_labels))
    if not len(others):
        state.stopped_by = "no reference row is in another class" if state.target is None else "no reference row is in the target class"
        return
    scale = space.schema.scale(reference)
    distances = np.abs(space.schema.changes(reference[others], x, scale)).sum(axis=1)
    starts = reference[others[np.argsort(distances, kind="stable")[:PATH_STARTS]]].copy()
    fixed = [j for j in range(len(x)) if not space.mutable(j)]
    starts[:, fixed] = x[fixed]
    path = x + PATH_STEPS[None, :, None] * (starts[:, None, :] - x)
    for j, column in enumerate(space.schema.columns):
        if column.discrete:
            path[:, :, j] = np.where(PATH_STEPS[None, :] >= 0.5, starts[:, None, j], x[j])
        elif column.kind == "integer" or space.constraints[column.name].integer:
            path[:, :, j] = np.round(path[:, :, j])
    walked = await space.blackbox.apredict_proba(path.reshape(-1, len(x)))
    state.queries += len(walked)
    flipped = _reached(space, state, walked.argmax(axis=1)).reshape(len(starts), len(PATH_STEPS))
    for i in np.flatnonzero(flipped.any(axis=1)):
        candidate = path[i, int(np.argmax(flipped[i]))]
        candidate, p = await _sparsify(space, state, candidate)
        edit = {j: float(candidate[j]) for j in range(len(x)) if not _same(candidate[j], x[j])}
        state.found.append((edit, read_verdict(space.blackbox, p, state.original.prediction, state.target), 1))
    state.steps = 1


async def _sparsify(space: TableSpace, state: RowSearch, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put columns back to the row's values, one batch a round: of the single reverts that keep the flip, the one
    that undoes the largest change is taken, until none keeps it. Returns the row and the model's probabilities."""
    x, scale = state.row, space.schema.scale(space.reference)
    current = candidate.copy()
    [probabilities] = await space.blackbox.apredict_proba(current[None, :])
    state.queries += 1
    while True:
        changed = [j for j in range(len(x)) if not _same(current[j], x[j])]
        if len(changed) <= 1:
            return current, probabilities
        trials = np.repeat(current[None, :], len(changed), axis=0)
        trials[np.arange(len(changed)), changed] = x[changed]
        answered = await space.blackbox.apredict_proba(trials)
        state.queries += len(trials)
        keeps = _reached(space, state, answered.argmax(axis=1))
        if not keeps.any():
            return current, probabilities
        sizes = np.abs(space.schema.changes(current[None, :], x, scale)[0, changed])
        best = max(np.flatnonzero(keeps), key=lambda i: sizes[i])
        current, probabilities = trials[best], answered[best]
