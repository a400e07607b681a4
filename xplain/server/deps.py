"""What the fronts need from the running service: the REST routes through the app state, the MCP server directly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request

from xplain.batch.runner import outcomes_of
from xplain.data.demo import DEMO_MODELS
from xplain.errors import TooLarge
from xplain.llm import LLM, make_llm
from xplain.methods.catalog import Method, MethodContext
from xplain.server.jobs import JobManager
from xplain.server.guards import OPERATOR, Principal
from xplain.server.registry import ModelRegistry, split_key
from xplain.server.schemas import (
    SYNC_ROWS,
    MethodRequest,
    MethodResponse,
    ModelInfo,
    ModelRegistration,
    ModelSource,
)
from xplain.server.store import Store
from xplain.service import method_context, run_method
from xplain.settings import Settings

log = logging.getLogger("xplain.server")

@dataclass
class Service:
    settings: Settings
    store: Store
    llm: LLM
    registry: ModelRegistry
    jobs: JobManager

    def context(self, method: Method, model: str | None, owner: str = "") -> MethodContext:
        """What `method` runs against: `owner`'s model of that name, or a shared one (refused before any work if the
        method cannot use it)."""
        key = self.registry.key_for(model, owner) if model is not None else None
        opened = self.registry.opened(key) if key is not None and method.needs_model else None
        return method_context(method, opened, llm=self.llm, settings=self.settings, owner=owner)

    async def run_method(self, method: Method, body: MethodRequest, owner: str = "") -> MethodResponse:
        """One synchronous call of a catalog method for `owner`, as `POST /methods/{name}` and the MCP tools answer
        it."""
        if method.unit == "row" and len(body.rows) > SYNC_ROWS:
            raise TooLarge(f"{len(body.rows)} rows; a synchronous call takes at most {SYNC_ROWS}: POST /jobs for more")
        results = await run_method(method, self.context(method, body.model, owner), body.rows, body.options)
        return MethodResponse(model=body.model, method=method.name, results=outcomes_of(range(len(results)), results))

    def model_info(self, key: str) -> ModelInfo:
        registration, blackbox = self.registry.get(key)
        classes = blackbox.classes_
        classes = None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]
        return ModelInfo(
            name=split_key(key)[1],
            kind=blackbox.kind,
            source=registration.source,
            classes=classes,
            feature_names=blackbox.feature_names,
            columns=None if blackbox.schema is None else [c.model_dump() for c in blackbox.schema.columns],
            queries=blackbox.stats().model_dump(),
            llm_prompt=blackbox.llm_prompt,
            llm_scoring=blackbox.llm_scoring,
        )


@asynccontextmanager
async def open_service(
    settings: Settings, *, llm: LLM | None = None, register_demo_models: bool = False
) -> AsyncIterator[Service]:
    """The store, LLM, model registry (stored models restored, demos added if asked) and job manager, closed on
    exit. Jobs are not resumed here: that is the REST server's work, not every front's."""
    store = Store(settings.database_url)
    client = llm or make_llm(settings)
    registry = ModelRegistry(store, settings, client)
    try:
        broken = await registry.restore()
        if broken:
            log.warning("models that no longer load, skipped: %s", ", ".join(broken))
        if register_demo_models:
            for name in DEMO_MODELS:
                if name not in registry.models:
                    await registry.register(ModelRegistration(name=name, source=ModelSource(demo=name)))
        jobs = JobManager(store, registry, client, settings)
        yield Service(settings=settings, store=store, llm=client, registry=registry, jobs=jobs)
    finally:
        await asyncio.to_thread(registry.close)
        try:  # a native LLM call in flight cannot be interrupted: do not wait for it past the grace time
            await asyncio.wait_for(client.aclose(), timeout=settings.shutdown_grace_s)
        except TimeoutError:
            log.warning("the LLM backend did not close within %.0f s", settings.shutdown_grace_s)
        store.close()


def service(request: Request) -> Service:
    return request.app.state.service


def principal(request: Request) -> Principal:
    """The API key's principal; without configured keys, the operator."""
    return getattr(request.state, "principal", OPERATOR)

