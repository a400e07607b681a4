"""Each result's own check, in one line: what was measured, its value, and pass / fail / inconclusive by a stated
rule. Cards, the batch report and frames all read it from here."""

from __future__ import annotations

from functools import singledispatch
from typing import Any, Literal

from pydantic import BaseModel

from xplain.methods.baselines import BaselineExplanation
from xplain.methods.checks import proportion_check
from xplain.methods.classifiers import ClassifierPrediction, FitResult
from xplain.methods.compare import ExplainerComparison
from xplain.methods.counterfactual import ExplanationBase
from xplain.methods.counterfactual_tabular import TabularCounterfactualResult
from xplain.methods.counterfactual_text import ConceptEffectResult, TextCounterfactualResult
from xplain.methods.iprompt import IPromptResult
from xplain.methods.lml_dap import LMLDAPExplanation
from xplain.methods.posthoc import PosthocExplanation
from xplain.methods.predict import PredictResult, ZeroShotResult
from xplain.methods.sasc import SASCResult
from xplain.methods.tbm import TBMExplanation

Status = Literal["pass", "fail", "inconclusive"]

#: A share (flip rate, LLM-answered rows, held-out accuracy) at or above this passes.
PASSING_SHARE = 0.5
#: Concept effects pass when at least this share of texts moves the same way as the average.
SIGN_AGREEMENT = 2 / 3


class Check(BaseModel):
    name: str
    value: str
    status: Status
    rule: str = ""


def _share(name: str, hits: int, total: int, rule: str) -> Check:
    """A rate against its passing share, shown with its Wilson interval so a rate from a few inputs reads as one."""
    found = proportion_check(hits, total)
    if found is None:
        return Check(name=name, value="nothing to measure", status="inconclusive", rule=rule)
    low, high = found.interval
    value = f"{found.estimate:.0%} ({hits}/{total}; {found.confidence:.0%} interval {low:.0%}-{high:.0%})"
    return Check(name=name, value=value, status="pass" if found.estimate >= PASSING_SHARE else "fail", rule=rule)


@singledispatch
def check(result: Any) -> Check:
    raise TypeError(f"no check known for {type(result).__name__}")


VERDICT_STATUS = {"faithful": "pass", "not faithful": "fail", "inconclusive": "inconclusive"}


def _gaps(pgi: float | None, pgu: float | None, faithfulness: Any = None) -> Check:
    rule = (
        "pass when PGI > PGU with confidence: the interval of PGI - PGU (paired over perturbations) lies above zero; "
        "inconclusive while it straddles zero"
    )
    if pgi is None or pgu is None:
        return Check(name="PGI / PGU", value="not measured", status="inconclusive", rule=rule)
    value = f"{pgi:.3f} / {pgu:.3f}"
    if faithfulness is None or faithfulness.verdict is None:  # a result saved before checks had intervals
        return Check(name="PGI / PGU", value=value, status="pass" if pgi > pgu else "fail", rule=rule)
    low, high = faithfulness.interval
    value += f" (difference {faithfulness.estimate:+.3f}, {faithfulness.confidence:.0%} interval [{low:+.3f}, {high:+.3f}], n={faithfulness.n})"
    return Check(name="PGI / PGU", value=value, status=VERDICT_STATUS[faithfulness.verdict], rule=rule)


@check.register(PosthocExplanation)
def _(result: PosthocExplanation) -> Check:
    return _gaps(result.pgi, result.pgu, result.faithfulness)


@check.register(BaselineExplanation)
def _(result: BaselineExplanation) -> Check:
    return _gaps(result.pgi, result.pgu, result.faithfulness)


@check.register(ExplainerComparison)
def _(result: ExplainerComparison) -> Check:
    """The first explainer's check (the reference); the card lists every explainer's beside it."""
    return check(result.explanations[0]) if result.explanations else _gaps(None, None)


@check.register(ExplanationBase)
def _(result: ExplanationBase) -> Check:
    valid = sum(c.valid for c in result.counterfactuals)
    rule = "pass when the black box confirms at least one counterfactual"
    value = f"{valid} of {len(result.counterfactuals)} candidates confirmed"
    return Check(name="flip", value=value, status="pass" if valid else "fail", rule=rule)


@check.register(TabularCounterfactualResult)
@check.register(TextCounterfactualResult)
def _(result: TabularCounterfactualResult | TextCounterfactualResult) -> Check:
    flipped = sum(any(c.valid for c in e.counterfactuals) for e in result.explanations)
    rule = f"share of inputs with a confirmed counterfactual; pass at {PASSING_SHARE:.0%}"
    return _share("flip rate", flipped, len(result.explanations), rule)


@check.register(ConceptEffectResult)
def _(result: ConceptEffectResult) -> Check:
    rule = f"share of texts whose effect has the average's sign; pass at {SIGN_AGREEMENT:.0%}, needs 2 texts"
    effects = [i.effect for i in result.individual if i.effect is not None]
    if result.average_effect is None or len(effects) < 2:
        return Check(name="sign agreement", value=f"{len(effects)} texts measured", status="inconclusive", rule=rule)
    agree = sum((e > 0) == (result.average_effect > 0) for e in effects if e != 0)
    share = agree / len(effects)
    return Check(
        name="sign agreement",
        value=f"{share:.0%} of {len(effects)} texts",
        status="pass" if share >= SIGN_AGREEMENT else "fail",
        rule=rule,
    )


@check.register(SASCResult)
def _(result: SASCResult) -> Check:
    rule = "pass when texts written to match the explanation drive the module above unrelated ones (score > 0)"
    best = result.best
    if best is None or best.score is None:
        return Check(name="score", value="not scored", status="inconclusive", rule=rule)
    return Check(name="score", value=f"{best.score:.2f} std", status="pass" if best.score > 0 else "fail", rule=rule)


@check.register(IPromptResult)
def _(result: IPromptResult) -> Check:
    rule = f"exact-match accuracy of the best measured prompt on held-out pairs; pass at {PASSING_SHARE:.0%}"
    measured = [c for c in result.candidates if c.heldout_accuracy is not None]
    if not measured:
        return Check(name="held-out accuracy", value="not measured", status="inconclusive", rule=rule)
    accuracy = measured[0].heldout_accuracy
    return Check(
        name="held-out accuracy",
        value=f"{accuracy:.0%} of {result.n_heldout}",
        status="pass" if accuracy >= PASSING_SHARE else "fail",
        rule=rule,
    )


@check.register(LMLDAPExplanation)
def _(result: LMLDAPExplanation) -> Check:
    answered = sum(not p.fallback for p in result.predictions)
    rule = f"share of rows labelled by the LLM rather than the retrieved rows' majority; pass at {PASSING_SHARE:.0%}"
    return _share("LLM answered", answered, len(result.predictions), rule)


@check.register(TBMExplanation)
def _(result: TBMExplanation) -> Check:
    active = sum(c.weight != 0 for c in result.concepts)
    rule = "pass when the linear layer uses at least one concept (fail: it predicts from the bias alone)"
    return Check(
        name="active concepts",
        value=f"{active} of {len(result.concepts)}",
        status="pass" if active else "fail",
        rule=rule,
    )


@check.register(PredictResult)
def _(result: PredictResult) -> Check:
    return Check(name="prediction", value="the black box's own answer", status="pass", rule="nothing to verify")


@check.register(ZeroShotResult)
def _(result: ZeroShotResult) -> Check:
    rule = "pass when the LLM's own label is the black box's (a second opinion, not a proof)"
    return Check(name="agreement", value="agrees" if result.agrees else "disagrees", status="pass" if result.agrees else "fail", rule=rule)


@check.register(FitResult)
def _(result: FitResult) -> Check:
    rule = "pass when training accuracy beats always answering the most common class"
    value = f"{result.train_accuracy:.0%} on {result.n_train} training examples"
    return Check(name="training accuracy", value=value, status="pass" if result.train_accuracy > 1 / len(result.classes) else "fail", rule=rule)


@check.register(ClassifierPrediction)
def _(result: ClassifierPrediction) -> Check:
    if result.lml is not None:
        rule = "pass when the LLM labelled the row itself (not the retrieved rows' majority)"
        return Check(name="LLM label", value="fallback" if result.lml.fallback else "LLM", status="fail" if result.lml.fallback else "pass", rule=rule)
    rule = "pass when at least one concept contributes"
    named = sum(c.contribution != 0 for c in result.tbm.contributions)
    return Check(name="concepts", value=f"{named} contributing", status="pass" if named else "fail", rule=rule)
