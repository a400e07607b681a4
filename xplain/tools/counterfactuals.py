"""The counterfactual method as an agent tool: "what would have to change for a different decision?"

Every counterfactual it reports was re-scored by the black box; the best valid one comes with a before/after
comparison the chat draws as a table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from xplain.methods.counterfactual_tabular import tabular_counterfactuals
from xplain.methods.counterfactual_text import text_counterfactuals
from xplain.tools.context import ProbeContext
from xplain.tools.registry import make_tool, register_tool, rounded

SHOWN = 3


class TextCounterfactualArgs(BaseModel):
    row: int | None = Field(None, ge=0, description="A data set row to change.")
    text: str | None = Field(None, max_length=500, description="Or a text of your own.")
    target: str | None = Field(None, max_length=60, description="The class to reach; default: any other.")


class TabularCounterfactualArgs(BaseModel):
    row: int = Field(ge=0, description="The data set row to change.")
    keep: list[str] = Field(default_factory=list, max_length=20, description="Features that must not change.")
    target: str | None = Field(None, max_length=60, description="The class to reach; default: any other.")


def _summary(explanation: Any, head: dict[str, Any], shown: list[dict[str, Any]]) -> dict[str, Any]:
    valid = [c for c in shown if c["valid"]]
    summary = {
        **head,
        "original_prediction": str(explanation.original_prediction),
        "original_probability": rounded(explanation.original_probability),
        "counterfactuals": shown,
        "valid": len(valid),
        "checked_by": "each counterfactual re-scored by the black box",
        "rounds": explanation.rounds_used,
        "blackbox_queries": explanation.blackbox_queries,
    }
    if valid:
        best = valid[0]
        before = summary["original_prediction"]
        summary["before"] = {"predicted": before, "probabilities": {before: summary["original_probability"]}}
        summary["after"] = {"predicted": best["prediction"], "probabilities": {best["prediction"]: best["probability"]}}
    return summary


@register_tool("counterfactual")
def counterfactual_tool(context: ProbeContext) -> BaseTool | None:
    if context.llm is None:
        return None
    llm = context.llm

    async def run_text(args: TextCounterfactualArgs) -> dict[str, Any]:
        if (args.row is None) == (args.text is None):
            raise ValueError("give either row or text")
        original = args.text if args.text is not None else context.row(args.row)
        result = await text_counterfactuals(llm, context.blackbox, [original], target=args.target, max_rounds=2)
        explanation = result.explanations[0]
        shown = [
            {"text": c.text, "prediction": str(c.prediction), "probability": rounded(c.probability),
             "valid": c.valid, "edit_size": c.edit_size}
            for c in explanation.counterfactuals[:SHOWN]
        ]  # fmt: skip
        head = {"row": args.row} if args.row is not None else {"text": original}
        return _summary(explanation, head, shown)

    async def run_tabular(args: TabularCounterfactualArgs) -> dict[str, Any]:
        for name in args.keep:
            context.feature_index(name)  # a clear error for an unknown feature
        row = np.asarray(context.row(args.row), dtype=np.float64)
        result = await tabular_counterfactuals(
            llm,
            context.blackbox,
            [row],
            constraints={name: {"immutable": True} for name in args.keep},
            target=args.target,
            reference=np.asarray(context.rows),
            max_rounds=2,
        )
        explanation = result.explanations[0]
        shown = [
            {"changes": {ch.feature: rounded(ch.new) for ch in c.changes}, "prediction": str(c.prediction),
             "probability": rounded(c.probability), "valid": c.valid, "edit_size": c.edit_size}
            for c in explanation.counterfactuals[:SHOWN]
        ]  # fmt: skip
        return _summary(explanation, {"row": args.row}, shown)

    description = (
        "What would have to change for the model to decide differently: the LLM proposes edited inputs and the "
        "model re-scores each; returns them with 'valid' true only where the model's label really changed."
    )
    if context.kind == "tabular":
        return make_tool("counterfactual", description, TabularCounterfactualArgs, run_tabular)
    return make_tool("counterfactual", description, TextCounterfactualArgs, run_text)
