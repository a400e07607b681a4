"""Black-box queries and wall time per explanation: LLM post-hoc (perturbation strategy) vs LIME vs KernelSHAP,
at matched faithfulness, printed as ratios against the LLM run in the same process.

The LLM is a FAKE that reads the prompt's in-context examples the way a capable LLM should (it correlates each
lettered feature's change with the probability and names the strongest) and answers at once, plus a stated
per-round latency (--round-latency, default 1.0 s, added to its wall time as one batched round's cost). Its
faithfulness therefore reflects what the neighbourhood it was shown can support, not any real model's skill.
Black box: a scaled logistic regression on the synthetic table (ground truth |coef x (x - mean)|).
LIME and KernelSHAP budgets are raised (16 … 1024 rows per instance) until their mean FA reaches the LLM's.

    python bench/posthoc_budget.py [--instances 20] [--k 3] [--samples 16] [--round-latency 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import warnings

import numpy as np
from rich.console import Console
from rich.table import Table

from xplain.blackbox import from_estimator
from xplain.data.datasets import tabular_dataset
from xplain.methods.checks import feature_agreement
from xplain.evals.posthoc import MODELS, ground_truth
from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend, request_text
from xplain.methods.baselines import explain_baseline
from xplain.methods.posthoc import PosthocOptions, explain_tabular

EXAMPLE = re.compile(r"changes: (.*) -> ([0-9.]+)")
K_PATTERN = re.compile(r"Which (\d+) features")


def reading_llm(request) -> str:
    """Correlate each letter's change with the probability across the shown examples; name the top k."""
    text = request_text(request)
    k = int(K_PATTERN.search(text).group(1))
    rows, outputs = [], []
    for changes, output in EXAMPLE.findall(text):
        rows.append(
            {
                c.split()[0]: float(c.split()[1])
                for c in changes.split(", ")
                if c != "none"
            }
        )
        outputs.append(float(output))
    letters = sorted({letter for row in rows for letter in row})
    matrix = np.array([[row.get(letter, 0.0) for letter in letters] for row in rows])
    effect = (matrix - matrix.mean(0)).T @ (np.array(outputs) - np.mean(outputs))
    top = np.argsort(-np.abs(effect))[:k]
    return json.dumps(
        {
            "features": [
                {
                    "feature": letters[i],
                    "direction": "+" if effect[i] > 0 else "-",
                    "rationale": "r",
                }
                for i in top
            ]
        }
    )


def mean_fa(model, data, rankings, instances, k) -> float:
    return float(
        np.mean(
            [
                feature_agreement(ground_truth(model, data, x), r, k)
                for x, r in zip(instances, rankings)
            ]
        )
    )


async def main(args) -> None:
    warnings.filterwarnings("ignore")
    data = tabular_dataset("synthetic")
    model = MODELS["logistic_regression"]().fit(data.X_train, data.y_train)
    instances = data.X_test[: args.instances]
    n = len(instances)

    blackbox = from_estimator(model, feature_names=data.feature_names)
    started = time.perf_counter()
    options = PosthocOptions(
        k=args.k, n_samples=args.samples, n_examples=min(16, args.samples)
    )
    results = await explain_tabular(
        LLM(FakeBackend(default=reading_llm)),
        blackbox,
        instances,
        data.X_train,
        options,
    )
    llm_seconds = (time.perf_counter() - started + args.round_latency) / n
    llm_queries = blackbox.stats().evaluated / n
    llm_fa = mean_fa(
        model,
        data,
        [[f.feature for f in r.features] for r in results],
        instances,
        args.k,
    )

    table = Table(
        "method",
        "rows/instance (budget)",
        "FA",
        "queries/expl",
        "seconds/expl",
        "queries ratio",
        "time ratio",
    )
    table.add_row(
        "llm-perturbation (fake reader)",
        str(args.samples),
        f"{llm_fa:.2f}",
        f"{llm_queries:.0f}",
        f"{llm_seconds:.3f}",
        "1.00",
        "1.00",
    )
    for method in ("lime", "kernelshap"):
        for budget in (16, 32, 64, 128, 256, 512, 1024):
            blackbox = from_estimator(model, feature_names=data.feature_names)
            started = time.perf_counter()
            found = await explain_baseline(
                method, blackbox, instances, data.X_train, n_samples=budget, k=args.k
            )
            seconds = (time.perf_counter() - started) / n
            fa = mean_fa(model, data, [r.ranking for r in found], instances, args.k)
            if fa >= llm_fa or budget == 1024:
                break
        queries = blackbox.stats().evaluated / n
        table.add_row(
            method + ("" if fa >= llm_fa else " (never matched)"),
            str(budget),
            f"{fa:.2f}",
            f"{queries:.0f}",
            f"{seconds:.3f}",
            f"{queries / llm_queries:.2f}",
            f"{seconds / llm_seconds:.2f}",
        )
    Console().print(table)
    Console().print(
        f"[dim]{n} instances, k={args.k}; LLM wall time includes {args.round_latency} s modelled latency "
        "for its one batched round; queries include each method's PGI/PGU check[/dim]"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--round-latency", type=float, default=1.0)
    asyncio.run(main(parser.parse_args()))
