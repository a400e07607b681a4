"""`xplain eval tbm`: Text Bottleneck Model held-out accuracy beside a TF-IDF logistic regression on the same
split, LLM calls and tokens, and — on a synthetic task whose label depends on two known concepts (food, animals) —
whether the learned concepts name them."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from xplain.data.datasets import TextDataset, text_dataset
from xplain.evals.report import EvalTable, Size, suite
from xplain.llm import LLM, track_usage
from xplain.methods.tbm import TextBottleneckClassifier

COLUMNS = ["data", "train", "test", "tbm", "tfidf_logistic", "concepts", "known_found", "measure_failures",
           "llm_calls", "prompt_tokens", "completion_tokens", "seconds", "note"]
SIZES = {
    "small": {"train": 8, "test": 4, "iterations": 1, "max_concepts": 2, "max_batches": 1},
    "full": {"train": 120, "test": 60, "iterations": 3, "max_concepts": 8, "max_batches": 4},
}
#: Words by which a learned concept counts as naming a known concept of the synthetic task.
KNOWN = {"food": ("food", "eat", "meal", "dish", "cook", "taste"), "animal": ("animal", "pet", "dog", "cat", "bird")}
FOOD = ["pizza", "soup", "pasta", "a sandwich", "fresh bread", "rice"]
ANIMALS = ["a dog", "a cat", "a horse", "a parrot", "a rabbit", "a cow"]
OTHER = ["the weather", "a train ride", "a new phone", "the city park", "a long meeting", "the old bridge"]


def synthetic_concepts(n: int, seed: int = 0) -> TextDataset:
    """Sentences about food, animals or neither; label 1 iff the sentence mentions food or an animal."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        topic = i % 4
        words = [FOOD, ANIMALS, OTHER, OTHER][topic]
        thing = words[rng.integers(len(words))]
        place = OTHER[rng.integers(len(OTHER))] if topic < 2 else "the morning"
        texts.append(f"Yesterday I kept thinking about {thing} near {place}.")
        labels.append(int(topic < 2))
    order = rng.permutation(n)
    texts = [texts[i] for i in order]
    y = np.array(labels)[order]
    half = n * 2 // 3
    return TextDataset("synthetic_concepts", texts[:half], texts[half:], y[:half], y[half:], ["neither", "food_or_animal"])


def found(concept_texts: list[str], known: str) -> bool:
    return any(word in text.lower() for text in concept_texts for word in KNOWN[known])


@suite("tbm")
async def run(llm: LLM, size: Size) -> EvalTable:
    plan = SIZES[size]
    n = plan["train"] + plan["test"]
    sets = [synthetic_concepts(n * 3 // 2), text_dataset(n=n * 2)]
    table = EvalTable(suite="tbm", columns=COLUMNS)
    for data in sets:
        X_train, y_train = data.texts_train[: plan["train"]], data.y_train[: plan["train"]]
        X_test, y_test = data.texts_test[: plan["test"]], data.y_test[: plan["test"]]
        model = TextBottleneckClassifier(
            llm, n_iterations=plan["iterations"], max_concepts=plan["max_concepts"], max_batches=plan["max_batches"]
        )
        note = ""
        with track_usage() as meter:
            try:
                await model.afit(X_train, y_train)
                accuracy = float(np.mean(await model.apredict(X_test) == y_test))
            except ValueError as error:  # a weak model may propose no usable concept: report it, keep the suite going
                accuracy, note = None, str(error)
        baseline = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
        concepts = getattr(model, "concepts_", [])
        concept_texts = [f"{c.name} {c.question}" for c in concepts]
        known = "-"
        if data.name == "synthetic_concepts":
            known = "+".join(k for k in KNOWN if found(concept_texts, k)) or "none"
        usage = meter.usage
        table.add(
            data=data.name,
            train=len(X_train),
            test=len(X_test),
            tbm=accuracy,
            tfidf_logistic=float(baseline.score(X_test, y_test)),
            concepts="; ".join(c.name for c in concepts),
            known_found=known,
            measure_failures=getattr(model, "measurement_failures_", 0),
            llm_calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            seconds=round(usage.seconds, 1),
            note=note,
        )
    return table
