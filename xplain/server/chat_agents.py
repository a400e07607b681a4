"""The chat page's chats: one per registered model that has reference rows to question it about (the demos, and
models registered with a reference data file), built on first use in the configured mode (planner or agent), sharing
the service's LLM and database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from xplain.agent import ExplainerAgent, GroundedPlanner, make_chat
from xplain.agent.modes import ChatMode
from xplain.agent.store import ConversationStore
from xplain.llm import LLM
from xplain.server.registry import ModelRegistry, split_key
from xplain.tools import ProbeContext

Chat = ExplainerAgent | GroundedPlanner


class RegistryAgents(Mapping[str, Chat]):
    """Routes are made before the service starts, so this starts empty and `attach` gives it the service's parts."""

    def __init__(self) -> None:
        self.registry: ModelRegistry | None = None
        self.llm: LLM | None = None
        self.store: ConversationStore | None = None
        self.mode: ChatMode = "auto"
        self.rephrase = False
        self._chats: dict[str, tuple[int, Chat]] = {}

    def attach(
        self,
        registry: ModelRegistry,
        llm: LLM,
        store: ConversationStore | None,
        *,
        mode: ChatMode = "auto",
        rephrase: bool = False,
    ) -> None:
        self.registry, self.llm, self.store, self.mode, self.rephrase = registry, llm, store, mode, rephrase
        self._chats.clear()

    def _chattable(self) -> list[str]:
        if self.registry is None:
            return []
        return sorted(
            name for name, (_, blackbox) in self.registry.models.items()
            if name in self.registry.references and blackbox.kind != "module"
        )  # fmt: skip

    def not_chattable(self, key: str) -> str | None:
        """Why a registered model is not on the chat page, in words a user can act on; None if it is not registered
        or is chattable."""
        if self.registry is None or key not in self.registry.models or key in self._chattable():
            return None
        name = split_key(key)[1]
        if self.registry.models[key][1].kind == "module":
            return f"{name!r} is a text -> number module; the chat talks about classifiers"
        return (
            f"{name!r} has no reference rows to talk about: register it again with \"replace\": true and "
            f"\"reference\": {{\"file\": \"rows.csv\"}} (a CSV inside XPLAIN_DATA_DIR; for a text model name its "
            f"\"text_column\")"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._chattable())

    def __len__(self) -> int:
        return len(self._chattable())

    def __getitem__(self, name: str) -> Chat:
        if name not in self._chattable():
            raise KeyError(name)
        _, blackbox = self.registry.get(name)
        built = self._chats.get(name)
        if built is None or built[0] != id(blackbox):  # re-registered since: a fresh chat over the new model
            reference = self.registry.references[name]
            context = ProbeContext(blackbox, reference.rows, reference.labels, reference.description)
            chat = make_chat(self.llm, context, mode=self.mode, store=self.store, rephrase=self.rephrase)
            self._chats[name] = built = (id(blackbox), chat)
        return built[1]
