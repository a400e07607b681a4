"""What every command shares: the Typer app, the console, and running async work on a configured LLM."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import typer
from rich.console import Console

from xplain.llm import LLM, LLMError, Usage, make_llm
from xplain.settings import get_settings

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
    except LLMError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error


def usage_line(usage: Usage) -> str:
    return (
        f"{usage.calls} call(s), {usage.prompt_tokens} prompt + {usage.completion_tokens} generated tokens, "
        f"{usage.seconds:.2f} s, {usage.cache_hits} cache hit(s)"
    )
