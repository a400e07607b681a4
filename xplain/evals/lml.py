"""`xplain eval lml`: LML-DAP's held-out accuracy beside logistic regression and gradient boosting on the same
split, with the LLM calls and tokens it spent. Tables: iris, wine (3 classes), breast cancer, and a synthetic
table with categorical features (one-hot encoded, so the LLM sees `colour=red` style names)."""

from __future__ import annotations

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xplain.evals.report import EvalTable, Size, suite
from xplain.llm import LLM, track_usage
from xplain.methods.lml_dap import LMLDAPClassifier

COLUMNS = ["data", "classes", "train", "test", "lml_dap", "logistic", "gradient_boosting", "fallback_rate",
           "llm_calls", "prompt_tokens", "completion_tokens", "seconds"]
SIZES = {
    "small": {"tables": ("iris",), "train": 6, "test": 3, "chunks": 1},
    "full": {"tables": ("iris", "wine", "breast_cancer", "categorical"), "train": 60, "test": 30, "chunks": 3},
}


def categorical_table(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Colour, size and shape, one-hot; the label is 'risky' for red-and-large or any triangle (plus 5% flips)."""
    rng = np.random.default_rng(seed)
    levels = {"colour": ["red", "green", "blue"], "size": ["small", "large"], "shape": ["circle", "square", "triangle"]}
    picks = {k: rng.integers(len(v), size=n) for k, v in levels.items()}
    risky = ((picks["colour"] == 0) & (picks["size"] == 1)) | (picks["shape"] == 2)
    risky ^= rng.random(n) < 0.05
    columns = [(picks[k] == i).astype(float) for k, v in levels.items() for i in range(len(v))]
    names = [f"{k}={level}" for k, v in levels.items() for level in v]
    return np.column_stack(columns), np.where(risky, "risky", "safe"), names


def load_table(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if name == "categorical":
        return categorical_table()
    loader = {"iris": sk_datasets.load_iris, "wine": sk_datasets.load_wine, "breast_cancer": sk_datasets.load_breast_cancer}
    bunch = loader[name]()
    names = [str(n).replace(" ", "_").replace("(cm)", "cm").replace("_cm", "") for n in bunch.feature_names]
    return bunch.data, np.asarray(bunch.target_names)[bunch.target], names


@suite("lml")
async def run(llm: LLM, size: Size) -> EvalTable:
    plan = SIZES[size]
    table = EvalTable(suite="lml", columns=COLUMNS)
    for name in plan["tables"]:
        X, y, names = load_table(name)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, train_size=plan["train"], test_size=plan["test"], random_state=0, stratify=y
        )
        model = LMLDAPClassifier(llm, feature_names=names, k=4, max_summary_chunks=plan["chunks"])
        with track_usage() as meter:
            await model.afit(X_train, y_train)
            explanation = await model.aexplain(X_test)
        predicted = np.array([p.label for p in explanation.predictions])
        logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X_train, y_train)
        boosting = GradientBoostingClassifier(random_state=0).fit(X_train, y_train)
        usage = meter.usage
        table.add(
            data=name,
            classes=len(model.classes_),
            train=len(y_train),
            test=len(y_test),
            lml_dap=float(np.mean(predicted == y_test.astype(str))),
            logistic=float(logistic.score(X_test, y_test)),
            gradient_boosting=float(boosting.score(X_test, y_test)),
            fallback_rate=float(np.mean([p.fallback for p in explanation.predictions])),
            llm_calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            seconds=round(usage.seconds, 1),
        )
    return table
