"""Liveness and readiness: readiness asks the LLM backend, with a time limit, instead of assuming."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from xplain import __version__
from xplain.server.deps import Service, service
from xplain.server.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health(version=__version__)


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(svc: Service = Depends(service)):
    try:
        described = await asyncio.wait_for(svc.llm.check(), timeout=10)
    except Exception as error:  # any failure to answer means not ready; the reason says which
        reason = "timed out after 10 s" if isinstance(error, TimeoutError) else str(error)
        body = Readiness(ready=False, llm=svc.llm.name, reason=reason)
        return JSONResponse(body.model_dump(), status_code=503)
    return Readiness(ready=True, llm=described)
