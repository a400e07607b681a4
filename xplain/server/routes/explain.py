"""Explanations of a whole module or dataset (not row by row): SASC for a registered text -> number model, iPrompt for
input -> output pairs. Both answer in one request; every round inside is one batched LLM call."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import Field, model_validator

from xplain.methods.iprompt import IPromptOptions, IPromptResult, explain_dataset
from xplain.methods.sasc import SASCOptions, SASCResult, explain_module
from xplain.server.deps import Service, service
from xplain.server.schemas import ModelName, Strict

router = APIRouter(prefix="/explain", tags=["explain"])


class ModuleRequest(Strict):
    model: str = ModelName
    corpus: list[str] | None = Field(
        None, min_length=10, max_length=5000, description="Texts whose n-grams are scored; movie-review sentences if unset."
    )
    options: SASCOptions = Field(default_factory=SASCOptions)


class DatasetRequest(Strict):
    inputs: list[str] = Field(min_length=4, max_length=2000)
    outputs: list[str] = Field(min_length=4, max_length=2000)
    options: IPromptOptions = Field(default_factory=IPromptOptions)

    @model_validator(mode="after")
    def _paired(self) -> DatasetRequest:
        if len(self.inputs) != len(self.outputs):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.outputs)} outputs; give one output per input")
        return self


@router.post("/module", response_model=SASCResult)
async def explain_module_route(body: ModuleRequest, svc: Service = Depends(service)) -> SASCResult:
    """SASC: what a text -> number model responds to, in words, scored on the model itself."""
    _, blackbox = svc.registry.get(body.model)
    if blackbox.kind != "module":
        raise ValueError(f"{body.model} is a {blackbox.kind} classifier; SASC explains 'module' models (text -> number)")
    return await explain_module(svc.llm, blackbox, body.corpus, body.options)


@router.post("/dataset", response_model=IPromptResult)
async def explain_dataset_route(body: DatasetRequest, svc: Service = Depends(service)) -> IPromptResult:
    """iPrompt: the instruction that best explains how inputs map to outputs, with its held-out accuracy."""
    return await explain_dataset(svc.llm, body.inputs, body.outputs, body.options)
