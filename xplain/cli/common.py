"""What every command shares: the Typer app, the console, and running async work on a configured LLM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from xplain import service
from xplain.batch.sources import read_table
from xplain.errors import XplainError, describe
from xplain.llm import LLM, Usage, make_llm
from xplain.methods.catalog import Method, MethodContext
from xplain.settings import Settings, get_settings

app = typer.Typer(help="xplain: LLMs that explain black-box models.", no_args_is_help=True, add_completion=False)
console = Console()


def command_llm(settings: Settings) -> LLM:
    """The LLM a command runs on, loaded on first use; an LLM classifier the command explains shares it, so the
    embedded model loads once."""
    return make_llm(settings)


def run_with_llm(work: Callable[[LLM], Awaitable[None]], llm: LLM | None = None) -> None:
    """Run an async command body on `llm` (the command's own, which an LLM classifier may share) or a fresh LLM,
    closed at the end; LLM errors end the command with their message, not a trace."""

    async def main() -> None:
        client = llm or command_llm(get_settings())
        try:
            await work(client)
        finally:
            await client.aclose()

    try:
        asyncio.run(main())
    except XplainError as error:
        fail(error)


def fail(error: BaseException) -> NoReturn:
    """The CLI's form of an error: its message in red and exit code 2, never a trace. The operator runs the CLI,
    so an error outside the tree (a file that would not open) shows its own words."""
    status, message = describe(error)
    console.print(f"[red]error:[/red] {escape(message if status != 500 else str(error))}")
    raise typer.Exit(2) from error


def parse_json_option(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag} is not valid JSON: {error}") from None


def method_context(
    method: Method, model: str | None, settings: Settings, kind: str | None = None, reference: Path | None = None
) -> MethodContext:
    """What a catalog method runs against from the CLI: the model a spec names (opened even for a method that
    brings its own, so that a bad spec is refused) and the command's LLM, loaded on first use; an LLM classifier the
    spec names runs on it too, so the embedded model loads once. The `reference` file's rows, when given, are the
    background, from which a table learns its columns too."""
    llm = command_llm(settings)
    opened = service.open_spec(model, settings, kind=kind, llm=llm) if model is not None else None
    if opened is not None and reference is not None:
        service.with_reference(opened, read_table(reference))
    return service.method_context(method, opened, llm=llm, settings=settings)


def usage_line(usage: Usage) -> str:
    return (
        f"{usage.calls} call(s), {usage.prompt_tokens} prompt + {usage.completion_tokens} generated tokens, "
        f"{usage.seconds:.2f} s, {usage.cache_hits} cache hit(s)"
    )
