"""The classifiers saved by the `classifier_fit` method (POST /methods/classifier_fit, or a job), by name."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from xplain.server.deps import Service, service

router = APIRouter(prefix="/classifiers", tags=["classifiers"])


@router.get("")
async def list_classifiers(svc: Service = Depends(service)) -> list[str]:
    folder = svc.settings.classifier_dir
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
