"""`xplain eval sasc`: does SASC name the concept of modules built to respond to one concept?"""

from __future__ import annotations

from xplain.blackbox import from_callable
from xplain.evals.report import EvalTable, Size, suite
from xplain.evals.synthetic_modules import (
    SIMILARITY_THRESHOLD,
    embedding_modules,
    embeddings_available,
    keyword_modules,
    similarity,
)
from xplain.llm import LLM
from xplain.methods.ngrams import default_corpus
from xplain.methods.sasc import SASCOptions, explain_module

SMALL = SASCOptions(top_ngrams=30, n_candidates=2, subset_size=15, n_texts=3, texts_max_tokens=120)
FULL = SASCOptions()


@suite("sasc")
async def run(llm: LLM, size: Size) -> EvalTable:
    small = size == "small"
    modules = keyword_modules() + embedding_modules()
    if small:
        modules = [modules[0], modules[-1]]
    corpus = default_corpus(300 if small else 2000)
    options = SMALL if small else FULL
    table = EvalTable(
        suite="sasc",
        columns=["module", "concept", "explanation", "score", "near_miss_gap", "near_miss_ci", "keyword_hit",
                 "similarity", "recovered", "llm_calls", "tokens", "seconds"],
        notes={"near_miss": "the best explanation's judged fit on the module's top corpus texts minus on their near "
               "misses (nats), with its 95% Welch interval", "similarity_threshold": SIMILARITY_THRESHOLD, "embeddings": embeddings_available(),
               "corpus_sentences": len(corpus), "options": options.model_dump()},
    )
    for module in modules:
        result = await explain_module(llm, from_callable(module.function, kind="module", name=module.name), corpus, options)
        best = result.best
        explanation = best.explanation if best else ""
        hit = module.recovered(explanation)
        sim = similarity(explanation, module.concept) if (best and embeddings_available()) else None
        usage = result.cost.llm
        table.add(
            module=module.name, concept=module.concept, explanation=explanation,
            score=best.score if best else None, keyword_hit=hit,
            near_miss_gap=best.near_miss_check.estimate if best and best.near_miss_check else None,
            near_miss_ci=_interval(best.near_miss_check) if best and best.near_miss_check else None, similarity=sim,
            recovered=hit or (sim is not None and sim >= SIMILARITY_THRESHOLD),
            llm_calls=usage.calls, tokens=usage.prompt_tokens + usage.completion_tokens,
            seconds=round(result.cost.seconds, 2),
        )
    return table


def _interval(check) -> str:
    low, high = check.interval
    return f"[{low:.2f}, {high:.2f}]"
