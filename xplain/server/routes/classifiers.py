"""LML-DAP and text-bottleneck classifiers over the API: fit one (saved without pickle under
XPLAIN_CLASSIFIER_DIR), list them, and predict with the reasons or concept contributions behind each label."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import Field, model_validator

from xplain.methods.lml_dap import LMLDAPClassifier
from xplain.methods.persistence import load_classifier, save_classifier
from xplain.methods.tbm import TextBottleneckClassifier
from xplain.server.deps import Service, service
from xplain.server.schemas import ModelName, Strict
from xplain.validation import check_slug, resolve_under

router = APIRouter(prefix="/classifiers", tags=["classifiers"])


class FitRequest(Strict):
    name: str = ModelName
    kind: Literal["lml", "tbm"] = Field(description="lml: a numeric table; tbm: texts.")
    rows: list[list[float]] | list[str] = Field(min_length=2, description="Table rows (lml) or texts (tbm).")
    labels: list[str | int] = Field(min_length=2)
    feature_names: list[str] | None = Field(None, description="lml: column names.")

    @model_validator(mode="after")
    def _consistent(self) -> FitRequest:
        if len(self.rows) != len(self.labels):
            raise ValueError(f"{len(self.rows)} rows but {len(self.labels)} labels; give one label per row")
        texts = all(isinstance(r, str) for r in self.rows)
        if texts != (self.kind == "tbm"):
            raise ValueError("tbm takes texts as rows; lml takes lists of numbers")
        return self


class PredictRequest(Strict):
    rows: list[list[float]] | list[str] = Field(min_length=1, max_length=256)


def _directory(svc: Service, name: str):
    check_slug(name, "classifier name")
    return resolve_under(svc.settings.classifier_dir, name, "the classifier directory")


@router.post("", status_code=201)
async def fit_classifier(body: FitRequest, svc: Service = Depends(service)) -> dict[str, Any]:
    if len(body.rows) > svc.settings.max_batch_rows:
        raise ValueError(f"{len(body.rows)} rows; at most {svc.settings.max_batch_rows} (XPLAIN_MAX_BATCH_ROWS)")
    directory = _directory(svc, body.name)  # refused before any work, not after the fit
    labels = [str(label) for label in body.labels]
    if body.kind == "lml":
        classifier = LMLDAPClassifier(svc.llm, feature_names=body.feature_names)
    else:
        classifier = TextBottleneckClassifier(svc.llm)
    await classifier.afit(body.rows, labels)
    await asyncio.to_thread(save_classifier, classifier, directory)
    learned = (
        {"summaries": classifier.summaries_}
        if body.kind == "lml"
        else {"concepts": [c.model_dump(mode="json") for c in classifier.global_explanation()]}
    )
    return {"name": body.name, "kind": body.kind, "classes": [str(c) for c in classifier.classes_], **learned}


@router.get("")
async def list_classifiers(svc: Service = Depends(service)) -> list[str]:
    folder = svc.settings.classifier_dir
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


@router.post("/{name}/predict")
async def predict_with_classifier(name: str, body: PredictRequest, svc: Service = Depends(service)) -> dict[str, Any]:
    """Labels with their reasons (lml: the LLM's reasons and the training rows used; tbm: concept contributions)."""
    directory = _directory(svc, name)
    if not directory.is_dir():
        raise FileNotFoundError(f"no classifier named {name!r}; POST /classifiers fits one")
    classifier = await asyncio.to_thread(load_classifier, directory, svc.llm)
    explanation = await classifier.aexplain(body.rows)
    return explanation.model_dump(mode="json")
