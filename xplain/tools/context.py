"""What the chat's tools work on: one black box and the rows it is questioned about, with the LLM its method tools
call."""

from __future__ import annotations

from dataclasses import dataclass

from xplain.data.demo import DEMO_MODELS, demo_blackbox, demo_reference
from xplain.llm import LLM
from xplain.methods.reference_data import ReferenceData

DEMOS = tuple(DEMO_MODELS)


@dataclass
class ProbeContext(ReferenceData):
    """The model and its data the chat is about; `llm` is what its LLM methods (counterfactuals, posthoc...) call."""

    llm: LLM | None = None


def demo_context(name: str) -> ProbeContext:
    """A built-in demo model (`xplain.data.demo`), questioned about its held-out rows."""
    reference = demo_reference(name)
    return ProbeContext(demo_blackbox(name), reference.rows, reference.labels, reference.description)
