"""The catalog: the single list of what xplain can do. Each method module declares its methods once, at its foot,
with `register(Method(...))`; REST routes and jobs, `xplain batch`, `xplain run`, the agent's tools, the MCP server
and `xplain.run` are generated from these declarations, so a method that joins the catalog appears on every front
with the same name, options, limits and errors.

A method's unit of work is a *row* (one result per input row, many rows per call so a method can send one batched
LLM round for all of them) or a *set* (the inputs together give one result: SASC's corpus, iPrompt's examples, a
classifier's training table).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from xplain.blackbox import BlackBox
from xplain.errors import InvalidInput, plain_validation_error
from xplain.llm import LLM
from xplain.validation import to_model_input

InputKind = Literal["tabular_row", "text", "module", "pairs", "training"]
INPUT_KINDS: dict[str, str] = {
    "tabular_row": "a row of a tabular classifier: an object keyed by column name, or a list in column order, "
    "with the columns' own values (numbers, booleans, category names, null where missing values are taken)",
    "text": 'a text for a text classifier: a string, or an object with a "text" field',
    "module": "a text -> number model; the inputs are an optional corpus of texts",
    "pairs": 'input/output examples: {"input": ..., "output": ...}',
    "training": 'labelled training examples: {"row": [...], "label": L} or {"text": "...", "label": L}',
}
#: The black-box kind each model-bound input kind needs.
MODEL_KIND = {"tabular_row": "tabular", "text": "text", "module": "module"}

#: Option fields a front fills from its own data (the chat's reference rows); agents are never asked for them.
FRONT_DATA = "front_data"
#: Rows like the model's training data, for methods that perturb tables: the model's reference rows if unset.
BackgroundRows = Annotated[
    list[list[float | bool | str | None] | dict[str, float | bool | str | None]] | None,
    Field(
        max_length=10_000,
        description="Tables: rows like the training data (at least 2), as lists in column order or objects keyed "
        "by column, with the columns' own values; the model's reference rows if unset.",
        json_schema_extra={FRONT_DATA: True},
    ),
]

RunRows = Callable[["MethodContext", list[Any], Any], Awaitable[list[Any]]]
RunSet = Callable[["MethodContext", list[Any], Any], Awaitable[Any]]


@dataclass
class MethodContext:
    """What a method runs against. `reference` holds rows like the model's training data (a demo's held-out rows,
    or a registered data file), for methods that need a background or question the data; `reference_labels` their
    true labels, where known. `classifier_dir` is where the caller's
    classifiers are saved; `shared_classifier_dir`, where set, holds the operator's, which the caller may read."""

    llm: LLM | None
    blackbox: BlackBox | None = None
    reference: Any = None
    reference_labels: Any = None
    classifier_dir: Path | None = None
    shared_classifier_dir: Path | None = None
    progress: Callable[[float, str], None] | None = None

    def report(self, fraction: float, stage: str) -> None:
        if self.progress is not None:
            self.progress(min(max(fraction, 0.0), 1.0), stage)


#: The weight of a cue given as a bare pattern: above a weak cue of another method, so that "what does LIME say"
#: goes to `lime` rather than to the comparison of explainers.
CUE_WEIGHT = 4.0


@dataclass(frozen=True)
class ChatForm:
    """How the chat reaches a method, declared with it: the planner offers it as an operation.

    `asks` completes "The user wants ..." (the planner's LLM scores it against the question when the rules leave
    the choice open); `cues` are regular expressions whose match in a question points at the method, each with its
    weight (`CUE_WEIGHT` for a bare pattern; the words CLASS and FEATURE stand for the model's class and feature
    names, which the planner masks); `answer` is a `string.Template` over the result's top-level values and
    `$subject` ("row 3"), or a function of the result (as JSON) for an answer whose wording depends on it; without
    one the answer lists the result's values in words. `count` names the option a count in the question sets
    ("the 3 most similar rows")."""

    asks: str
    cues: tuple[str | tuple[str, float], ...] = ()
    answer: str | Callable[[dict[str, Any]], str] | None = None
    count: str | None = None

    def weighted_cues(self) -> list[tuple[str, float]]:
        return [(cue, CUE_WEIGHT) if isinstance(cue, str) else cue for cue in self.cues]


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    inputs: tuple[InputKind, ...]
    options: type[BaseModel]
    result: Any
    run: RunRows | RunSet
    unit: Literal["row", "set"] = "row"
    uses_llm: bool = True
    #: Takes longer than a few seconds on the embedded model: synchronous fronts point users to jobs.
    long_running: bool = False
    #: Whether the method works on a registered black box; iPrompt and the classifier methods bring their own.
    needs_model: bool = True
    #: The fewest items a set method's input list may hold (0: SASC falls back to its own corpus).
    min_inputs: int = 1
    #: How the chat offers it (row methods on a model); None: the chat's agent still has it as a tool.
    chat: ChatForm | None = None

    def model_kinds(self) -> set[str]:
        """The black-box kinds it works on; labelled examples (`training`) are of a table or a text model."""
        kinds = {MODEL_KIND[kind] for kind in self.inputs if kind in MODEL_KIND}
        return kinds | ({"tabular", "text"} if "training" in self.inputs and self.needs_model else set())

    def check_model(self, blackbox: BlackBox | None) -> None:
        """Refuse a model this method cannot work on, before any work starts."""
        if not self.needs_model:
            return
        if blackbox is None:
            raise InvalidInput(f"{self.name} works on a registered model: name one")
        if blackbox.kind not in self.model_kinds():
            raise InvalidInput(
                f"{self.name} works on {' or '.join(sorted(self.model_kinds()))} models; "
                f"{blackbox.name} is a {blackbox.kind} model"
            )

    def parse_options(self, options: BaseModel | dict[str, Any] | None) -> BaseModel:
        """The options model from a dict; unknown keys and bad values are refused in words a person can act on."""
        if isinstance(options, self.options):
            return options
        if options is not None and not isinstance(options, dict):
            raise InvalidInput(f"options for {self.name} are an object of option names and values")
        given = dict(options or {})
        unknown = sorted(set(given) - set(self.options.model_fields))
        if unknown:
            allowed = ", ".join(sorted(self.options.model_fields)) or "none"
            raise InvalidInput(f"unknown option(s) {', '.join(unknown)} for {self.name}; allowed: {allowed}")
        try:
            return self.options.model_validate(given)
        except ValidationError as error:
            raise InvalidInput(f"bad options for {self.name}: {plain_validation_error(error, self.options)}") from None

    def describe(self) -> dict[str, Any]:
        """The method as JSON: what `GET /methods` answers and what the MCP server and docs list."""
        return {
            "name": self.name,
            "description": self.description,
            "inputs": list(self.inputs),
            "unit": self.unit,
            "uses_llm": self.uses_llm,
            "needs_model": self.needs_model,
            "long_running": self.long_running,
            "options_schema": self.options.model_json_schema(),
            "result_schema": TypeAdapter(self.result).json_schema(),
        }


_catalog: dict[str, Method] = {}
_discovered = False


def register(method: Method) -> Method:
    if method.name in _catalog and _catalog[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is already in the catalog")
    _catalog[method.name] = method
    return method


def catalog() -> dict[str, Method]:
    """Every method, by name, in declaration order (each module under xplain/methods/ imported once)."""
    global _discovered
    if not _discovered:
        package = importlib.import_module("xplain.methods")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"xplain.methods.{module.name}")
        _discovered = True
        ordered = sorted(_catalog.items())
        _catalog.clear()
        _catalog.update(ordered)
    return _catalog


def get_method(name: str) -> Method:
    methods = catalog()
    if name not in methods:
        raise InvalidInput(unknown_method(name))
    return methods[name]


def unknown_method(name: str) -> str:
    """What to tell someone who asked for a method that does not exist: the likely one, and all of them."""
    methods = catalog()
    close = difflib.get_close_matches(name, methods, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown method {name!r}{hint} Available: {', '.join(methods)}"


async def run_units(method: Method, ctx: MethodContext, units: Sequence[Any], options: BaseModel) -> list[Any]:
    """Run `method` on its units — rows for a row method, whole input lists for a set method — and return one
    result or exception per unit, in order. Rows that do not parse fail alone; the others run together."""
    if method.unit == "set":
        results: list[Any] = []
        for number, items in enumerate(units):
            try:
                if not isinstance(items, list) or len(items) < method.min_inputs:
                    raise InvalidInput(f"{method.name} takes a list of at least {method.min_inputs} input(s)")
                ctx.report(number / len(units), f"{method.name} on {len(items)} input(s)")
                results.append(await method.run(ctx, items, options))
            except InvalidInput as error:
                results.append(error)
            except ValueError as error:  # a method's own check of its inputs
                results.append(InvalidInput(str(error)))
        return results
    if not method.needs_model:
        return list(await method.run(ctx, list(units), options))
    assert ctx.blackbox is not None
    parsed: list[Any] = []
    errors: list[Exception | None] = []
    for unit in units:
        try:
            parsed.append(to_model_input(ctx.blackbox, unit))
            errors.append(None)
        except ValueError as error:
            errors.append(error if isinstance(error, InvalidInput) else InvalidInput(str(error)))
    if not parsed:
        return list(errors)
    parsed, notes = await window_texts(ctx, parsed)
    answered = iter(await _run_rows(method, ctx, parsed, options))
    results = [error if error is not None else next(answered) for error in errors]
    for number, note in notes.items():
        kept = [i for i, e in enumerate(errors) if e is None][number]
        if hasattr(results[kept], "notes"):
            results[kept].notes.append(note)
    return results


async def _run_rows(method: Method, ctx: MethodContext, rows: list[Any], options: BaseModel) -> list[Any]:
    """The method on all rows at once; if that is refused for an input (one the black box rejects, such as a
    prompt longer than an LLM classifier's context), on each row alone, so that only the bad row fails."""
    try:
        return list(await method.run(ctx, rows, options))
    except InvalidInput:
        if len(rows) == 1:
            raise
    results: list[Any] = []
    for row in rows:
        try:
            results.extend(await method.run(ctx, [row], options))
        except InvalidInput as error:
            results.append(error)
    return results


#: The share of the LLM's context one input text may fill; the rest is the method's prompt and the reply.
TEXT_SHARE_OF_CONTEXT = 0.25


async def window_texts(ctx: MethodContext, inputs: list[Any]) -> tuple[list[Any], dict[int, str]]:
    """Texts too long for the LLM's context cut to a window that fits (their start, at a word boundary), with a
    note per cut text; so a long review is explained from its window instead of failing, or failing its batch."""
    if ctx.llm is None:
        return inputs, {}
    # a token covers at least one byte, so a text with no more bytes than the limit fits without counting
    # (a model not loaded yet is assumed to have at least a 2048-token context until it says)
    floor = int((ctx.llm.context_size or 2048) * TEXT_SHARE_OF_CONTEXT)
    texts = [i for i, x in enumerate(inputs) if isinstance(x, str) and len(x.encode()) > floor]
    if not texts:
        return inputs, {}
    counts = dict(zip(texts, await ctx.llm.count_tokens([inputs[i] for i in texts])))
    size = ctx.llm.context_size  # after counting: a local model knows its context once loaded
    if not size:
        return inputs, {}
    limit = int(size * TEXT_SHARE_OF_CONTEXT)
    windowed, notes = list(inputs), {}
    for i, tokens in counts.items():
        if tokens <= limit:
            continue
        text, cut, found = inputs[i], inputs[i], tokens
        while found > limit and cut:  # tokens per character vary along a text: shrink until the count fits
            cut = cut[: int(len(cut) * limit / found * 0.95)].rsplit(" ", 1)[0]
            [found] = await ctx.llm.count_tokens([cut])
        windowed[i] = cut
        notes[i] = (
            f"the text has about {tokens} tokens, more than {limit} (a quarter of the LLM's {size}-token context); "
            f"it was cut to its first {len(cut)} of {len(text)} characters, and the black box and the LLM saw that window"
        )
    return windowed, notes


def units_for(method: Method, items: Sequence[Any]) -> list[Any]:
    """What a front received as units of work: each row of a row method; the whole list for a set method."""
    return [list(items)] if method.unit == "set" else list(items)
