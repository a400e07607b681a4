"""The FastAPI application: `create_app(settings)`; `xplain serve` runs it with uvicorn."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

from xplain import __version__
from xplain.llm import LLM
from xplain.agent.store import ConversationStore, sqlite_path
from xplain.server.admission import Admission
from xplain.server.chat import make_chat_router
from xplain.server.chat_agents import RegistryAgents
from xplain.server.deps import open_service
from xplain.server.errors import install_error_handlers
from xplain.server.guards import ApiKeyGuard, BodySizeLimit, JsonBodies, RequestGuard, is_public
from xplain.server.routes import classifiers, health, jobs, methods, models
from xplain.settings import Settings, get_settings

log = logging.getLogger("xplain.server")

#: Threads for blocking calls (`asyncio.to_thread`: black-box queries, LIME, SHAP). Python's default, cores + 4, is 6
#: on 2 cores: a job's rows on an LLM classifier held all of them waiting on the LLM, and a one-row predict on
#: another model queued 20 s behind them. Waiting threads cost little; the work itself stays bounded by the job
#: and request limits.
BLOCKING_THREADS = 64


def create_app(
    settings: Settings | None = None, *, llm: LLM | None = None, register_demo_models: bool = False
) -> FastAPI:
    """The service over `settings` (default: the environment); `llm` replaces the configured one (tests).
    With `register_demo_models`, the built-in demo models are registered at start (what `xplain serve` does)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="xplain-blocking")
        )
        async with open_service(settings, llm=llm, register_demo_models=register_demo_models) as svc:
            app.state.service = svc
            sqlite = settings.database_url.startswith("sqlite:///")
            conversations = ConversationStore(sqlite_path(settings.database_url)) if sqlite else None
            agents.attach(svc.registry, svc.llm, conversations, mode=settings.chat_mode, rephrase=settings.chat_rephrase)
            resumed = await svc.jobs.resume_all()
            if resumed:
                log.info("resumed %d unfinished job(s)", len(resumed))
            try:
                yield
            finally:
                await svc.jobs.shutdown()
                if conversations is not None:
                    conversations.close()

    # The docs pages load Swagger UI / ReDoc from the installed fastapi-offline package, never from a CDN.
    app = FastAPIOffline(
        title="xplain",
        version=__version__,
        description="LLMs that explain black-box models, and check their explanations against the model.",
        lifespan=lifespan,
    )
    app.state.admission = Admission(settings.sync_concurrency, settings.sync_queue, settings.sync_timeout_s)
    install_error_handlers(app)
    app.add_middleware(RequestGuard, budget_s=settings.sync_timeout_s)
    app.add_middleware(JsonBodies)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # added last: runs first, before any body is read
    app.add_middleware(ApiKeyGuard, keys=settings.api_keys, admin_keys=settings.admin_api_keys)

    agents = RegistryAgents()
    app.include_router(make_chat_router(agents))
    for router in (health.router, models.router, methods.make_router(), jobs.router, classifiers.router):
        app.include_router(router)
    _document_api_keys(app)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app


def _document_api_keys(app: FastAPI) -> None:
    """Declare the API-key schemes in the OpenAPI schema (the docs page's Authorize button uses them) and mark
    every operation but the public ones as needing one."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            for path, operations in schema.get("paths", {}).items():
                if not is_public(path):
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
