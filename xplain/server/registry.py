"""The models the service explains: loaded from a registration, kept in memory, re-loaded from the store on start."""

from __future__ import annotations

import asyncio

from xplain.blackbox import BlackBox, from_http, from_import_path, from_llm_spec, from_pickle, from_skops
from xplain.data.demo import DEMO_MODELS, DemoReference, demo_blackbox
from xplain.errors import Conflict, Forbidden, NotFound
from xplain.llm import LLM
from xplain.server.reference import load_reference
from xplain.server.schemas import ModelRegistration
from xplain.server.store import Store
from xplain.service import OpenedModel
from xplain.settings import Settings
from xplain.validation import resolve_under


class ModelNotFound(NotFound):
    pass


def load_registered(registration: ModelRegistration, settings: Settings, llm: LLM) -> BlackBox:
    """Build the black box a registration names, enforcing the operator's limits on where models may come from.
    An LLM classifier runs on the service's `llm` unless it names an endpoint the operator allows."""
    source = registration.source
    common = dict(kind=registration.kind, feature_names=registration.feature_names)
    if source.demo is not None:
        return demo_blackbox(source.demo)
    if source.llm is not None:
        return from_llm_spec(source.llm, llm=llm, settings=settings, allowed_endpoints=settings.allowed_llm_endpoints)
    if source.url is not None:
        if registration.kind is None:
            raise ValueError("an HTTP model needs `kind` (tabular, text or module)")
        return from_http(
            source.url, classes=registration.classes, allowed_hosts=settings.allowed_model_hosts, **common
        )
    if source.import_path is not None:
        return from_import_path(
            source.import_path,
            classes=registration.classes,
            trusted_prefixes=settings.trusted_import_prefixes,
            trusted_objects=settings.trusted_import_objects,
            **common,
        )
    if settings.trusted_model_dir is None:
        raise Forbidden("loading model files is off: the operator has not set XPLAIN_TRUSTED_MODEL_DIR")
    root = settings.trusted_model_dir.resolve()
    path = resolve_under(root, source.file, "the trusted model directory (XPLAIN_TRUSTED_MODEL_DIR)")
    if path.suffix == ".skops":
        return from_skops(path, trusted=registration.trusted_types or None, **common)
    return from_pickle(path, trusted_dir=root, **common)


class ModelRegistry:
    def __init__(self, store: Store, settings: Settings, llm: LLM) -> None:
        self.store = store
        self.settings = settings
        self.llm = llm
        self.models: dict[str, tuple[ModelRegistration, BlackBox]] = {}
        self.references: dict[str, DemoReference] = {}

    async def register(self, registration: ModelRegistration) -> BlackBox:
        """Load first, store after: a registration that fails to load leaves nothing behind. A taken name is a
        Conflict unless the registration says `replace`; a demo's name is never given to another model."""
        name = registration.name
        if name in DEMO_MODELS and registration.source.demo != name:
            raise Forbidden(f"{name!r} is the name of a demo model; choose another name")
        if name in self.models and not registration.replace:
            raise Conflict(f"a model named {name!r} is already registered; send \"replace\": true to replace it")
        if name in DEMO_MODELS and name in self.models:
            raise Forbidden(f"{name!r} is a demo model and cannot be replaced")
        blackbox = await asyncio.to_thread(load_registered, registration, self.settings, self.llm)
        reference = await asyncio.to_thread(load_reference, registration, blackbox, self.settings)
        await self.store.save_model(name, registration.model_dump(mode="json", exclude={"replace"}))
        previous = self.models.get(name)
        self._keep(registration, blackbox, reference)
        if previous is not None:
            previous[1].close()
        return blackbox

    def _keep(self, registration: ModelRegistration, blackbox: BlackBox, reference: DemoReference | None) -> None:
        self.models[registration.name] = (registration, blackbox)
        self.references.pop(registration.name, None)
        if reference is not None:
            self.references[registration.name] = reference

    async def restore(self) -> list[str]:
        """Re-load every stored model; returns the names that no longer load (and skips them)."""
        broken = []
        for name, spec in (await self.store.model_specs()).items():
            registration = ModelRegistration.model_validate(spec)
            try:
                blackbox = await asyncio.to_thread(load_registered, registration, self.settings, self.llm)
                reference = await asyncio.to_thread(load_reference, registration, blackbox, self.settings)
            except Exception:  # a model or data file removed or changed since: keep serving the rest
                broken.append(name)
                continue
            self._keep(registration, blackbox, reference)
        return broken

    def reference(self, name: str):
        """Reference rows for a model, where it has them (the demos' held-out rows, a registered file), else None."""
        self.get(name)
        reference = self.references.get(name)
        return reference.rows if reference is not None else None

    def opened(self, name: str) -> OpenedModel:
        """The registered model with its reference rows, as the service runs methods on it."""
        return OpenedModel(self.get(name)[1], self.reference(name))

    def get(self, name: str) -> tuple[ModelRegistration, BlackBox]:
        try:
            return self.models[name]
        except KeyError:
            raise ModelNotFound(f"no model named {name!r}; POST /models registers one") from None

    def close(self) -> None:
        """Release what the models hold open (HTTP pools, an LLM classifier's own LLM and loop)."""
        for _, blackbox in self.models.values():
            blackbox.close()

    async def remove(self, name: str) -> None:
        _, blackbox = self.get(name)
        if name in DEMO_MODELS:
            raise Forbidden(f"{name!r} is a demo model and cannot be removed")
        blackbox.close()
        del self.models[name]
        self.references.pop(name, None)
        await self.store.delete_model(name)
