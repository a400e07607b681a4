"""The chat page's agents: one per registered model that has reference rows to question it about (the demos),
built on first use and sharing the service's LLM and database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from xplain.agent import ExplainerAgent
from xplain.agent.store import ConversationStore
from xplain.data.demo import demo_reference
from xplain.llm import LLM
from xplain.server.registry import ModelRegistry
from xplain.tools import ProbeContext


class RegistryAgents(Mapping[str, ExplainerAgent]):
    """Routes are made before the service starts, so this starts empty and `attach` gives it the service's parts."""

    def __init__(self) -> None:
        self.registry: ModelRegistry | None = None
        self.llm: LLM | None = None
        self.store: ConversationStore | None = None
        self._agents: dict[str, ExplainerAgent] = {}

    def attach(self, registry: ModelRegistry, llm: LLM, store: ConversationStore | None) -> None:
        self.registry, self.llm, self.store = registry, llm, store
        self._agents.clear()

    def _chattable(self) -> list[str]:
        if self.registry is None:
            return []
        return sorted(name for name, (registration, _) in self.registry.models.items() if registration.source.demo)

    def __iter__(self) -> Iterator[str]:
        return iter(self._chattable())

    def __len__(self) -> int:
        return len(self._chattable())

    def __getitem__(self, name: str) -> ExplainerAgent:
        if name not in self._chattable():
            raise KeyError(name)
        if name not in self._agents:
            registration, blackbox = self.registry.get(name)
            reference = demo_reference(registration.source.demo)
            context = ProbeContext(blackbox, reference.rows, reference.labels, reference.description)
            self._agents[name] = ExplainerAgent(self.llm, context, store=self.store)
        return self._agents[name]
