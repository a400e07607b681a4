"""`xplain counterfactual`: edited inputs that flip a black box, each confirmed by the model, shown as a diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from xplain import service
from xplain.batch.sources import read_table
from xplain.blackbox.errors import BlackBoxError
from xplain.cli.common import app, command_llm, console, fail, run_with_llm, usage_line
from xplain.llm import LLM
from xplain.llm import Usage
from xplain.methods.catalog import get_method
from xplain.methods.counterfactual_tabular import TabularCounterfactualExplanation, shown
from xplain.methods.counterfactual_text import TextCounterfactualExplanation, token_diff
from xplain.settings import get_settings

DIFF_STYLES = {"same": "", "removed": "bold red strike", "added": "bold green"}


def diff_text(original: str, edited: str) -> Text:
    """Removed tokens struck through in red, added ones in green."""
    shown = Text()
    for kind, piece in token_diff(original, edited):
        shown.append(piece + " ", style=DIFF_STYLES[kind])
    return shown


def _verdict(valid: bool) -> str:
    return "[green]flips (confirmed)[/green]" if valid else "[yellow]no flip[/yellow]"


def show_text(explanations: list[TextCounterfactualExplanation]) -> None:
    for explanation in explanations:
        console.print(
            f"[bold]original[/bold] ({explanation.original_prediction}, p={explanation.original_probability:.2f}): "
            f"{explanation.text}"
        )
        if explanation.latent_features:
            console.print(
                f"[dim]latent features: {', '.join(explanation.latent_features)}; "
                f"words: {', '.join(explanation.linked_words) or '-'}[/dim]"
            )
        table = Table("edit", "prediction", "p", "edit size", "round", "verified")
        for candidate in explanation.counterfactuals:
            table.add_row(
                diff_text(explanation.text, candidate.text),
                str(candidate.prediction),
                f"{candidate.probability:.2f}",
                str(candidate.edit_size),
                str(candidate.round),
                _verdict(candidate.valid),
            )
        console.print(table)
        console.print(
            f"[dim]{len(explanation.valid)} valid of {len(explanation.counterfactuals)} scored, "
            f"{len(explanation.rejected)} dropped; {explanation.rounds_used} round(s), "
            f"{explanation.blackbox_queries} black-box queries[/dim]"
        )


def show_tabular(explanations: list[TabularCounterfactualExplanation]) -> None:
    for explanation in explanations:
        console.print(
            f"[bold]original[/bold]: {explanation.original_prediction} (p={explanation.original_probability:.2f})"
        )
        table = Table("changes", "prediction", "p", "features changed", "round", "verified")
        for candidate in explanation.counterfactuals:
            changes = Text()
            for change in candidate.changes:
                changes.append(f"{change.feature}: ")
                changes.append(shown(change.old), style="red strike")
                changes.append(" -> ")
                changes.append(shown(change.new), style="bold green")
                changes.append("  ")
            table.add_row(
                changes,
                str(candidate.prediction),
                f"{candidate.probability:.2f}",
                str(candidate.edit_size),
                str(candidate.round),
                _verdict(candidate.valid),
            )
        console.print(table)
        if explanation.proposed:
            proposed = "; ".join(f"{k}: {', '.join(shown(v) for v in vs)}" for k, vs in explanation.proposed.items())
            console.print(f"[dim]the LLM proposed {proposed}[/dim]")
        for rejected in explanation.rejected:
            console.print(f"[dim]rejected (round {rejected.round}): {rejected.candidate} — {rejected.reason}[/dim]")


def _parse_json_option(value: str | None, what: str) -> object:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        console.print(f"[red]error:[/red] {what} is not valid JSON: {error}")
        raise typer.Exit(2) from error


@app.command()
def counterfactual(
    model: Annotated[
        str, typer.Argument(help="Black box: a .skops file, 'pkg.mod:attr', a URL, or llm:FILE (an LLM classifier).")
    ],
    text: Annotated[list[str] | None, typer.Option(help="A text to explain (repeat for several).")] = None,
    row: Annotated[str | None, typer.Option(help='A tabular row as JSON: {"feature": value, ...}.')] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="A CSV of rows like the training data (a table's columns, or a text model's `text` column): "
        "guided takes values / replacement words from it; a demo brings its own."),
    ] = None,
    constraints: Annotated[
        str | None,
        typer.Option(
            help='Tabular constraints as JSON: {"age": {"immutable": true}, "income": {"min": 0, '
            '"max": 9e4, "direction": "increase"}}.'
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="guided (the black box picks where, the LLM proposes what), llm or search.")
    ] = "guided",
    mode: Annotated[str, typer.Option(help="Text, strategy llm: target, concept or causal.")] = "target",
    concept: Annotated[str | None, typer.Option(help="Text, concept mode: the concept to change.")] = None,
    value: Annotated[str | None, typer.Option(help="Text, concept mode: its new value.")] = None,
    target: Annotated[str | None, typer.Option(help="Class to reach; default: any other class.")] = None,
    rounds: Annotated[int, typer.Option(help="Strategy llm: rounds at most; guided: words or columns edited.")] = 3,
    candidates: Annotated[int, typer.Option(help="Values per word / column (guided); proposals per round (llm).")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Find edited inputs that change the black box's decision; every one is re-scored by the model."""
    if (text is None) == (row is None):
        console.print("[red]error:[/red] give either --text (text model) or --row (tabular model), not both or neither")
        raise typer.Exit(2)
    settings = get_settings()
    llm = command_llm(settings)
    method = get_method("counterfactual")
    try:
        opened = service.open_spec(model, settings, kind="text" if text else "tabular", llm=llm)
        if data is not None:
            opened = service.with_reference(opened, read_table(data))
    except (BlackBoxError, ValueError, OSError) as error:
        fail(error)
    row_values = _parse_json_option(row, "--row")
    options = {
        "strategy": strategy, "mode": mode, "concept": concept, "concept_value": value, "target": target,
        "max_rounds": rounds, "candidates_per_round": candidates,
        "constraints": _parse_json_option(constraints, "--constraints") or {},
    }  # fmt: skip

    async def work(llm: LLM) -> None:
        names = opened.blackbox.feature_names or []
        if not text and (not isinstance(row_values, dict) or set(row_values) != set(names)):
            raise ValueError(f"--row must be a JSON object with exactly the features {names}")
        context = service.method_context(method, opened, llm=llm, settings=settings)
        results = await service.run_method(method, context, text or [row_values], options)
        failed = next((r for r in results if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        if as_json:
            typer.echo(json.dumps({"explanations": [r.model_dump(mode="json") for r in results]}))
            return
        (show_text if text else show_tabular)(results)
        usage = sum((r.cost.llm for r in results), Usage())
        queries = sum(r.cost.blackbox_queries for r in results)
        console.print(f"[dim]{llm.name} · {usage_line(usage)} · {queries} queries[/dim]")

    try:
        run_with_llm(work, llm)
    except (ValueError, BlackBoxError) as error:
        fail(error)
