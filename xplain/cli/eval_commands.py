"""`xplain eval SUITE`: run a quality suite, print its table, write its JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xplain.cli.common import app, console, run_with_llm
from xplain.evals.report import Size, available_suites
from xplain.llm import LLM


@app.command("eval")
def run_eval(
    suite: Annotated[str, typer.Argument(help="Which suite; `xplain eval list` names them.")],
    size: Annotated[str, typer.Option(help="small (minutes, CPU) or full.")] = "small",
    out: Annotated[Path | None, typer.Option(help="Where to write the JSON table.")] = None,
) -> None:
    """Run an evaluation suite against the configured LLM."""
    suites = available_suites()
    if suite == "list":
        console.print("\n".join(suites) or "(no suites yet)")
        return
    if suite not in suites:
        console.print(f"[red]error:[/red] no suite {suite!r}; available: {', '.join(suites) or 'none'}")
        raise typer.Exit(2)
    if size not in ("small", "full"):
        console.print(f"[red]error:[/red] --size must be small or full, not {size!r}")
        raise typer.Exit(2)
    chosen: Size = size  # type: ignore[assignment]

    async def work(llm: LLM) -> None:
        table = await suites[suite](llm, chosen)
        table.print(console)
        summary = {k: v for k, v in table.notes.items() if k not in ("options",)}
        console.print(" · ".join(f"{k}: {v}" for k, v in summary.items()))
        path = out or Path("artifacts") / f"eval-{suite}-{size}.json"
        table.write_json(path)
        console.print(f"[dim]wrote {path}[/dim]")

    run_with_llm(work)
