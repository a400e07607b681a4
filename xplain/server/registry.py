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


def scoped(owner: str, name: str) -> str:
    """The registry's key of `owner`'s model `name` (`owner/name`); the name itself for the operator's shared models
    (the demos, and all models of a server without API keys). A name cannot hold '/', so keys never collide."""
    return f"{owner}/{name}" if owner else name


def split_key(key: str) -> tuple[str, str]:
    """(owner, name) of a registry key."""
    owner, _, name = key.rpartition("/")
    return owner, name


def _demo_named(name: str) -> str | None:
    return next((demo for demo in DEMO_MODELS if demo.lower() == name.lower()), None)


def load_registered(registration: ModelRegistration, settings: Settings, llm: LLM) -> BlackBox:
    """Build the black box a registration names, enforcing the operator's limits on where models may come from.
    An LLM classifier runs on the service's `llm` unless it names an endpoint the operator allows."""
    source = registration.source
    common = dict(kind=registration.kind, feature_names=registration.feature_names)
    if source.demo is not None:
        return demo_blackbox(source.demo)
    if source.llm is not None:
        return from_llm_spec(
            source.llm,
            llm=llm,
            settings=settings,
            allowed_endpoints=settings.allowed_llm_endpoints,
            name=registration.name,  # errors name the model the user registered, not the LLM under it
        )
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
        return from_skops(path, trusted=[*settings.trusted_skops_types, *registration.trusted_types], **common)
    return from_pickle(path, trusted_dir=root, **common)


class ModelRegistry:
    def __init__(self, store: Store, settings: Settings, llm: LLM) -> None:
        self.store = store
        self.settings = settings
        self.llm = llm
        self.models: dict[str, tuple[ModelRegistration, BlackBox]] = {}
        self.references: dict[str, DemoReference] = {}

    async def register(self, registration: ModelRegistration, owner: str = "") -> BlackBox:
        """Load first, store after: a registration that fails to load leaves nothing behind. Names are `owner`'s
        own, and unique regardless of case; a taken name is a Conflict unless the registration says `replace`; a
        demo's name is never given to another model."""
        name = registration.name
        key = scoped(owner, name)
        demo = _demo_named(name)
        if demo is not None and registration.source.demo != name:
            raise Forbidden(f"{demo!r} is the name of a demo model; choose another name")
        if demo is not None and owner:  # the demos are shared: the server registers them, once
            raise Conflict(f"a model named {demo!r} is already registered: the demo, shared by every key; demos cannot "
                           "be replaced")  # fmt: skip
        taken = next((k for k in self.models if k.lower() == key.lower() and k != key), None)
        if taken is not None:
            raise Conflict(f"a model named {split_key(taken)[1]!r} is already registered (names ignore case)")
        if key in self.models and not registration.replace:
            raise Conflict(f"a model named {name!r} is already registered; send \"replace\": true to replace it")
        if demo is not None and key in self.models:
            raise Forbidden(f"{name!r} is a demo model and cannot be replaced")
        blackbox = await asyncio.to_thread(load_registered, registration, self.settings, self.llm)
        reference = await asyncio.to_thread(load_reference, registration, blackbox, self.settings)
        await self.store.save_model(key, registration.model_dump(mode="json", exclude={"replace"}))
        previous = self.models.get(key)
        self._keep(key, registration, blackbox, reference)
        if previous is not None:
            previous[1].close()
        return blackbox

    def key_for(self, name: str, owner: str) -> str:
        """The key `name` means to `owner`: their own model, else a shared one of that name."""
        own = scoped(owner, name)
        return name if own not in self.models and name in self.models else own

    def visible(self, owner: str) -> list[str]:
        """Keys of the models `owner` may use: their own and the shared ones, by name."""
        return sorted((k for k in self.models if split_key(k)[0] in ("", owner)), key=lambda k: split_key(k)[1])

    def _keep(
        self, key: str, registration: ModelRegistration, blackbox: BlackBox, reference: DemoReference | None
    ) -> None:
        self.models[key] = (registration, blackbox)
        self.references.pop(key, None)
        if reference is not None:
            self.references[key] = reference

    async def restore(self) -> list[str]:
        """Re-load every stored model; returns the names that no longer load (and skips them)."""
        broken = []
        for key, spec in (await self.store.model_specs()).items():
            try:  # a registration an older version accepted and this one refuses is skipped like a missing file
                registration = ModelRegistration.model_validate(spec)
                blackbox = await asyncio.to_thread(load_registered, registration, self.settings, self.llm)
                reference = await asyncio.to_thread(load_reference, registration, blackbox, self.settings)
            except Exception:  # a model or data file removed or changed since: keep serving the rest
                broken.append(key)
                continue
            self._keep(key, registration, blackbox, reference)
        return broken

    def opened(self, key: str) -> OpenedModel:
        """The registered model with its reference rows and their labels, as the service runs methods on it."""
        blackbox = self.get(key)[1]
        reference = self.references.get(key)
        return OpenedModel(blackbox, *((reference.rows, reference.labels) if reference is not None else ()))

    def get(self, key: str) -> tuple[ModelRegistration, BlackBox]:
        try:
            return self.models[key]
        except KeyError:
            raise ModelNotFound(f"no model named {split_key(key)[1]!r}; POST /models registers one") from None

    def close(self) -> None:
        """Release what the models hold open (HTTP pools, an LLM classifier's own LLM and loop)."""
        for _, blackbox in self.models.values():
            blackbox.close()

    async def remove(self, key: str, owner: str = "") -> None:
        """Remove `owner`'s model `key`; shared models are the operator's (owner ""), demos stay."""
        _, blackbox = self.get(key)
        if key in DEMO_MODELS:
            raise Forbidden(f"{key!r} is a demo model and cannot be removed")
        if split_key(key)[0] != owner:
            raise Forbidden(f"{split_key(key)[1]!r} is shared by the operator; only the operator can remove it")
        blackbox.close()
        del self.models[key]
        self.references.pop(key, None)
        await self.store.delete_model(key)
