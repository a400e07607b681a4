"""The classifiers saved by the `classifier_fit` method (POST /methods/classifier_fit, or a job), by name: a key's
own and the operator's shared ones; an admin key sees every key's too, as `owner/name`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends

from xplain.server.deps import Service, principal, service
from xplain.server.guards import Principal
from xplain.service import KEYS_FOLDER, classifier_dir_of

router = APIRouter(prefix="/classifiers", tags=["classifiers"])


def _names(folder: Path) -> set[str]:
    """The classifiers saved in `folder` (not the per-key folder, whose name no classifier can have)."""
    return {p.name for p in folder.iterdir() if p.is_dir() and p.name != KEYS_FOLDER} if folder.is_dir() else set()


@router.get("")
async def list_classifiers(svc: Service = Depends(service), who: Principal = Depends(principal)) -> list[str]:
    root = svc.settings.classifier_dir
    names = _names(root) | _names(classifier_dir_of(svc.settings, who.owner))
    keys = root / KEYS_FOLDER
    if who.admin and keys.is_dir():
        names |= {f"{key.name}/{name}" for key in keys.iterdir() if key.name != who.owner for name in _names(key)}
    return sorted(names)
