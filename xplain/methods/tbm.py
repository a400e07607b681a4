"""Text Bottleneck Models as a scikit-learn classifier: the LLM proposes concepts from labelled texts, rates every
(text, concept) pair on a 0-2 scale, and an L1 logistic regression over those ratings predicts. The weights are
the global explanation; weight x rating is each concept's local contribution.

Rounds per iteration: one batched concept-generation round (later iterations over misclassified texts), one
batched measurement round for every pair not yet in the `MeasurementCache`.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted

from xplain.llm import LLM, GenerationRequest, StructuredOutputError
from xplain.methods.base import MethodResult, measure_cost
from xplain.llm.loop_thread import run_sync
from xplain.methods.llm_estimator import LLMEstimatorMixin, LLMSpec, resolve_llm
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

RATING_MAX = 2
PROMPTS = ("tbm/generate", "tbm/measure")


class Concept(BaseModel):
    name: str = Field(max_length=40)
    question: str = Field(max_length=150)


class ConceptProposal(BaseModel):
    concepts: list[Concept] = Field(min_length=1, max_length=3)


class Rating(BaseModel):
    rating: Literal[0, 1, 2]


class MeasurementCache:
    """(question, text) -> rating, shared across fits so refits re-measure only new pairs. Pass one instance as
    the `cache` hyperparameter (like Pipeline's `memory`): `clone` keeps it by reference, so every clone made by
    GridSearchCV or cross_val_score (n_jobs=1) reads and fills the same cache."""

    def __init__(self) -> None:
        self.ratings: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self.ratings)


class ConceptContribution(BaseModel):
    concept: str
    rating: float
    weight: float
    contribution: float


class TextExplanation(BaseModel):
    label: str
    probability: float
    contributions: list[ConceptContribution] = Field(description="Largest |contribution| first.")


class TBMExplanation(MethodResult):
    method: str = "tbm"
    concepts: list[ConceptContribution] = Field(description="Global: each concept's weight (rating/contribution 0).")
    texts: list[TextExplanation]


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


class TextBottleneckClassifier(LLMEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Interpretable text classifier: LLM-measured concepts -> sparse linear layer. X is a sequence of strings."""

    _shared_params = ("llm", "cache")

    def __init__(
        self,
        llm: LLMSpec = None,
        *,
        concepts: list[tuple[str, str]] | None = None,
        n_iterations: int = 2,
        max_concepts: int = 8,
        batch_texts: int = 8,
        max_batches: int = 4,
        C: float = 1.0,
        cache: MeasurementCache | None = None,
        random_state: int = 0,
        max_tokens: int = 200,
    ) -> None:
        self.llm = llm
        self.concepts = concepts
        self.n_iterations = n_iterations
        self.max_concepts = max_concepts
        self.batch_texts = batch_texts
        self.max_batches = max_batches
        self.C = C
        self.cache = cache
        self.random_state = random_state
        self.max_tokens = max_tokens

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def fit(self, X, y) -> TextBottleneckClassifier:
        return run_sync(lambda: self.afit(X, y))

    def predict(self, X) -> np.ndarray:
        return run_sync(lambda: self.apredict(X))

    def predict_proba(self, X) -> np.ndarray:
        return run_sync(lambda: self.apredict_proba(X))

    def explain(self, X) -> TBMExplanation:
        return run_sync(lambda: self.aexplain(X))

    async def afit(self, X, y) -> TextBottleneckClassifier:
        texts = _texts(X)
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y")
        if len(y) != len(texts):
            raise ValueError(f"X has {len(texts)} texts but y has {len(y)} labels")
        check_classification_targets(y)
        if self.n_iterations < 0 or self.max_concepts < 1:
            raise ValueError("n_iterations must be >= 0 and max_concepts >= 1")
        if not self.concepts and self.n_iterations == 0:
            raise ValueError("give `concepts` or n_iterations >= 1: there is nothing to measure")
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"Classifier can't train when only one class is present: y is all {self.classes_[0]!r}")
        llm = self.llm_ = resolve_llm(self.llm)
        self.cache_ = self.cache if self.cache is not None else MeasurementCache()
        self.concepts_: list[Concept] = []
        self.measurement_failures_ = 0
        self._merge([Concept(name=n, question=q) for n, q in (self.concepts or [])])
        rng = np.random.default_rng(self.random_state)
        focus = np.arange(len(texts))
        with measure_cost() as meter:
            for _ in range(self.n_iterations):
                await self._generate(llm, texts, y, focus, rng)
                if not self.concepts_:
                    raise ValueError("the LLM proposed no usable concept; give `concepts` or use a stronger model")
                ratings = await self._measure(llm, texts)
                self._fit_layer(ratings, y_index)
                wrong = np.flatnonzero(self.layer_.predict(ratings) != y_index)
                if len(wrong) == 0:
                    break
                focus = wrong
            if self.n_iterations == 0:
                self._fit_layer(await self._measure(llm, texts), y_index)
        self.fit_cost_ = meter.cost
        return self

    async def apredict(self, X) -> np.ndarray:
        proba = await self.apredict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    async def apredict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "layer_")
        return self._proba(await self._measure(self._llm(), _texts(X)))

    async def aexplain(self, X) -> TBMExplanation:
        """Global weights and, per text, each concept's contribution to the predicted class's logit."""
        check_is_fitted(self, "layer_")
        with measure_cost() as meter:
            ratings = await self._measure(self._llm(), _texts(X))
        proba = self._proba(ratings)
        weights = self.weights_
        texts = []
        for r, p in zip(ratings, proba):
            best = int(np.argmax(p))
            w = weights[best] if len(self.classes_) > 2 else weights[0] * (1 if best == 1 else -1)
            parts = [
                ConceptContribution(concept=c.name, rating=float(v), weight=float(wi), contribution=float(v * wi))
                for c, v, wi in zip(self.concepts_, r, w)
            ]
            parts.sort(key=lambda c: -abs(c.contribution))
            texts.append(TextExplanation(label=str(self.classes_[best]), probability=float(p[best]), contributions=parts))
        return TBMExplanation(
            concepts=self.global_explanation(),
            texts=texts,
            prompt_versions=[load_prompt(p).ref for p in PROMPTS],
            cost=meter.cost,
        )

    def global_explanation(self) -> list[ConceptContribution]:
        """Each concept with its weight toward the positive class (binary) or its largest |weight| (multi-class)."""
        check_is_fitted(self, "layer_")
        w = self.weights_
        strongest = w[np.argmax(np.abs(w), axis=0), np.arange(w.shape[1])]
        return [
            ConceptContribution(concept=c.name, rating=0.0, weight=float(v), contribution=0.0)
            for c, v in zip(self.concepts_, strongest)
        ]

    # -- steps ----------------------------------------------------------------------------------------------

    async def _generate(self, llm: LLM, texts: list[str], y: np.ndarray, focus: np.ndarray, rng) -> None:
        prompt = load_prompt("tbm/generate")
        chosen = rng.permutation(focus)[: self.batch_texts * self.max_batches]
        batches = [chosen[i : i + self.batch_texts] for i in range(0, len(chosen), self.batch_texts)]
        known = ", ".join(c.name for c in self.concepts_) or "(none)"
        labels = ", ".join(str(c) for c in self.classes_)
        requests = [
            GenerationRequest.user(
                prompt.render(
                    labels=labels, known=known, texts=fence("\n".join(f"[{y[i]}] {texts[i]}" for i in batch))
                ),
                max_tokens=self.max_tokens,
            )
            for batch in batches
        ]
        replies = await llm.structured(requests, ConceptProposal, on_error="return")
        self._merge([c for r in replies if not isinstance(r, StructuredOutputError) for c in r.value.concepts])

    def _merge(self, proposed: list[Concept]) -> None:
        """Add new concepts, dropping empty ones and duplicates by normalised name or question."""
        seen = {_normal(c.name) for c in self.concepts_} | {_normal(c.question) for c in self.concepts_}
        for concept in proposed:
            keys = {_normal(concept.name), _normal(concept.question)}
            if len(self.concepts_) >= self.max_concepts or "" in keys or keys & seen:
                continue
            self.concepts_.append(concept)
            seen |= keys

    async def _measure(self, llm: LLM, texts: list[str]) -> np.ndarray:
        """Ratings in [0, 1] for every (text, concept); all uncached pairs in ONE structured round. A reply that
        never validates counts as 0 and is tallied in `measurement_failures_`."""
        prompt = load_prompt("tbm/measure")
        missing = sorted({(c.question, t) for c in self.concepts_ for t in texts} - self.cache_.ratings.keys())
        replies = await llm.structured(
            [
                GenerationRequest.user(prompt.render(question=q, text=fence(t)), max_tokens=16)
                for q, t in missing
            ],
            Rating,
            on_error="return",
        ) if missing else []
        failures = 0
        for key, reply in zip(missing, replies):
            failed = isinstance(reply, StructuredOutputError)
            failures += failed
            self.cache_.ratings[key] = 0.0 if failed else reply.value.rating / RATING_MAX
        self.measurement_failures_ = getattr(self, "measurement_failures_", 0) + failures  # predict adds too
        ratings = np.array([[self.cache_.ratings[(c.question, t)] for c in self.concepts_] for t in texts])
        return ratings.reshape(len(texts), len(self.concepts_))

    def _fit_layer(self, ratings: np.ndarray, y_index: np.ndarray) -> None:
        self.layer_ = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=self.C).fit(ratings, y_index)
        self.weights_ = self.layer_.coef_

    def _proba(self, ratings: np.ndarray) -> np.ndarray:
        return self.layer_.predict_proba(ratings)


def _texts(X) -> list[str]:
    """Accept a list/array/Series of strings (or a one-column 2-D array); reject anything else clearly."""
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or len(array) == 0:
        raise ValueError("X must be a non-empty sequence of texts (one string per sample)")
    missing = [i for i, t in enumerate(array) if t is None or (isinstance(t, float) and np.isnan(t))]
    if missing:
        raise ValueError(f"Input X contains NaN: samples {missing[:5]} are missing; fill or drop them")
    if not all(isinstance(t, str) for t in array):
        raise ValueError("every sample in X must be a string")
    return list(array)
