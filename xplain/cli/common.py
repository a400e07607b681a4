"""What every command shares: the Typer app, the console, and running async work on a configured LLM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from xplain.batch.sources import read_table
from xplain.data.demo import open_model, reference_for_spec
from xplain.errors import XplainError
from xplain.llm import LLM, Usage, make_llm
from xplain.methods.catalog import Method, MethodContext
from xplain.settings import Settings, get_settings

app = typer.Typer(help="xplain: LLMs that explain black-box models.", no_args_is_help=True, add_completion=False)
console = Console()


def run_with_llm(work: Callable[[LLM], Awaitable[None]]) -> None:
    """Run an async command body on a fresh LLM; LLM errors end the command with their message, not a trace."""

    async def main() -> None:
        llm = make_llm(get_settings())
        try:
            await work(llm)
        finally:
            await llm.aclose()

    try:
        asyncio.run(main())
    except XplainError as error:
        fail(error)


def fail(error: BaseException) -> NoReturn:
    """The CLI's form of an error: its message in red and exit code 2, never a trace."""
    console.print(f"[red]error:[/red] {error}")
    raise typer.Exit(2) from error


def parse_json_option(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag} is not valid JSON: {error}") from None


def method_context(
    method: Method, model: str | None, settings: Settings, kind: str | None = None, reference: Path | None = None
) -> MethodContext:
    """What a catalog method runs against from the CLI: the model a spec names with its reference rows (a demo's,
    or the `reference` file's, from which a table's columns are learnt too) and the configured classifier
    directory; the LLM is attached when the work starts."""
    blackbox = None
    if model is not None:
        blackbox = open_model(model, trusted_dir=settings.trusted_model_dir, kind=kind)
    method.check_model(blackbox)
    rows = reference_for_spec(model) if model else None
    if reference is not None:
        rows = read_table(reference)
        if blackbox is not None and blackbox.kind == "tabular":
            blackbox.infer_schema(rows)
    return MethodContext(llm=None, blackbox=blackbox, reference=rows, classifier_dir=settings.classifier_dir)


def usage_line(usage: Usage) -> str:
    return (
        f"{usage.calls} call(s), {usage.prompt_tokens} prompt + {usage.completion_tokens} generated tokens, "
        f"{usage.seconds:.2f} s, {usage.cache_hits} cache hit(s)"
    )
