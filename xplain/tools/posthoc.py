"""The LLM post-hoc explainer as an agent tool: "which features drive this prediction?", with the model's own
check of the answer (PGI / PGU) beside it."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from xplain.methods.posthoc import PosthocOptions, explain_tabular
from xplain.tools.context import ProbeContext
from xplain.tools.registry import make_tool, register_tool, rounded


class PosthocArgs(BaseModel):
    row: int = Field(ge=0, description="The data set row to explain.")
    strategy: Literal["perturbation", "prediction", "instruction", "explanation"] = Field(
        "perturbation", description="How the LLM is shown the model's behaviour around the row."
    )
    k: int = Field(4, ge=1, le=8, description="How many top features to name.")


@register_tool("explain_prediction")
def posthoc_tool(context: ProbeContext) -> BaseTool | None:
    if context.llm is None or context.kind != "tabular":
        return None
    llm = context.llm

    async def run(args: PosthocArgs) -> dict[str, Any]:
        row = np.asarray(context.row(args.row), dtype=np.float64)
        options = PosthocOptions(strategy=args.strategy, k=min(args.k, len(context.feature_names)))
        [explanation] = await explain_tabular(llm, context.blackbox, row[None, :], np.asarray(context.rows), options)
        if not explanation.features:
            raise ValueError(f"the LLM gave no usable ranking: {explanation.error}")
        ranked = [(f.feature, f.direction, f.rationale) for f in explanation.features]
        return {
            "row": args.row,
            "predicted": explanation.predicted_label,
            "features": [{"feature": f, "direction": d, "why": why} for f, d, why in ranked],
            "check": {
                "pgi": rounded(explanation.pgi) if explanation.pgi is not None else None,
                "pgu": rounded(explanation.pgu) if explanation.pgu is not None else None,
                "reading": "faithful if PGI (perturbing the named features) exceeds PGU (perturbing the others)",
            },
        }  # no chart: the LLM gives ranks and directions, not effect sizes (feature_effect draws signed effects)

    description = (
        "Why the model predicts what it does for one row: the LLM names the top features with a direction and a "
        "reason, and the model checks the answer (PGI should exceed PGU)."
    )
    return make_tool("explain_prediction", description, PosthocArgs, run)
