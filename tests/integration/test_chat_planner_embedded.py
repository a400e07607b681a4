"""The grounded planner on the embedded model (SmolLM2-135M through llama.cpp): questions whose operation the rules
cannot settle are chosen by one short scoring call, and every answer carries only numbers its tool returned. The
model is weak, so the test asserts on structure (a closed choice, one call, a grounded templated answer) and on
one easy choice, never on prose."""

from __future__ import annotations

import pytest

from xplain.agent import GroundedPlanner
from xplain.methods.catalog import catalog
from xplain.tools import demo_context

pytestmark = pytest.mark.integration


async def test_the_embedded_model_only_chooses_and_the_answer_is_grounded(embedded_llm):
    planner = GroundedPlanner(embedded_llm, demo_context("breast_cancer"))

    ruled = await planner.ask("e", "Why did the model predict this for row 3?")
    assert ruled.plan["chosen_by"] == "rules" and ruled.usage.calls == 0 and ruled.ungrounded_numbers == []

    chosen = await planner.ask("e2", "Tell me something about this classifier.")  # no cue: the LLM chooses
    assert chosen.plan["chosen_by"] == "llm" and chosen.plan["operation"] in planner.operations
    # the question's scores and, once per planner, the question-free ones; nothing generated
    assert chosen.usage.calls == 2 and chosen.usage.completion_tokens == 0
    assert chosen.ungrounded_numbers == [] and "{" not in chosen.text
    again = await planner.ask("e3", "Anything odd about this model?")  # "about it?" alone is declined: no subject
    assert again.plan["chosen_by"] == "llm"
    if not catalog()[again.plan["operation"]].uses_llm:  # an LLM method chosen makes its own calls besides
        assert again.usage.calls == 1 and again.usage.completion_tokens == 0


async def test_rephrasing_on_the_embedded_model_keeps_the_template_unless_every_number_survives(embedded_llm):
    planner = GroundedPlanner(embedded_llm, demo_context("breast_cancer"), rephrase=True)
    answer = await planner.ask("r", "How accurate is the model?")
    assert answer.ungrounded_numbers == []
    assert "94.4%" in answer.text  # the template's number survives whichever text was kept
