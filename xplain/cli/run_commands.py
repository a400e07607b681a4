"""`xplain methods` lists the catalog; `xplain run NAME` runs any catalog method on a few inputs and prints its
results as JSON — the CLI front generated from the catalog, beside the hand-written commands for the common cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from xplain import service
from xplain.batch.runner import outcomes_of
from xplain.batch.sources import read_rows
from xplain.cli.common import app, console, fail, method_context, parse_json_option, run_with_llm
from xplain.errors import XplainError
from xplain.llm import LLM
from xplain.methods.catalog import catalog, get_method
from xplain.settings import get_settings


@app.command("methods")
def list_methods(
    as_json: Annotated[bool, typer.Option("--json", help="The catalog as JSON (what GET /methods answers).")] = False,
    markdown: Annotated[bool, typer.Option(help="The README's capability table.")] = False,
) -> None:
    """What xplain can do: every method of the catalog, with its inputs and whether it uses the LLM."""
    if as_json:
        print(json.dumps([m.describe() for m in catalog().values()], indent=2))
    elif markdown:
        print(capability_table())
    else:
        table = Table("method", "inputs", "LLM", "description")
        for m in catalog().values():
            table.add_row(m.name, ", ".join(m.inputs), "yes" if m.uses_llm else "no", m.description)
        console.print(table)


def capability_table() -> str:
    """The README's table of capabilities, one row per catalog method."""
    lines = ["| method | inputs | unit | LLM | what it does |", "|---|---|---|---|---|"]
    for m in catalog().values():
        inputs = ", ".join(m.inputs)
        lines.append(f"| `{m.name}` | {inputs} | {m.unit} | {'yes' if m.uses_llm else 'no'} | {m.description} |")
    return "\n".join(lines)


@app.command("run")
def run_method(
    name: Annotated[str, typer.Argument(help="A method of the catalog (`xplain methods` lists them).")],
    model: Annotated[
        str | None, typer.Option(help="demo:NAME, a .skops file, pkg.mod:obj, a URL or llm:FILE (an LLM classifier).")
    ] = None,
    input: Annotated[
        list[str] | None, typer.Option("--input", help="One input as JSON (a row, a text in quotes, an example).")
    ] = None,
    inputs: Annotated[
        Path | None, typer.Option(help="Inputs from a CSV/JSONL/JSON/Parquet file.", exists=True, dir_okay=False)
    ] = None,
    column: Annotated[str | None, typer.Option(help="With --inputs: use this column as the input.")] = None,
    options: Annotated[str, typer.Option(help="Method options as JSON.")] = "{}",
    kind: Annotated[
        str | None, typer.Option(help="tabular, text or module, for a model whose kind cannot be inferred.")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="CSV or Parquet rows like the training data: the background, and the table's columns."),
    ] = None,
) -> None:
    """Run method NAME on the inputs against MODEL and print one JSON result (or error) per line."""
    settings = get_settings()
    try:
        method = get_method(name)
        parsed = method.parse_options(parse_json_option(options, "--options"))
        items = [parse_json_option(text, "--input") for text in input or []]
        if inputs is not None:
            items += read_rows(inputs, column=column)
        if not items and method.min_inputs > 0:
            raise ValueError("give inputs: --input JSON (repeatable) or --inputs FILE")
        context = method_context(method, model, settings, kind, reference)
    except (XplainError, ValueError, OSError) as error:
        fail(error)

    async def work(llm: LLM) -> None:
        results = await service.run_method(method, context, items, parsed)
        for outcome in outcomes_of(range(len(results)), results):
            print(outcome.model_dump_json(exclude_none=True))

    run_with_llm(work, context.llm)
