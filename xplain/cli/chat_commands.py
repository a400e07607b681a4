"""`xplain chat`: question a model in the terminal — tool calls, feature-effect bars and what-if edits shown as they
happen, the answer with the tool calls it rests on, and numbers that no tool returned flagged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from xplain.agent import AnswerEvent, ConversationStore, ExplainerAgent, ToolCallEvent, ToolResultEvent
from xplain.agent.loop import AgentAnswer
from xplain.blackbox import BlackBoxError, load_blackbox
from xplain.cli.common import app, console, run_with_llm, usage_line
from xplain.llm import LLM
from xplain.settings import get_settings
from xplain.tools import DEMOS, ProbeContext, demo_context

EXIT_WORDS = {"exit", "quit", ":q"}


@app.command()
def chat(
    model: Annotated[
        str | None, typer.Option(help="Model spec: a .skops file, import path, URL... (see load_blackbox).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="CSV of rows to ask about (tabular: one column per feature; text: a 'text' column)."),
    ] = None,
    label_column: Annotated[str | None, typer.Option(help="Column of --data holding the true labels.")] = None,
    demo: Annotated[
        str | None, typer.Option(help=f"A built-in demo model instead of --model: {', '.join(DEMOS)}.")
    ] = None,
    session: Annotated[str, typer.Option(help="Conversation id; reuse it to continue a conversation.")] = "terminal",
    db: Annotated[
        Path | None, typer.Option(help="SQLite file that keeps conversations (memory only when unset).")
    ] = None,
    max_steps: Annotated[int, typer.Option(min=1, help="Most model calls per question.")] = 6,
) -> None:
    """Chat with an agent that questions a black-box model through tools. Type 'exit' (or Ctrl-D) to leave."""
    try:
        context = _context(model, data, label_column, demo)
    except (ValueError, BlackBoxError, OSError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from error

    async def work(llm: LLM) -> None:
        store = ConversationStore(db) if db else None
        agent = ExplainerAgent(llm, context, store=store, max_steps=max_steps)
        console.print(
            f"[bold]xplain chat[/bold] · {escape(context.blackbox.name)} · {len(context.rows)} rows · {llm.name}"
        )
        console.print("[dim]Ask about the model; 'exit' leaves.[/dim]")
        try:
            while (question := _read_question()) is not None:
                try:
                    async for event in agent.stream(session, question):
                        _show(event)
                except (ValueError, BlackBoxError) as error:
                    console.print(f"[red]error:[/red] {escape(str(error))}")
        finally:
            if store is not None:
                store.close()

    run_with_llm(work)


def _read_question() -> str | None:
    while True:
        try:
            line = console.input("[bold cyan]you>[/bold cyan] ")
        except EOFError:
            return None
        if line.strip().lower() in EXIT_WORDS:
            return None
        if line.strip():
            return line.strip()


def _context(model: str | None, data: Path | None, label_column: str | None, demo: str | None) -> ProbeContext:
    if (model is None) == (demo is None):
        raise ValueError("give exactly one of --model SPEC or --demo NAME")
    if demo is not None:
        return demo_context(demo)
    if data is None:
        raise ValueError("--model needs --data: a CSV of the rows to ask about")
    import pandas as pd

    table = pd.read_csv(data)
    labels = None
    if label_column is not None:
        if label_column not in table.columns:
            raise ValueError(f"--label-column {label_column!r} is not a column of {data}")
        labels = table.pop(label_column).to_numpy()
    settings = get_settings()
    if "text" in table.columns and len(table.columns) == 1:
        blackbox = load_blackbox(model, kind="text", trusted_dir=settings.trusted_model_dir)
        return ProbeContext(blackbox, table["text"].astype(str).tolist(), labels)
    blackbox = load_blackbox(
        model, kind="tabular", trusted_dir=settings.trusted_model_dir, feature_names=list(table.columns)
    )
    return ProbeContext(blackbox, table.to_numpy(dtype=np.float64), labels)


def _show(event: ToolCallEvent | ToolResultEvent | AnswerEvent) -> None:
    if isinstance(event, ToolCallEvent):
        arguments = ", ".join(f"{k}={json.dumps(v)}" for k, v in event.arguments.items())
        console.print(f"[dim]→ {escape(event.name)}({escape(arguments)})[/dim]")
    elif isinstance(event, ToolResultEvent):
        _show_tool_result(event.output)
    else:
        _show_answer(event.answer)


def _show_tool_result(output: str) -> None:
    try:
        data: Any = json.loads(output)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        console.print(f"[dim]  {escape(output[:300])}[/dim]")
        return
    if "error" in data:
        console.print(f"[yellow]  tool error: {escape(str(data['error']))}[/yellow]")
    elif isinstance(data.get("plot"), dict) and data["plot"].get("kind") == "bar":
        console.print(_bar_chart(data["plot"]))
    elif "before" in data and "after" in data:
        console.print(_what_if_table(data))
    else:
        console.print(f"[dim]  {escape(output[:300])}{'…' if len(output) > 300 else ''}[/dim]")


def _bar_chart(plot: dict[str, Any], width: int = 30) -> Table:
    values = [float(v) for v in plot["values"]]
    limit = max((abs(v) for v in values), default=0.0) or 1.0
    table = Table(title=plot.get("title"), show_header=False, box=None, padding=(0, 1))
    for label, value in zip(plot["labels"], values):
        bar = "█" * max(1, round(abs(value) / limit * width))
        colour = "blue" if value >= 0 else "red"
        table.add_row(escape(str(label)), f"[{colour}]{bar}[/{colour}]", f"{value:+g}")
    return table


def _what_if_table(data: dict[str, Any]) -> Table:
    table = Table("", "before", "after", title="what if")
    for feature, change in (data.get("changes") or {}).items():
        table.add_row(escape(feature), str(change["from"]), str(change["to"]))
    if "edited_text" in data:
        table.add_row("text", escape(str(data.get("text", f"row {data.get('row')}"))), escape(data["edited_text"]))
    table.add_row("prediction", escape(data["before"]["predicted"]), escape(data["after"]["predicted"]))
    return table


def _show_answer(answer: AgentAnswer) -> None:
    text = escape(answer.text)
    for number in answer.ungrounded_numbers:
        text = re.sub(rf"(?<![\w.]){re.escape(number)}(?!\w)", f"[black on yellow]{number}[/black on yellow]", text)
    calls = ", ".join(c.name for c in answer.tool_calls) or "no tool call"
    subtitle = f"based on: {calls}"
    console.print(Panel(text, title="xplain", subtitle=escape(subtitle), title_align="left", subtitle_align="left"))
    if answer.ungrounded_numbers:
        console.print(f"[yellow]not backed by any tool result: {', '.join(answer.ungrounded_numbers)}[/yellow]")
    if answer.stopped == "step_limit":
        console.print("[yellow]stopped at the step limit (--max-steps)[/yellow]")
    elif answer.stopped == "repeated_call":
        console.print("[yellow]stopped: the model asked for a tool call it had already made[/yellow]")
    console.print(f"[dim]{usage_line(answer.usage)}[/dim]")
