"""The `xplain` command. Every command here works; new ones join as their features land."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from xplain.llm import LLM, GenerationRequest, LLMError, ScoreRequest, make_llm
from xplain.settings import get_settings

app = typer.Typer(help="xplain: LLMs that explain black-box models.", no_args_is_help=True, add_completion=False)
console = Console()


def _run(work) -> None:
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


@app.command()
def check() -> None:
    """Show the settings in force and whether the LLM backend answers."""

    async def work(llm: LLM) -> None:
        console.print(f"backend ready: [green]{await llm.check()}[/green]")

    settings = get_settings()
    table = Table("setting", "value", title="xplain settings (XPLAIN_* or xplain.toml)")
    for name, value in settings.model_dump(mode="json").items():
        table.add_row(name, "***" if name == "llm_api_key" else str(value))
    console.print(table)
    _run(work)


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="What to ask the model.")],
    max_tokens: Annotated[int, typer.Option(help="Cap on generated tokens.")] = 128,
    temperature: Annotated[float, typer.Option(help="0 is deterministic and cached.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the completion as JSON.")] = False,
) -> None:
    """Ask the configured model one question (a chat turn)."""

    async def work(llm: LLM) -> None:
        request = GenerationRequest.user(prompt, max_tokens=max_tokens, temperature=temperature)
        completion = (await llm.generate([request]))[0]
        if as_json:
            typer.echo(completion.model_dump_json())
            return
        console.print(completion.text)
        console.print(f"[dim]{llm.name} · {_usage_line(completion.usage)}[/dim]")

    _run(work)


@app.command()
def score(
    prompt: Annotated[str, typer.Argument(help="Text the continuations follow.")],
    continuations: Annotated[list[str], typer.Argument(help="Candidate continuations (mind the leading space).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Rank continuations of a prompt by log-likelihood under the configured model."""

    async def work(llm: LLM) -> None:
        result = (await llm.score([ScoreRequest(prompt=prompt, continuations=continuations)]))[0]
        if as_json:
            typer.echo(json.dumps({"continuations": continuations, **result.model_dump(mode="json")}))
            return
        table = Table("rank", "continuation", "log-likelihood", "tokens", "per token", title=f"after {prompt!r}")
        ranked = sorted(zip(continuations, result.logprobs, result.token_counts), key=lambda r: -r[1])
        for rank, (text, logprob, count) in enumerate(ranked, start=1):
            table.add_row(str(rank), repr(text), f"{logprob:.3f}", str(count), f"{logprob / count:.3f}")
        console.print(table)
        console.print(f"[dim]{llm.name} · {_usage_line(result.usage)}[/dim]")

    _run(work)


def _usage_line(usage) -> str:
    return (
        f"{usage.calls} call(s), {usage.prompt_tokens} prompt + {usage.completion_tokens} generated tokens, "
        f"{usage.seconds:.2f} s, {usage.cache_hits} cache hit(s)"
    )


if __name__ == "__main__":  # pragma: no cover
    app()
