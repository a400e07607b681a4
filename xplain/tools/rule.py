"""iPrompt as an agent tool: a rule, in words, for how the model maps inputs to its predictions, with the rule's
own accuracy at reproducing the model's labels on rows it was not found on."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from xplain.methods.iprompt import IPromptOptions, explain_dataset
from xplain.tools.context import ProbeContext
from xplain.tools.registry import make_tool, register_tool, rounded

MAX_TEXT_CHARS = 300


class RuleArgs(BaseModel):
    rows: int = Field(24, ge=8, le=60, description="How many data set rows to learn the rule from.")


@register_tool("describe_rule")
def rule_tool(context: ProbeContext) -> BaseTool | None:
    if context.llm is None or context.kind != "text":
        return None
    llm = context.llm

    async def run(args: RuleArgs) -> dict[str, Any]:
        texts = [str(text)[:MAX_TEXT_CHARS] for text in list(context.rows)[: args.rows]]
        labels = [str(label) for label in await context.blackbox.apredict(texts)]
        options = IPromptOptions(n_candidates=3, n_iterations=1, n_heldout=max(4, args.rows // 4))
        result = await explain_dataset(llm, texts, labels, options)
        ranked = [
            {"rule": c.prompt, "fit_gain": rounded(c.gain), "heldout_agreement": c.heldout_accuracy}
            for c in result.candidates[:3]
        ]
        return {
            "rules": ranked,
            "checked_by": "heldout_agreement = share of held-out rows where following the rule gives the model's label",
            "rows_used": result.n_train,
            "heldout_rows": result.n_heldout,
        }

    description = (
        "A rule in words for how the model labels texts, found by proposing and scoring instructions on the "
        "model's own predictions; each rule comes with how often it reproduces the model on held-out rows."
    )
    return make_tool("describe_rule", description, RuleArgs, run)
