"""The FastAPI application: `create_app(settings)`; `xplain serve` runs it with uvicorn."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from xplain import __version__
from xplain.data.demo import DEMO_MODELS
from xplain.llm import LLM, make_llm
from xplain.agent.store import ConversationStore, sqlite_path
from xplain.server.chat import make_chat_router
from xplain.server.chat_agents import RegistryAgents
from xplain.server.deps import Service, require_api_key
from xplain.server.errors import install_error_handlers
from xplain.server.jobs import JobManager
from xplain.server.registry import ModelRegistry
from xplain.server.routes import classifiers, explain, health, jobs, methods, models
from xplain.server.schemas import ModelRegistration, ModelSource
from xplain.server.store import Store
from xplain.settings import Settings, get_settings

log = logging.getLogger("xplain.server")


def create_app(
    settings: Settings | None = None, *, llm: LLM | None = None, register_demo_models: bool = False
) -> FastAPI:
    """The service over `settings` (default: the environment); `llm` replaces the configured one (tests).
    With `register_demo_models`, the built-in demo models are registered at start (what `xplain serve` does)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.database_url)
        client = llm or make_llm(settings)
        registry = ModelRegistry(store, settings)
        manager = JobManager(store, registry, client, settings)
        app.state.service = Service(settings=settings, store=store, llm=client, registry=registry, jobs=manager)
        sqlite = settings.database_url.startswith("sqlite:///")
        conversations = ConversationStore(sqlite_path(settings.database_url)) if sqlite else None
        agents.attach(registry, client, conversations, mode=settings.chat_mode, rephrase=settings.chat_rephrase)
        broken = await registry.restore()
        if register_demo_models:
            for name in DEMO_MODELS:
                if name not in registry.models:
                    await registry.register(ModelRegistration(name=name, source=ModelSource(demo=name)))
        if broken:
            log.warning("models that no longer load, skipped: %s", ", ".join(broken))
        resumed = await manager.resume_all()
        if resumed:
            log.info("resumed %d unfinished job(s)", len(resumed))
        yield
        await manager.shutdown()
        if conversations is not None:
            conversations.close()
        await client.aclose()
        store.close()

    app = FastAPI(
        title="xplain",
        version=__version__,
        description="LLMs that explain black-box models, and check their explanations against the model.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse(
                {"error": f"request body over {settings.max_body_bytes} bytes (XPLAIN_MAX_BODY_BYTES)", "detail": None},
                status_code=413,
            )
        return await call_next(request)

    agents = RegistryAgents()
    app.include_router(make_chat_router(agents))
    app.include_router(health.router)
    protected = [Depends(require_api_key)]
    for router in (models.router, methods.router, jobs.router, explain.router, classifiers.router):
        app.include_router(router, dependencies=protected)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app
