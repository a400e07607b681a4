"""`xplain eval iprompt`: does iPrompt state the rule of tasks whose rule is known, and does its prompt work?"""

from __future__ import annotations

from xplain.evals.report import EvalTable, Size, suite
from xplain.evals.synthetic_modules import rule_tasks
from xplain.llm import LLM
from xplain.methods.iprompt import IPromptOptions, explain_dataset

SMALL = IPromptOptions(n_candidates=3, n_keep=1, n_mutations=2, n_iterations=1, n_score_examples=5, n_heldout=6, n_accuracy=1)
FULL = IPromptOptions()


@suite("iprompt")
async def run(llm: LLM, size: Size) -> EvalTable:
    small = size == "small"
    tasks = rule_tasks()
    if small:
        tasks = [t for t in tasks if t.name in ("add", "capital")]
    options = SMALL if small else FULL
    table = EvalTable(
        suite="iprompt",
        columns=["task", "rule", "best_prompt", "loglik_gain", "heldout_accuracy", "near_miss", "near_miss_accuracy",
                 "beats_near_miss", "recovered", "llm_calls", "tokens", "seconds"],
        notes={"options": options.model_dump(),
               "near_miss": "the near-miss rule with the best held-out accuracy (computed); beats_near_miss: the best "
               "prompt's held-out accuracy minus its, on the same pairs, has a 95% interval above zero"},
    )
    for task in tasks:
        inputs, outputs = zip(*task.pairs)
        result = await explain_dataset(llm, list(inputs), list(outputs), options)
        best = result.best
        usage = result.cost.llm
        table.add(
            task=task.name, rule=task.rule, best_prompt=best.prompt if best else "",
            loglik_gain=best.gain if best else None, heldout_accuracy=best.heldout_accuracy if best else None,
            near_miss=result.near_misses[0].name, near_miss_accuracy=result.near_misses[0].heldout_accuracy,
            beats_near_miss=bool(best and best.near_miss_check and best.near_miss_check.verdict == "faithful"),
            recovered=bool(best) and task.recovered(best.prompt),
            llm_calls=usage.calls, tokens=usage.prompt_tokens + usage.completion_tokens,
            seconds=round(result.cost.seconds, 2),
        )
    return table
