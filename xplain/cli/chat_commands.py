"""`xplain chat`: question a model in the terminal — tool calls, signed effect bars with their PGI/PGU check, what-if
and counterfactual tables shown as they happen, the answer as it is written, the tool calls it rests on (failed ones
apart), and numbers that no tool returned flagged. The planner answers on the embedded model, the agent elsewhere
(`--mode`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from xplain.agent import (
    AnswerDeltaEvent,
    AnswerEvent,
    ConversationStore,
    ToolCallEvent,
    ToolResultEvent,
    make_chat,
)
from xplain.agent.loop import AgentAnswer
from xplain.batch.sources import read_table
from xplain.blackbox import BlackBoxError, load_blackbox
from xplain.cli.common import app, command_llm, console, fail, run_with_llm, usage_line
from xplain.display.charts import chat_chart
from xplain.llm import LLM
from xplain.settings import get_settings
from xplain.tools import DEMOS, ProbeContext, demo_context

EXIT_WORDS = {"exit", "quit", ":q"}


@app.command()
def chat(
    model: Annotated[
        str | None, typer.Option(help="Model spec: a .skops file, import path, URL, llm:FILE... (see load_blackbox).")
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
    max_steps: Annotated[int, typer.Option(min=1, help="Agent: most model calls per question.")] = 6,
    mode: Annotated[
        str | None,
        typer.Option(help="planner (the LLM only chooses), agent (free tool calls) or auto; default XPLAIN_CHAT_MODE."),
    ] = None,
) -> None:
    """Chat about a black-box model: questions answered through tools. Type 'exit' (or Ctrl-D) to leave."""
    if mode is not None and mode not in ("planner", "agent", "auto"):
        console.print(f"[red]error:[/red] --mode must be planner, agent or auto, not {mode!r}")
        raise typer.Exit(2)
    llm = command_llm(get_settings())
    try:
        context = _context(model, data, label_column, demo, llm)
    except (ValueError, BlackBoxError, OSError) as error:
        fail(error)

    async def work(llm: LLM) -> None:
        settings = get_settings()
        store = ConversationStore(db) if db else None
        chosen = mode or settings.chat_mode
        agent = make_chat(
            llm, context, mode=chosen, store=store, rephrase=settings.chat_rephrase, max_steps=max_steps
        )  # type: ignore[arg-type]
        kind = "planner" if type(agent).__name__ == "GroundedPlanner" else "agent"
        console.print(
            f"[bold]xplain chat[/bold] · {escape(context.blackbox.name)} · {len(context.rows)} rows · {llm.name}"
            f" · {kind}"
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

    run_with_llm(work, llm)


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


def _context(
    model: str | None, data: Path | None, label_column: str | None, demo: str | None, llm: LLM
) -> ProbeContext:
    if (model is None) == (demo is None):
        raise ValueError("give exactly one of --model SPEC or --demo NAME")
    if demo is not None:
        return demo_context(demo)
    if data is None:
        raise ValueError("--model needs --data: a CSV of the rows to ask about")
    table = read_table(data)
    labels = None
    if label_column is not None:
        if label_column not in table.columns:
            raise ValueError(f"--label-column {label_column!r} is not a column of {data}")
        labels = table.pop(label_column).to_numpy()
    settings = get_settings()
    if "text" in table.columns and len(table.columns) == 1:
        blackbox = load_blackbox(
            model,
            kind="text",
            trusted_dir=settings.trusted_model_dir,
            trusted_types=settings.trusted_skops_types,
            llm=llm,
            settings=settings,
        )
        return ProbeContext(blackbox, table["text"].astype(str).tolist(), labels)
    blackbox = load_blackbox(
        model,
        kind="tabular",
        trusted_dir=settings.trusted_model_dir,
        trusted_types=settings.trusted_skops_types,
        feature_names=list(table.columns),
        llm=llm,
        settings=settings,
    )
    blackbox.infer_schema(table)  # the columns' kinds and categories: the rows may hold words, bools, empty cells
    return ProbeContext(blackbox, blackbox.schema.encode(table), labels)


def _show(event: ToolCallEvent | ToolResultEvent | AnswerDeltaEvent | AnswerEvent) -> None:
    if isinstance(event, ToolCallEvent):
        arguments = ", ".join(f"{k}={json.dumps(v)}" for k, v in event.arguments.items())
        console.print(f"[dim]→ {escape(event.name)}({escape(arguments)})[/dim]")
    elif isinstance(event, ToolResultEvent):
        _show_tool_result(event)
    elif isinstance(event, AnswerDeltaEvent):
        console.print(escape(event.text), end="", soft_wrap=True, highlight=False)
    else:
        console.print()
        _show_answer(event.answer)


def _show_tool_result(event: ToolResultEvent) -> None:
    if event.error is not None:
        console.print(f"[yellow]  tool error: {escape(event.error)}[/yellow]")
        return
    data: Any = event.result
    if data is None:
        console.print(f"[dim]  {escape(event.output[:300])}[/dim]")
        return
    if "before" in data and "after" in data:  # a what-if reads best as its before / after table
        console.print(_what_if_table(data))
    elif (chart := chat_chart(data)) is not None:
        console.print(_bar_chart(chart))
        check = data.get("check") or {}
        if check.get("pgi") is not None and check.get("pgu") is not None:
            verdict = VERDICTS.get(check.get("verdict"), "holds up" if check["pgi"] > check["pgu"] else "doubtful")
            console.print(f"  check (top {check['top_k']}): PGI {check['pgi']} vs PGU {check['pgu']}: {verdict}")
    elif "counterfactuals" in data:
        console.print(_counterfactual_table(data))
    else:
        text = event.output
        console.print(f"[dim]  {escape(text[:300])}{'…' if len(text) > 300 else ''}[/dim]")


#: A check's verdict in the terminal: an interval that includes zero decides nothing.
VERDICTS = {"faithful": "holds up", "not faithful": "not borne out", "inconclusive": "inconclusive"}


def _counterfactual_table(data: dict[str, Any]) -> Table:
    table = Table("", "changes", "prediction", "valid", title="counterfactuals")
    original = escape(str(data.get("text", f"row {data.get('row')}")))
    table.add_row("original", original, f"{data['original_prediction']} ({data['original_probability']})", "")
    for i, candidate in enumerate(data["counterfactuals"], 1):
        changes = candidate.get("changes")  # a row's: [{feature, old, new}]; a text's counterfactual is its text
        if changes:
            shown = ", ".join(f"{c['feature']}: {c['old']} → {c['new']}" for c in changes)
        else:
            shown = str(candidate.get("text", ""))
        valid = "yes" if candidate["valid"] else "no"
        table.add_row(f"#{i}", escape(shown), f"{candidate['prediction']} ({candidate['probability']})", valid)
    return table


def _bar_chart(spec: dict[str, Any], width: int = 30) -> Table:
    """A chart spec (`xplain.display.charts`) as bars of text: its first series."""
    values = [0.0 if v is None else float(v) for v in spec["series"][0]["values"]] if spec["series"] else []
    limit = max((abs(v) for v in values), default=0.0) or 1.0
    table = Table(title=spec.get("title"), show_header=False, box=None, padding=(0, 1))
    for label, value in zip(spec["labels"], values):
        bar = "█" * max(1, round(abs(value) / limit * width))
        colour = "blue" if value >= 0 else "red"
        table.add_row(escape(str(label)), f"[{colour}]{bar}[/{colour}]", f"{value:+g}")
    return table


def _what_if_table(data: dict[str, Any]) -> Table:
    table = Table("", "before", "after", title="what if")
    for feature, change in (data.get("changes") or {}).items():
        table.add_row(escape(feature), str(change["old"]), str(change["new"]))
    if data.get("edited_text") is not None:
        table.add_row("text", escape(str(data.get("text", f"row {data.get('row')}"))), escape(data["edited_text"]))
    table.add_row("prediction", escape(data["before"]["predicted"]), escape(data["after"]["predicted"]))
    return table


def _show_answer(answer: AgentAnswer) -> None:
    """After the streamed answer: what it rests on, what failed, and what no tool backs."""
    calls = ", ".join(c.name for c in answer.sources) or "no tool result"
    console.print(f"[dim]based on: {escape(calls)}[/dim]")
    for failed in (c for c in answer.tool_calls if not c.ok):
        console.print(f"[yellow]failed: {escape(failed.name)}: {escape(failed.error or '')}[/yellow]")
    if answer.ungrounded_numbers:
        console.print(f"[yellow]not backed by any tool result: {', '.join(answer.ungrounded_numbers)}[/yellow]")
    if answer.stopped == "step_limit":
        console.print("[yellow]stopped at the step limit (--max-steps)[/yellow]")
    elif answer.stopped == "repeated_call":
        console.print("[yellow]stopped: the model asked for a tool call it had already made[/yellow]")
    console.print(f"[dim]{usage_line(answer.usage)}[/dim]")
