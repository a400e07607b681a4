"""Methods that run row by row over a dataset: the registry the REST API, batch jobs and `xplain batch` share.

A row method receives a chunk of rows at once, so it can send one batched LLM round and one black-box query for
the whole chunk, and returns one JSON-able result (or an exception) per row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from xplain.blackbox import BlackBox
from xplain.llm import LLM, ScoreRequest
from xplain.prompts import load_prompt
from xplain.prompts.data import fence

from xplain.batch.rows import describe_row, to_model_input

RowResult = dict[str, Any] | Exception


@dataclass
class MethodContext:
    llm: LLM
    blackbox: BlackBox
    #: Rows like the model's training data (the demos' held-out rows), for methods that need a background.
    reference: Any = None


@dataclass
class RowMethod:
    name: str
    description: str
    options_model: type[BaseModel]
    run: Callable[[MethodContext, list[Any], Any], Awaitable[list[RowResult]]]
    uses_llm: bool = True


ROW_METHODS: dict[str, RowMethod] = {}


def register(method: RowMethod) -> RowMethod:
    ROW_METHODS[method.name] = method
    return method


def get_method(name: str) -> RowMethod:
    try:
        return ROW_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(sorted(ROW_METHODS))}") from None


async def _on_valid_rows(
    blackbox: BlackBox, rows: list[Any], work: Callable[[list[Any]], Awaitable[Sequence[RowResult]]]
) -> list[RowResult]:
    """Run `work` once on the rows that parse as model inputs (in order); a row that doesn't keeps its error in place."""
    inputs, errors = [], []
    for row in rows:
        try:
            inputs.append(to_model_input(blackbox, row))
            errors.append(None)
        except ValueError as error:
            errors.append(error)
    if not inputs:
        return list(errors)
    results = iter(await work(inputs))
    return [error if error is not None else next(results) for error in errors]


def _prediction(blackbox: BlackBox, probabilities: np.ndarray | float) -> dict[str, Any]:
    if not blackbox.is_classifier:
        return {"output": float(probabilities)}
    classes = [c.item() if hasattr(c, "item") else c for c in blackbox.classes_]
    best = int(np.argmax(probabilities))
    return {"label": classes[best], "probabilities": {str(c): float(p) for c, p in zip(classes, probabilities)}}


class PredictOptions(BaseModel):
    pass


async def _blackbox_predictions(blackbox: BlackBox, inputs: list[Any]) -> list[dict[str, Any]]:
    batch = np.asarray(inputs, dtype=float) if blackbox.kind == "tabular" else inputs
    outputs = await (blackbox.apredict_proba(batch) if blackbox.is_classifier else blackbox.apredict(batch))
    return [_prediction(blackbox, output) for output in outputs]


async def _predict(ctx: MethodContext, rows: list[Any], options: PredictOptions) -> list[RowResult]:
    return await _on_valid_rows(ctx.blackbox, rows, lambda inputs: _blackbox_predictions(ctx.blackbox, inputs))


register(
    RowMethod(
        name="predict",
        description="The black box's prediction for each row (probabilities for classifiers).",
        options_model=PredictOptions,
        run=_predict,
        uses_llm=False,
    )
)


class ZeroShotOptions(BaseModel):
    label_names: dict[str, str] = Field(
        default_factory=dict,
        description="Words for the model's classes, e.g. {'0': 'negative', '1': 'positive'}; class names if unset.",
    )


async def _zero_shot(ctx: MethodContext, rows: list[Any], options: ZeroShotOptions) -> list[RowResult]:
    """The LLM's own label (by label log-likelihood) beside the black box's: a second opinion, and where they
    disagree, a row worth a closer look."""
    if not ctx.blackbox.is_classifier:
        raise ValueError("zero_shot needs a classifier; this model is a text module")
    classes = [str(c.item() if hasattr(c, "item") else c) for c in ctx.blackbox.classes_]
    words = [options.label_names.get(c, c) for c in classes]
    template = load_prompt("zero_shot/label")

    async def label(inputs: list[Any]) -> list[RowResult]:
        predictions = await _blackbox_predictions(ctx.blackbox, inputs)
        requests = [
            ScoreRequest(
                prompt=template.render(data=fence(describe_row(ctx.blackbox, x)), labels=", ".join(words)),
                continuations=[f" {w}" for w in words],
            )
            for x in inputs
        ]
        results: list[RowResult] = []
        for prediction, scores in zip(predictions, await ctx.llm.score(requests)):
            logprobs = np.asarray(scores.logprobs)
            shares = np.exp(logprobs - logprobs.max())
            shares /= shares.sum()
            llm_label = classes[int(np.argmax(shares))]
            results.append(
                {
                    "blackbox": prediction,
                    "llm_label": llm_label,
                    "llm_probabilities": {c: float(p) for c, p in zip(classes, shares)},
                    "agrees": llm_label == str(prediction["label"]),
                    "prompt_versions": [template.ref],
                }
            )
        return results

    return await _on_valid_rows(ctx.blackbox, rows, label)


register(
    RowMethod(
        name="zero_shot",
        description="The LLM labels each row itself (label log-likelihoods) and is compared with the black box.",
        options_model=ZeroShotOptions,
        run=_zero_shot,
    )
)


class CounterfactualOptions(BaseModel):
    mode: Literal["target", "concept", "causal"] = Field("target", description="Text models: how edits are made.")
    concept: str | None = Field(None, max_length=100, description="Concept mode: the concept to change.")
    concept_value: str | None = Field(None, max_length=100, description="Concept mode: its new value.")
    target: str | int | None = Field(None, description="Class to reach; default: any other class.")
    constraints: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Tabular: feature -> {immutable, min, max, direction}."
    )
    max_rounds: int = Field(3, ge=1, le=10)
    candidates_per_round: int = Field(2, ge=1, le=5)


async def _counterfactual(ctx: MethodContext, rows: list[Any], options: CounterfactualOptions) -> list[RowResult]:
    """Counterfactuals for the chunk's rows in one search (each round one LLM batch); each row gets its own
    explanation, valid counterfactuals (confirmed by the black box) first."""
    from xplain.methods.counterfactual_tabular import tabular_counterfactuals
    from xplain.methods.counterfactual_text import text_counterfactuals

    if not ctx.blackbox.is_classifier:
        raise ValueError("counterfactuals need a classifier; this model is a text module")
    common = dict(target=options.target, candidates_per_round=options.candidates_per_round, max_rounds=options.max_rounds)

    async def search(inputs: list[Any]) -> list[RowResult]:
        if ctx.blackbox.kind == "tabular":
            result = await tabular_counterfactuals(ctx.llm, ctx.blackbox, inputs, constraints=options.constraints, **common)
        else:
            result = await text_counterfactuals(
                ctx.llm, ctx.blackbox, inputs, mode=options.mode, concept=options.concept,
                concept_value=options.concept_value, **common,
            )  # fmt: skip
        shared = {"prompt_versions": result.prompt_versions}
        return [explanation.model_dump(mode="json") | shared for explanation in result.explanations]

    return await _on_valid_rows(ctx.blackbox, rows, search)


register(
    RowMethod(
        name="counterfactual",
        description="Edited inputs that flip the black box's decision, each confirmed by re-querying it.",
        options_model=CounterfactualOptions,
        run=_counterfactual,
    )
)


class PosthocRowOptions(BaseModel):
    strategy: Literal["perturbation", "prediction", "instruction", "explanation"] = "perturbation"
    k: int = Field(4, ge=1, le=10, description="How many top features the LLM names.")
    n_samples: int = Field(24, ge=4, le=1000, description="Neighbourhood rows per instance.")
    background: list[list[float]] | None = Field(
        None, description="Rows like the training data (at least 2); the model's reference rows if unset."
    )


async def _posthoc(ctx: MethodContext, rows: list[Any], options: PosthocRowOptions) -> list[RowResult]:
    """Top-k features per row from one batched LLM round, each checked by PGI/PGU on the black box."""
    from xplain.methods.posthoc import PosthocOptions, explain_tabular

    if ctx.blackbox.kind != "tabular":
        raise ValueError("posthoc explains tabular classifiers; this model's input is text")
    background = options.background if options.background is not None else ctx.reference
    if background is None:
        raise ValueError("posthoc needs background rows: pass options.background (at least 2 rows like the data)")
    method_options = PosthocOptions(strategy=options.strategy, k=options.k, n_samples=options.n_samples)

    async def explain(inputs: list[Any]) -> list[RowResult]:
        explanations = await explain_tabular(
            ctx.llm, ctx.blackbox, np.asarray(inputs), np.asarray(background, dtype=float), method_options
        )
        return [explanation.model_dump(mode="json") for explanation in explanations]

    return await _on_valid_rows(ctx.blackbox, rows, explain)


register(
    RowMethod(
        name="posthoc",
        description="The LLM's top features for each prediction, checked on the black box by PGI and PGU.",
        options_model=PosthocRowOptions,
        run=_posthoc,
    )
)
