"""Commands that talk to the LLM directly: check the backend, ask a question, score continuations."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from xplain.cli.common import app, console, run_with_llm, usage_line
from xplain.llm import LLM, GenerationRequest, ScoreRequest
from xplain.settings import get_settings, unknown_environment


SECRET_SETTINGS = {"llm_api_key", "api_keys", "admin_api_keys"}


@app.command()
def check() -> None:
    """Show the settings in force, whether the LLM backend answers, and how it does JSON and tools."""

    async def work(llm: LLM) -> None:
        console.print(f"backend ready: [green]{await llm.check()}[/green]")
        console.print(f"constrained decoding: {'yes' if llm.backend.constrains_json else 'no'}")
        console.print(f"tool calling: {'native' if llm.backend.native_tools else 'fallback (constrained JSON)'}")

    settings = get_settings()
    table = Table("setting", "value", title="xplain settings (XPLAIN_* or xplain.toml)")
    for name, value in settings.model_dump(mode="json").items():
        table.add_row(name, "***" if name in SECRET_SETTINGS and value else str(value))
    console.print(table)
    for line in unknown_environment():
        console.print(f"[yellow]warning:[/yellow] {line}")
    run_with_llm(work)


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
        console.print(f"[dim]{llm.name} · {usage_line(completion.usage)}[/dim]")

    run_with_llm(work)


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
        console.print(f"[dim]{llm.name} · {usage_line(result.usage)}[/dim]")

    run_with_llm(work)
