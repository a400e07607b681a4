"""Seconds per chat answer on the embedded model: the grounded planner against the tool-calling agent, same
questions, same model, same process. Prints each answer's seconds and LLM calls, and the ratio agent / planner
(how many times faster the planner answers). Target: the planner's median answer under 10 s on 2 cores.

    python bench/chat_answer.py [--model breast_cancer] [--agent-questions 1]

The agent is slow on the 135M model (minutes per answer, as the issue reports), so by default it answers only the
first question; the planner answers all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from rich.console import Console
from rich.table import Table

from xplain.agent import ExplainerAgent, GroundedPlanner
from xplain.llm import make_llm
from xplain.settings import Settings
from xplain.tools import demo_context

QUESTIONS = [
    "Why did the model predict this for row 3?",
    "What if mean radius doubled?",
    "and for row 5?",
    "Tell me something about this classifier.",  # no cue: the LLM chooses
]


async def main(model: str, agent_questions: int) -> None:
    llm = make_llm(Settings(llm_backend="llamacpp", cache_enabled=False))
    await llm.check()
    table = Table("question", "planner s", "planner LLM calls", "agent s", "agent LLM calls", "agent / planner",
                  title=f"xplain chat answers on {llm.name}")  # fmt: skip
    planner = GroundedPlanner(llm, demo_context(model))
    agent = ExplainerAgent(llm, demo_context(model), max_steps=3)
    planner_seconds = []
    for i, question in enumerate(QUESTIONS):
        planned = await planner.ask("bench", question)
        planner_seconds.append(planned.seconds)
        cells = [question, f"{planned.seconds:.2f}", str(planned.usage.calls), "", "", ""]
        if i < agent_questions:
            answered = await agent.ask("bench", question)
            ratio = answered.seconds / max(planned.seconds, 1e-3)
            cells[3:] = [f"{answered.seconds:.2f}", str(answered.usage.calls), f"{ratio:.0f}x"]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"planner median seconds per answer: {statistics.median(planner_seconds):.2f} (target < 10)")
    await llm.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="breast_cancer")
    parser.add_argument("--agent-questions", type=int, default=1)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.model, arguments.agent_questions))
