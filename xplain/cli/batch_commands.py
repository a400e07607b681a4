"""`xplain batch`: run a method over a data file, resumable from its own output, with an HTML report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from xplain.batch.report import write_report
from xplain.batch.runner import RowOutcome, job_shape, run_rows
from xplain.batch.sources import JsonlSink, read_rows
from xplain.cli.common import app, console, fail, method_context, parse_json_option, run_with_llm
from xplain.data.demo import DEMO_MODELS
from xplain.errors import XplainError
from xplain.llm import LLM
from xplain.methods.catalog import catalog, get_method, units_for
from xplain.settings import get_settings


@app.command()
def batch(
    data: Annotated[Path, typer.Argument(help="CSV, JSONL, JSON or Parquet file of rows.", exists=True, dir_okay=False)],
    method: Annotated[str, typer.Option(help=f"One of: {', '.join(catalog())} (`xplain methods` describes them).")],
    out: Annotated[Path, typer.Option(help="Results as JSON lines; rerun with the same file to resume.")],
    model: Annotated[
        str | None,
        typer.Option(help=f"demo:NAME ({', '.join(DEMO_MODELS)}), a .skops file, pkg.mod:obj, a URL, or llm:FILE."),
    ] = None,
    column: Annotated[str | None, typer.Option(help="Use this column as the row (e.g. text).")] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="CSV or Parquet rows like the training data: the background, and the table's columns."),
    ] = None,
    options: Annotated[str, typer.Option(help="Method options as JSON.")] = "{}",
    kind: Annotated[
        str | None, typer.Option(help="tabular, text or module, for a model whose kind cannot be inferred.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Chunks in flight (XPLAIN_JOB_CONCURRENCY); unset: sized to the method.")
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(help="Rows per method call (XPLAIN_JOB_CHUNK_SIZE); unset: an LLM method gets as many as the "
                     "LLM backend works on at once."),
    ] = None,
    engine: Annotated[str, typer.Option(help="local (asyncio, this process) or ray (Ray Data workers).")] = "local",
    workers: Annotated[int, typer.Option(help="Ray workers (with --engine ray).")] = 2,
) -> None:
    """Run METHOD on every row of DATA against MODEL (a set method such as iprompt or sasc takes the whole file as
    its input); finished rows are saved as they finish."""
    settings = get_settings()
    try:
        chosen = get_method(method)
        method_options = chosen.parse_options(parse_json_option(options, "--options"))
        units = units_for(chosen, read_rows(data, column=column))
        if engine not in ("local", "ray"):
            raise ValueError(f"--engine is local or ray, not {engine!r}")
        if not units:
            raise ValueError(f"{data.name} has no rows")
        context = method_context(chosen, model, settings, kind, reference)
    except (XplainError, ValueError, OSError) as error:
        fail(error)

    sink = JsonlSink(out)
    rows = units
    todo = [(i, row) for i, row in enumerate(rows) if i not in sink.finished]
    if len(todo) < len(rows):
        console.print(f"resuming: {len(rows) - len(todo)} of {len(rows)} rows already in {out}")

    async def work(llm: LLM) -> None:
        columns = [TextColumn(f"{method}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed")]
        with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task(method, total=len(rows), completed=len(rows) - len(todo), failed=0)
            failed, done, started = 0, len(rows) - len(todo), time.perf_counter()

            def advance(outcomes: list[RowOutcome]) -> None:
                nonlocal failed, done
                failed += sum(not o.ok for o in outcomes)
                done += len(outcomes)
                bar.update(task, advance=len(outcomes), failed=failed)
                if not console.is_terminal:  # a log or a pipe gets a line per chunk instead of a bar
                    rate = (done - (len(rows) - len(todo))) / max(time.perf_counter() - started, 1e-9)
                    eta = (len(rows) - done) / rate if rate > 0 else float("nan")
                    console.print(f"{method}: {done}/{len(rows)} done, {failed} failed, {rate:.2f}/s, eta {eta:.0f} s")

            await run_rows(
                chosen,
                context,
                todo,
                method_options,
                sink=sink,
                concurrency=concurrency or settings.job_concurrency,  # unset: sized to the method and the LLM
                chunk_size=chunk_size or settings.job_chunk_size,
                on_chunk=advance,
            )

    def work_on_ray() -> None:
        import asyncio

        from xplain.batch.ray_engine import run_rows_on_ray

        def record(outcomes: list[RowOutcome]) -> None:
            asyncio.run(sink.record(outcomes))

        with console.status(f"{method} on Ray ({workers} workers)"):
            run_rows_on_ray(
                method, model, todo, method_options,
                settings=settings, record=record, workers=workers, batch_size=job_shape(
                    chosen, context.llm, None, chunk_size or settings.job_chunk_size, context.blackbox
                )[1],
                reference=reference,
            )  # fmt: skip

    started = time.perf_counter()
    try:
        if todo and engine == "ray":
            work_on_ray()
        elif todo:
            run_with_llm(work, context.llm)  # the embedded model loads on first use, so `predict` never loads it
    finally:
        sink.close()
    outcomes = sink.outcomes()
    failures = sum(not o.ok for o in outcomes)
    console.print(f"{len(outcomes) - failures} ok, {failures} failed -> {out}")
    if report is not None:
        title = f"{method} on {data.name}" + (f" with {model}" if model else "")
        write_report(report, title, outcomes, time.perf_counter() - started, rows)
        console.print(f"report -> {report}")
    if failures:
        raise typer.Exit(1)

