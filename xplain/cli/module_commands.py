"""`xplain explain-module` (SASC) and `xplain explain-dataset` (iPrompt)."""

from __future__ import annotations

import json
import pkgutil
from numbers import Real
from pathlib import Path
from typing import Annotated

import typer

from xplain.blackbox import BlackBox, BlackBoxError, from_callable, load_blackbox
from xplain.batch.sources import lines_of, read_jsonl
from xplain.blackbox.loaders import IMPORT_PATH
from xplain.cli.common import app, console, run_with_llm, usage_line
from xplain.llm import LLM
from xplain.methods.iprompt import IPromptOptions, explain_dataset
from xplain.methods.sasc import SASCOptions, explain_module
from xplain.settings import get_settings


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


PROBE_TEXTS = ["a short probe text", "another probe text"]


def load_module(spec: str) -> BlackBox:
    """The module behind `spec` as a batched black box. A plain function may take a batch (list of texts -> one
    number each) or a single text (text -> number, the README's "any text -> number function"): two probe texts
    tell which, and a per-text function is wrapped into a batch. Anything else is an error that says what to fix."""
    settings = get_settings()
    module = load_blackbox(
        spec, kind="module", trusted_dir=settings.trusted_model_dir, trusted_types=settings.trusted_skops_types
    )
    if not IMPORT_PATH.fullmatch(spec):
        return module
    try:
        module.predict(PROBE_TEXTS)
        module.reset_stats()
        return module
    except Exception as batch_error:  # whatever a user's function raises on a list
        function = pkgutil.resolve_name(spec)
        try:
            value = function(PROBE_TEXTS[0])
        except Exception as text_error:
            raise BlackBoxError(_shape_help(spec, batch_error, f"raised {text_error!r}")) from text_error
        if isinstance(value, bool) or not isinstance(value, Real):
            raise BlackBoxError(_shape_help(spec, batch_error, f"returned {type(value).__name__} {value!r:.60}"))

    def per_text(texts: list[str]) -> list[float]:
        values = []
        for text in texts:
            try:
                values.append(float(function(text)))
            except Exception as error:
                raise BlackBoxError(f"{spec} failed on the text {text!r:.80}: {error!r:.200}") from error
        return values

    return from_callable(per_text, kind="module", name=f"import:{spec} (per text)")


def _shape_help(spec: str, batch_error: Exception, single: str) -> str:
    return (
        f"{spec} must be a text -> number function: either f(list of texts) -> one number per text, or "
        f"f(text) -> number. Called with a list it failed ({batch_error!r:.200}); called with one text it {single}."
    )


@app.command("explain-module")
def explain_module_command(
    spec: Annotated[str, typer.Argument(help="The module: import path 'pkg.mod:fn', URL, .skops or trusted pickle.")],
    corpus: Annotated[Path | None, typer.Option(help="Text file, one text per line (default: movie-review sentences).")] = None,
    candidates: Annotated[int, typer.Option(help="Candidate explanations.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Explain a text -> number module in words with SASC, and score each explanation on the module."""
    try:
        module = load_module(spec)
    except BlackBoxError as error:
        _fail(str(error))
    texts = None
    if corpus is not None:
        if not corpus.is_file():
            _fail(f"no corpus file at {corpus}")
        texts = [line.rstrip("\r") for line in lines_of(corpus.read_text(encoding="utf-8"))]

    async def work(llm: LLM) -> None:
        try:
            result = await explain_module(llm, module, texts, SASCOptions(n_candidates=candidates))
        except (ValueError, BlackBoxError) as error:
            _fail(str(error))
        if as_json:
            typer.echo(result.model_dump_json())
            return
        for rank, c in enumerate(result.candidates, start=1):
            score = "n/a" if c.score is None else f"{c.score:.2f}"
            console.print(f"{rank}. {c.explanation}  [dim](score {score} module std)[/dim]")
        console.print("top n-grams: " + ", ".join(n.ngram for n in result.top_ngrams[:10]))
        console.print(f"[dim]{usage_line(result.cost.llm)} · {result.cost.blackbox_queries} module queries[/dim]")

    run_with_llm(work)


@app.command("explain-dataset")
def explain_dataset_command(
    path: Annotated[Path, typer.Argument(help="JSON lines file of objects with input and output fields.")],
    input_field: Annotated[str, typer.Option(help="Field holding the input.")] = "input",
    output_field: Annotated[str, typer.Option(help="Field holding the output.")] = "output",
    iterations: Annotated[int, typer.Option(help="Mutate-and-score rounds.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Find the rule behind input -> output pairs with iPrompt, with each prompt's held-out accuracy."""
    if not path.is_file():
        _fail(f"no data file at {path}")
    try:
        rows = read_jsonl(path)
        inputs = [str(row[input_field]) for row in rows]
        outputs = [str(row[output_field]) for row in rows]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        _fail(f"{path} must hold one JSON object per line with fields {input_field!r} and {output_field!r}: {error!r}")

    async def work(llm: LLM) -> None:
        try:
            result = await explain_dataset(llm, inputs, outputs, IPromptOptions(n_iterations=iterations))
        except ValueError as error:
            _fail(str(error))
        if as_json:
            typer.echo(result.model_dump_json())
            return
        for rank, c in enumerate(result.candidates, start=1):
            accuracy = "" if c.heldout_accuracy is None else f", held-out accuracy {c.heldout_accuracy:.0%}"
            console.print(f"{rank}. {c.prompt}  [dim](log-lik gain {c.gain:.2f}{accuracy})[/dim]")
        console.print(f"[dim]{usage_line(result.cost.llm)}[/dim]")

    run_with_llm(work)
