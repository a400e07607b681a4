"""`xplain counterfactual`: edited inputs that flip a black box, each confirmed by the model, shown as a diff."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from xplain import service
from xplain.blackbox.errors import BlackBoxError
from xplain.cli.common import app, command_llm, console, fail, run_with_llm, usage_line
from xplain.llm import LLM
from xplain.methods.counterfactual_tabular import TabularCounterfactualResult, shown, tabular_counterfactuals
from xplain.methods.counterfactual_text import TextCounterfactualResult, text_counterfactuals, token_diff
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


def show_text(result: TextCounterfactualResult) -> None:
    for explanation in result.explanations:
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


def show_tabular(result: TabularCounterfactualResult) -> None:
    for explanation in result.explanations:
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
    constraints: Annotated[
        str | None,
        typer.Option(
            help='Tabular constraints as JSON: {"age": {"immutable": true}, "income": {"min": 0, '
            '"max": 9e4, "direction": "increase"}}.'
        ),
    ] = None,
    mode: Annotated[str, typer.Option(help="Text: target, concept or causal.")] = "target",
    concept: Annotated[str | None, typer.Option(help="Text, concept mode: the concept to change.")] = None,
    value: Annotated[str | None, typer.Option(help="Text, concept mode: its new value.")] = None,
    target: Annotated[str | None, typer.Option(help="Class to reach; default: any other class.")] = None,
    rounds: Annotated[int, typer.Option(help="Verification rounds at most.")] = 3,
    candidates: Annotated[int, typer.Option(help="Candidates the LLM proposes per input and round.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Find edited inputs that change the black box's decision; every one is re-scored by the model."""
    if (text is None) == (row is None):
        console.print("[red]error:[/red] give either --text (text model) or --row (tabular model), not both or neither")
        raise typer.Exit(2)
    settings = get_settings()
    llm = command_llm(settings)
    try:
        blackbox = service.open_spec(model, settings, kind="text" if text else "tabular", llm=llm).blackbox
    except (BlackBoxError, ValueError) as error:
        fail(error)
    row_values = _parse_json_option(row, "--row")
    constraint_values = _parse_json_option(constraints, "--constraints")

    async def work(llm: LLM) -> None:
        if text:
            result = await text_counterfactuals(
                llm,
                blackbox,
                text,
                mode=mode,
                concept=concept,
                concept_value=value,
                target=target,
                candidates_per_round=candidates,
                max_rounds=rounds,
            )
        else:
            names = blackbox.feature_names or []
            if not isinstance(row_values, dict) or set(row_values) != set(names):
                raise ValueError(f"--row must be a JSON object with exactly the features {names}")
            result = await tabular_counterfactuals(
                llm,
                blackbox,
                [[float(row_values[n]) for n in names]],
                constraints=constraint_values,
                target=target,
                candidates_per_round=candidates,
                max_rounds=rounds,
            )
        if as_json:
            typer.echo(result.model_dump_json())
            return
        (show_text if text else show_tabular)(result)
        console.print(f"[dim]{llm.name} · {usage_line(result.cost.llm)} · {result.cost.blackbox_queries} queries[/dim]")

    try:
        run_with_llm(work, llm)
    except (ValueError, BlackBoxError) as error:
        fail(error)
