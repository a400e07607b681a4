"""`xplain explain`: the LLM's top features for one row, a CSV of rows or a text, each checked by PGI / PGU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, get_args

import numpy as np
import typer
from rich.table import Table

from xplain import service
from xplain.batch.sources import read_table
from xplain.blackbox import BlackBox
from xplain.blackbox.errors import BlackBoxError
from xplain.cli.common import app, command_llm, console, fail, run_with_llm, usage_line
from xplain.data.demo import demo_reference
from xplain.llm import LLM
from xplain.methods.posthoc import (
    STRATEGIES,
    TEXT_STRATEGIES,
    PosthocExplanation,
    PosthocOptions,
    Proposal,
    explain_tabular,
    explain_text,
)
from xplain.settings import get_settings
from xplain.validation import reference_rows


def read_rows(blackbox: BlackBox, row: str | None, rows_csv: Path | None) -> np.ndarray:
    """One JSON row or a CSV / Parquet file with a column per feature (strings, booleans, empty cells as the
    model's columns take them), as encoded rows in the model's column order."""
    if (row is None) == (rows_csv is None):
        raise ValueError(
            "give either --row (one JSON row) or --rows (a CSV file), not both or neither"
        )
    if row is not None:
        try:
            values = json.loads(row)
        except json.JSONDecodeError as error:
            raise ValueError(f"--row is not valid JSON: {error}") from error
        names = blackbox.feature_names or []
        if not isinstance(values, dict) or set(values) != set(names):
            raise ValueError(
                f"--row must be a JSON object with exactly the features {names}"
            )
        return reference_rows(blackbox, [values])
    frame = read_table(rows_csv)
    missing = [n for n in blackbox.feature_names or [] if n not in frame.columns]
    if missing:
        raise ValueError(f"{rows_csv} lacks the feature column(s) {missing}")
    return reference_rows(blackbox, frame)


def show(results: list[PosthocExplanation]) -> None:
    for number, result in enumerate(results, 1):
        table = Table(
            "rank",
            "feature",
            "direction",
            "from",
            "rationale",
            title=f"{'text' if isinstance(result.instance, str) else 'row'} {number}: "
            f"predicted {result.predicted_label}",
        )
        for rank, feature in enumerate(result.features, 1):
            table.add_row(
                str(rank), feature.feature, feature.direction, feature.source, feature.rationale
            )
        console.print(table)
        if result.error:
            console.print(f"[yellow]{result.error}[/yellow]")
        if result.pgi is not None and result.pgu is not None:
            change = "removed" if isinstance(result.instance, str) else "perturbed"
            console.print(
                f"checked by the model: PGI {result.pgi:.3f} (named features {change}), "
                f"PGU {result.pgu:.3f} (the others {change}) — a faithful ranking has PGI above PGU"
                + (f": {result.faithfulness.verdict} (PGI - PGU in [{result.faithfulness.interval[0]:+.3f}, "
                   f"{result.faithfulness.interval[1]:+.3f}], {result.faithfulness.n} draws)"
                   if result.faithfulness is not None else "")
            )  # fmt: skip
        if result.repair and not result.repair.startswith("none"):
            console.print(f"[dim]{result.repair}[/dim]")
        for rank, feature in enumerate(
            result.features, 1
        ):  # a text bar chart: longer = ranked higher
            bar = "█" * (len(result.features) - rank + 1) * 4
            console.print(f"  {feature.feature:>24} {feature.direction} {bar}")


def save_plot(results: list[PosthocExplanation], path: Path) -> None:
    """One panel per row: each explanation's own chart (xplain.display), its check in the panel's title."""
    from matplotlib.figure import Figure

    from xplain.display import check, plot

    figure = Figure(figsize=(6.4, 1 + 1.8 * len(results)), layout="constrained")
    for axis, result in zip(figure.subplots(len(results), 1, squeeze=False)[:, 0], results):
        plot(result, axis)
        verdict = check(result)
        title = f"{axis.get_title(loc='left')} · {verdict.name} {verdict.value} ({verdict.status})"
        axis.set_title(title, fontsize=9, loc="left")
    figure.savefig(path)


@app.command()
def explain(
    model: Annotated[
        str,
        typer.Argument(
            help="Black box: demo:NAME, a .skops file, 'pkg.mod:attr', a URL, or llm:FILE (an LLM classifier)."
        ),
    ],
    row: Annotated[
        str | None, typer.Option(help='One row as JSON: {"feature": value, ...}.')
    ] = None,
    rows: Annotated[
        Path | None, typer.Option(help="A CSV file, one row to explain per line.")
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            help="A text to explain, for text classifiers (e.g. demo:reviews)."
        ),
    ] = None,
    background: Annotated[
        Path | None,
        typer.Option(
            help="CSV of typical rows that sets the perturbation scale (demo models: built in)."
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option(help=f"One of {', '.join(STRATEGIES)}.")
    ] = "perturbation",
    proposal: Annotated[
        str,
        typer.Option(
            help="How the LLM proposes: generate (JSON under --strategy), choose (texts: it scores candidate words "
            "by likelihood) or auto (choose on the embedded model, for texts; else generate)."
        ),
    ] = "auto",
    k: Annotated[int, typer.Option(help="How many top features.")] = 4,
    samples: Annotated[int, typer.Option(help="Neighbourhood rows per instance.")] = 24,
    plot: Annotated[
        Path | None, typer.Option(help="Save a bar chart PNG here.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON.")
    ] = False,
) -> None:
    """Ask the LLM which features drive the model's prediction; the model itself checks the answer (PGI / PGU)."""
    settings = get_settings()
    llm = command_llm(settings)
    try:
        allowed = TEXT_STRATEGIES if text is not None else STRATEGIES
        if strategy not in allowed:
            raise ValueError(
                f"--strategy must be one of {', '.join(allowed)}, got {strategy!r}"
            )
        if text is not None and (row, rows, background) != (None, None, None):
            raise ValueError(
                "--text explains a text; it takes no --row, --rows or --background"
            )
        blackbox = service.open_spec(model, settings, kind="text" if text is not None else "tabular", llm=llm).blackbox
        if proposal not in get_args(Proposal):
            raise ValueError(f"--proposal must be one of {', '.join(get_args(Proposal))}, got {proposal!r}")
        options = PosthocOptions(strategy=strategy, k=k, n_samples=samples, proposal=proposal)
        if text is not None:
            if blackbox.kind != "text":
                raise ValueError(
                    f"--text needs a text classifier; {model} is {blackbox.kind}"
                )
            if not text.strip():
                raise ValueError("--text is empty")
        elif blackbox.kind != "tabular":
            raise ValueError(
                f"{model} is a {blackbox.kind} model; give the text with --text"
            )
        instances = reference = None
        if text is None:
            if background is not None:  # the background also tells the columns' kinds and categories
                blackbox.infer_schema(read_table(background))
                reference = read_rows(blackbox, None, background)
            instances = read_rows(blackbox, row, rows)
            if reference is None and model.startswith("demo:"):
                reference = np.asarray(demo_reference(model.removeprefix("demo:")).rows, dtype=float)
            elif reference is None:
                reference = instances
    except (BlackBoxError, ValueError, OSError) as error:
        fail(error)

    async def work(llm: LLM) -> None:
        if text is not None:
            results = await explain_text(llm, blackbox, [text], options)
        else:
            results = await explain_tabular(
                llm, blackbox, instances, reference, options
            )
        if as_json:
            typer.echo(json.dumps([r.model_dump(mode="json") for r in results]))
        else:
            show(results)
            console.print(
                f"[dim]{llm.name} · {usage_line(results[0].cost.llm)} · "
                f"{sum(r.cost.blackbox_queries for r in results)} black-box queries[/dim]"
            )
        if plot is not None:
            save_plot(results, plot)
            console.print(f"wrote {plot}")

    try:
        run_with_llm(work, llm)
    except (ValueError, BlackBoxError) as error:
        fail(error)
