"""What routes need from the running service, taken from the app state, and the API-key check."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request

from xplain.llm import LLM
from xplain.methods.catalog import Method, MethodContext
from xplain.server.jobs import JobManager
from xplain.server.registry import ModelRegistry
from xplain.server.store import Store
from xplain.settings import Settings


@dataclass
class Service:
    settings: Settings
    store: Store
    llm: LLM
    registry: ModelRegistry
    jobs: JobManager

    def context(self, method: Method, model: str | None) -> MethodContext:
        """What `method` runs against: the named model (refused before any work if the method cannot use it)."""
        blackbox = self.registry.get(model)[1] if model is not None and method.needs_model else None
        method.check_model(blackbox)
        return MethodContext(
            llm=self.llm,
            blackbox=blackbox,
            reference=self.registry.reference(model) if blackbox is not None else None,
            classifier_dir=self.settings.classifier_dir,
        )


def service(request: Request) -> Service:
    return request.app.state.service


def require_api_key(request: Request) -> None:
    """With XPLAIN_API_KEYS set, every call needs `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    keys = request.app.state.service.settings.api_keys
    if not keys:
        return
    given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not any(secrets.compare_digest(given, key) for key in keys):
        raise HTTPException(401, "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key: KEY)")
