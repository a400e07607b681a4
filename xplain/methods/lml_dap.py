"""LML-DAP as a scikit-learn classifier: the LLM summarises the training table per label, retrieves similar rows
for each new row (through conditions it proposes and we apply — never code it writes), and predicts "as an
explainable machine learning model" with a label, a confidence and reasons.

Rounds: fit = one batched summary round over all label chunks; predict = one batched query round, then one
batched prediction round (plus one batched score round for `proba="score"`).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from xplain.blackbox.errors import BlackBoxInputError
from xplain.blackbox.schema import infer_schema, numeric_schema
from xplain.llm import LLM, GenerationRequest, ScoreRequest, StructuredOutputError
from xplain.methods.base import MethodResult, measure_cost
from xplain.llm.loop_thread import run_sync
from xplain.methods.llm_estimator import LLMEstimatorMixin, LLMSpec, resolve_llm
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
ShortText = Annotated[str, Field(max_length=80)]
PROMPTS = ("lml_dap/summarize", "lml_dap/query", "lml_dap/predict", "lml_dap/score_frame")


class LabelSummary(BaseModel):
    patterns: list[ShortText] = Field(min_length=1, max_length=3, description="Feature-value patterns.")


class Condition(BaseModel):
    feature: str = Field(max_length=60)
    op: Literal["<", "<=", ">", ">=", "=="]
    value: float | bool | ShortText = Field(description="A number, or one of a categorical column's values.")


class RetrievalQuery(BaseModel):
    conditions: list[Condition] = Field(min_length=1, max_length=3)


class LabelReply(BaseModel):
    label: str = Field(max_length=40)
    confidence: float = Field(ge=0.0, le=1.0)
    reasons: list[ShortText] = Field(min_length=1, max_length=2)


class RowPrediction(BaseModel):
    """One row's prediction, why, and the training rows (indices into the fit table) it was based on."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    reasons: list[str]
    retrieved_rows: list[int]
    conditions: list[Condition] = Field(description="The LLM's retrieval conditions that were valid and applied.")
    fallback: bool = Field(
        description="True when the LLM's label was unusable (unknown, missing, or given with a confidence below "
        "chance) and the retrieved rows' majority was used."
    )


class LMLDAPExplanation(MethodResult):
    method: str = "lml_dap"
    summaries: dict[str, list[str]]
    predictions: list[RowPrediction]


class LMLDAPClassifier(LLMEstimatorMixin, ClassifierMixin, BaseEstimator):
    """LLM classifier over a table, interpretable by construction (reasons + rows used per prediction).

    X is a numeric array, or a table as users hold it (a DataFrame or records with string categories, booleans,
    missing cells): its columns' kinds come from `xplain.blackbox.schema`, prompts and reasons read the user's own
    values (`workclass = Private`), categories are compared as categories."""

    def __init__(
        self,
        llm: LLMSpec = None,
        *,
        k: int = 5,
        chunk_rows: int = 10,
        max_summary_chunks: int = 4,
        proba: Literal["confidence", "score"] = "confidence",
        feature_names: list[str] | None = None,
        max_tokens: int = 120,
    ) -> None:
        self.llm = llm
        self.k = k
        self.chunk_rows = chunk_rows
        self.max_summary_chunks = max_summary_chunks
        self.proba = proba
        self.feature_names = feature_names
        self.max_tokens = max_tokens

    # -- fit ------------------------------------------------------------------------------------------------

    def fit(self, X, y) -> LMLDAPClassifier:
        return run_sync(lambda: self.afit(X, y))

    async def afit(self, X, y) -> LMLDAPClassifier:
        if self.k < 1 or self.chunk_rows < 1 or self.max_summary_chunks < 1:
            raise ValueError("k, chunk_rows and max_summary_chunks must be at least 1")
        if self.proba not in ("confidence", "score"):
            raise ValueError(f"proba must be 'confidence' or 'score', not {self.proba!r}")
        X, y = self._fit_table(X, y)
        check_classification_targets(y)
        names = self.schema_.names
        self.classes_, self.y_index_ = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"Classifier can't train when only one class is present: y is all {self.classes_[0]!r}"
            )
        self.X_train_ = X
        self.feature_names_ = names
        self.mean_ = np.nanmean(X, axis=0) if len(X) else np.zeros(len(names))
        self.scale_ = self.schema_.scale(X)
        llm = self.llm_ = resolve_llm(self.llm)
        prompt = load_prompt("lml_dap/summarize")
        requests, owners = [], []
        for c, label in enumerate(self.classes_):
            rows = np.flatnonzero(self.y_index_ == c)
            means = self._profile(X[rows])
            for chunk in np.array_split(rows, min(self.max_summary_chunks, -(-len(rows) // self.chunk_rows))):
                text = prompt.render(label=str(label), rows=fence(self._table(chunk[: self.chunk_rows])), means=means)
                requests.append(GenerationRequest.user(text, max_tokens=self.max_tokens))
                owners.append(str(label))
        replies = await llm.structured(requests, LabelSummary, on_error="return")
        self.summaries_ = {str(label): [] for label in self.classes_}
        for owner, reply in zip(owners, replies):
            if not isinstance(reply, StructuredOutputError):
                self.summaries_[owner].extend(p for p in reply.value.patterns if p not in self.summaries_[owner])
        return self

    # -- predict --------------------------------------------------------------------------------------------

    def predict(self, X) -> np.ndarray:
        return run_sync(lambda: self.apredict(X))

    def predict_proba(self, X) -> np.ndarray:
        return run_sync(lambda: self.apredict_proba(X))

    def explain(self, X) -> LMLDAPExplanation:
        return run_sync(lambda: self.aexplain(X))

    async def apredict(self, X) -> np.ndarray:
        proba = await self.apredict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    async def apredict_proba(self, X) -> np.ndarray:
        explanation = await self.aexplain(X)
        return np.array([[p.probabilities[str(c)] for c in self.classes_] for p in explanation.predictions])

    async def aexplain(self, X) -> LMLDAPExplanation:
        """Per row: label, probabilities, reasons and the ids of the training rows used."""
        check_is_fitted(self, "summaries_")
        return await self.aexplain_encoded(self.encode_rows(X))

    async def aexplain_encoded(self, X: np.ndarray) -> LMLDAPExplanation:
        """`aexplain` of rows `encode_rows` gave (a front checks rows one by one, then explains the good ones)."""
        check_is_fitted(self, "summaries_")
        llm = self._llm()
        with measure_cost() as meter:
            summary = self._summary_text()
            query_prompt = load_prompt("lml_dap/query")
            queries = await llm.structured(
                [
                    GenerationRequest.user(
                        query_prompt.render(
                            features=", ".join(self.feature_names_), summary=summary, row=fence(self._row_text(x))
                        ),
                        max_tokens=self.max_tokens,
                    )
                    for x in X
                ],
                RetrievalQuery,
                on_error="return",
            )
            retrieved, applied = [], []
            for x, query in zip(X, queries):
                conditions = [] if isinstance(query, StructuredOutputError) else self._valid(query.value.conditions)
                applied.append(conditions)
                retrieved.append(self._retrieve(x, conditions))
            predict_prompt = load_prompt("lml_dap/predict")
            labels = ", ".join(str(c) for c in self.classes_)
            replies = await llm.structured(
                [
                    GenerationRequest.user(
                        predict_prompt.render(labels=labels, summary=summary, rows=fence(self._context(x, rows))),
                        max_tokens=self.max_tokens,
                    )
                    for x, rows in zip(X, retrieved)
                ],
                LabelReply,
                on_error="return",
            )
            scored = await self._label_loglik(llm, X, retrieved) if self.proba == "score" else None
            predictions = [
                self._prediction(reply, rows, conditions, None if scored is None else scored[i])
                for i, (reply, rows, conditions) in enumerate(zip(replies, retrieved, applied))
            ]
        return LMLDAPExplanation(
            summaries=self.summaries_,
            predictions=predictions,
            prompt_versions=[load_prompt(p).ref for p in PROMPTS],
            cost=meter.cost,
        )

    # -- helpers --------------------------------------------------------------------------------------------

    def _names(self, n_features: int) -> list[str]:
        if self.feature_names is None:
            return [str(n) for n in getattr(self, "feature_names_in_", [f"x{i}" for i in range(n_features)])]
        if len(self.feature_names) != n_features:
            raise ValueError(f"feature_names has {len(self.feature_names)} names but X has {n_features} columns")
        return [str(n) for n in self.feature_names]

    def _fit_table(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """The training table as encoded rows (`xplain.blackbox.schema`), its schema learnt on the way: a table
        as users hold it (a DataFrame, records) by its columns' kinds, a numeric array as plain numbers."""
        if _is_records(X):
            X = pd.DataFrame.from_records(list(X))
        if isinstance(X, pd.DataFrame):
            X, y = validate_data(self, X, y, skip_check_array=True)  # the column names, as scikit-learn keeps them
            y = np.asarray(y)
            if y.ndim != 1 or len(y) != len(X):
                raise ValueError(f"y must hold one label per row of X ({len(X)}), got shape {y.shape}")
            X = X.set_axis(self._names(X.shape[1]), axis=1)  # feature_names may rename the columns
            self.schema_ = infer_schema(reference=X, feature_names=list(X.columns))
            return self._encoded(X), y
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.schema_ = numeric_schema(self._names(X.shape[1]))
        return X, y

    def encode_rows(self, X: Any) -> np.ndarray:
        """Rows to predict (an array, a DataFrame, records keyed by column, lists of values) as encoded rows; a
        ValueError says which value of which column does not fit."""
        check_is_fitted(self, "summaries_")
        if _is_records(X):  # the schema checks the keys, in any order
            return self._encoded(list(X))
        if self.schema_.all_numeric and not isinstance(X, pd.DataFrame):
            return validate_data(self, X, dtype=np.float64, reset=False)
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=False, skip_check_array=True)  # names and width as at fit
            X = X.set_axis(self.schema_.names, axis=1)
        return self._encoded(X)

    def _encoded(self, X: Any) -> np.ndarray:
        try:
            return self.schema_.encode(X)
        except BlackBoxInputError as error:
            raise ValueError(str(error)) from None

    def _row_text(self, x: np.ndarray) -> str:
        """`workclass=Private, age=39`: the user's own values, never codes."""
        return ", ".join(f"{column.name}={column.show(v)}" for column, v in zip(self.schema_.columns, x))

    def _profile(self, rows: np.ndarray) -> str:
        """A label's rows in a line: each number's mean, each category's or boolean's most common value."""
        parts = []
        for j, column in enumerate(self.schema_.columns):
            present = rows[~np.isnan(rows[:, j]), j]
            if not len(present):
                parts.append(f"{column.name} missing")
            elif column.discrete:
                codes, counts = np.unique(present, return_counts=True)
                parts.append(f"{column.name} mostly {column.show(codes[np.argmax(counts)])}")
            else:
                parts.append(f"{column.name} mean {present.mean():.3g}")
        return ", ".join(parts)

    def _table(self, rows: np.ndarray) -> str:
        return "\n".join(self._row_text(self.X_train_[i]) for i in rows)

    def _summary_text(self) -> str:
        return "\n".join(f"{label}: {'; '.join(p) or '(no pattern)'}" for label, p in self.summaries_.items())

    def _context(self, x: np.ndarray, rows: list[int]) -> str:
        lines = [f"row {i}: {self._row_text(self.X_train_[i])} -> label {self.classes_[self.y_index_[i]]}" for i in rows]
        return "\n".join([*lines, f"new row: {self._row_text(x)}"])

    def _valid(self, conditions: list[Condition]) -> list[Condition]:
        """Keep conditions that name a real feature with a value it can hold; a category only by equality (its
        order means nothing), an ordinal along its order; the operator is already one of ours by schema."""
        return [c for c in conditions if self._threshold(c) is not None]

    def _threshold(self, condition: Condition) -> float | None:
        """The condition's value as the column's encoded float, or None when it cannot apply to the column."""
        if condition.feature not in self.feature_names_:
            return None
        column = self.schema_.column(condition.feature)
        if column.kind in ("categorical", "boolean") and condition.op != "==":
            return None
        if not column.discrete and isinstance(condition.value, bool):
            return None
        try:
            value = column.encode(condition.value)
        except BlackBoxInputError:
            return None
        return value if np.isfinite(value) else None

    def _retrieve(self, x: np.ndarray, conditions: list[Condition]) -> list[int]:
        """The k nearest training rows (standardised distance; a differing category counts 1) among those meeting
        all conditions; rows beyond the filter fill up when fewer than k meet them."""
        distance = np.linalg.norm(self.schema_.changes(self.X_train_, x, self.scale_), axis=1)
        mask = np.ones(len(self.X_train_), dtype=bool)
        for c in conditions:
            mask &= OPERATORS[c.op](self.X_train_[:, self.feature_names_.index(c.feature)], self._threshold(c))
        order = np.lexsort((distance, ~mask))
        return [int(i) for i in order[: self.k]]

    async def _label_loglik(self, llm: LLM, X: np.ndarray, retrieved: list[list[int]]) -> list[np.ndarray]:
        frame = load_prompt("lml_dap/score_frame")
        scores = await llm.score(
            [
                ScoreRequest(
                    prompt=frame.render(rows=self._context(x, rows), row=self._row_text(x)),
                    continuations=[f" {c}" for c in self.classes_],
                )
                for x, rows in zip(X, retrieved)
            ]
        )
        out = []
        for s in scores:
            logp = np.asarray(s.logprobs)
            p = np.exp(logp - logp.max())
            out.append(p / p.sum())
        return out

    def _prediction(self, reply, rows: list[int], conditions: list[Condition], scored: np.ndarray | None) -> RowPrediction:
        names = [str(c) for c in self.classes_]
        votes = np.bincount(self.y_index_[rows], minlength=len(names)) / len(rows)
        usable = (
            not isinstance(reply, StructuredOutputError)
            and reply.value.label.strip() in names
            # below chance the reply contradicts itself ("Yes, confidence 0.3"): the retrieved rows decide
            and reply.value.confidence > 1.0 / len(names)
        )
        if scored is not None:
            probs = scored
        elif usable:
            probs = confidence_probabilities(names.index(reply.value.label.strip()), reply.value.confidence, len(names))
        else:
            probs = votes
        best = int(np.argmax(probs))
        return RowPrediction(
            label=names[best],
            confidence=float(probs[best]),
            probabilities={n: float(p) for n, p in zip(names, probs)},
            # reasons stay with the label they argue for: none when the label came from elsewhere
            reasons=reply.value.reasons if usable and names[best] == reply.value.label.strip() else [],
            retrieved_rows=rows,
            conditions=conditions,
            fallback=not usable,
        )


def _is_records(X: Any) -> bool:
    return isinstance(X, list | tuple) and len(X) > 0 and all(isinstance(row, Mapping) for row in X)


def confidence_probabilities(named: int, confidence: float, n_classes: int) -> np.ndarray:
    """The LLM's confidence as the probability of the label it named, the rest shared evenly by the others."""
    probs = np.full(n_classes, (1.0 - confidence) / max(n_classes - 1, 1))
    probs[named] = confidence if n_classes > 1 else 1.0
    return probs
