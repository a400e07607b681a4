"""How the results of the methods that question the black box and its data show themselves: what-if, occlusion,
similar rows, data facts, global effects, the surrogate rule and the score — each one's card headline, check, chart
and frame, registered beside the other results' (`headline`, `check`, `chart_spec`, `to_frame`)."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from xplain.display.cards import headline
from xplain.display.charts import bar_spec, chart_spec
from xplain.display.checks import VERDICT_STATUS, Check, check
from xplain.display.frames import to_frame
from xplain.methods.checks import proportion_check
from xplain.methods.describe_data import DataDescription
from xplain.methods.global_effects import GlobalEffectsResult
from xplain.methods.model_score import ModelScoreResult
from xplain.methods.occlusion import OcclusionResult
from xplain.methods.similar_rows import SimilarRowsResult
from xplain.methods.surrogate_rule import SurrogateRuleResult
from xplain.methods.what_if import WhatIfResult

#: A surrogate rule passes when it gives the model's label on at least this share of held-out rows, with confidence.
FIDELITY = 0.8
READ = "nothing to verify: read from the black box and the data"


def _read(name: str, value: str) -> Check:
    return Check(name=name, value=value, status="pass", rule=READ)


# -- occlusion ------------------------------------------------------------------------------------------------


@headline.register(OcclusionResult)
def _(result: OcclusionResult) -> str:
    top = ", ".join(f"{escape(name)} {value:+.3g}" for name, value in list(result.effects.items())[:4])
    return f"Predicted <b>{escape(result.predicted)}</b> (p = {result.probability:.2f}); drops when perturbed: {top}"


@check.register(OcclusionResult)
def _(result: OcclusionResult) -> Check:
    found = result.check
    rule = "pass when perturbing the top inputs moves the prediction more than the rest: PGI - PGU's interval above zero"
    if found.pgi is None or found.pgu is None:
        return Check(name="PGI / PGU", value="not measured", status="inconclusive", rule=rule)
    interval = f", interval [{found.interval[0]:+.3f}, {found.interval[1]:+.3f}]" if found.interval else ""
    value = f"{found.pgi:.3f} / {found.pgu:.3f} (top {found.top_k}{interval}, n={found.draws})"
    return Check(name="PGI / PGU", value=value, status=VERDICT_STATUS.get(found.verdict, "inconclusive"), rule=rule)


@to_frame.register(OcclusionResult)
def _(result: OcclusionResult) -> pd.DataFrame:
    rows = [{"feature": name, "effect": value, "set_to": (result.set_to or {}).get(name)} for name, value in result.effects.items()]
    return pd.DataFrame(rows, columns=["feature", "effect", "set_to"])


@chart_spec.register(OcclusionResult)
def _(result: OcclusionResult) -> dict[str, Any]:
    return bar_spec(
        f"Drop in P({result.predicted}) when each input is perturbed",
        "effect",
        list(result.effects),
        [("occlusion", list(result.effects.values()))],
        signed=True,
    )


# -- what if --------------------------------------------------------------------------------------------------


@headline.register(WhatIfResult)
def _(result: WhatIfResult) -> str:
    moved = "changes" if result.label_changed else "stays"
    return f"<b>{escape(result.before.predicted)}</b> {moved} → <b>{escape(result.after.predicted)}</b> after the edit"


@check.register(WhatIfResult)
def _(result: WhatIfResult) -> Check:
    return _read("prediction", "the black box's own answers before and after")


@to_frame.register(WhatIfResult)
def _(result: WhatIfResult) -> pd.DataFrame:
    rows = [{"class": c, "before": p, "after": result.after.probabilities.get(c)} for c, p in result.before.probabilities.items()]
    return pd.DataFrame(rows, columns=["class", "before", "after"])


@chart_spec.register(WhatIfResult)
def _(result: WhatIfResult) -> dict[str, Any]:
    classes = list(result.before.probabilities)
    series = [(name, [side.probabilities.get(c, 0.0) for c in classes]) for name, side in (("before", result.before), ("after", result.after))]
    return bar_spec("Class probabilities before and after the edit", "probability", classes, series)


# -- similar rows ---------------------------------------------------------------------------------------------


@headline.register(SimilarRowsResult)
def _(result: SimilarRowsResult) -> str:
    rows = ", ".join(f"row {n.row} ({escape(n.predicted)})" for n in result.neighbours[:5])
    return f"Nearest rows: {rows or 'none'}"


@check.register(SimilarRowsResult)
def _(result: SimilarRowsResult) -> Check:
    return _read("neighbours", f"{len(result.neighbours)} by {result.distance} distance")


@to_frame.register(SimilarRowsResult)
def _(result: SimilarRowsResult) -> pd.DataFrame:
    return pd.DataFrame([n.model_dump(exclude_none=True) for n in result.neighbours])


@chart_spec.register(SimilarRowsResult)
def _(result: SimilarRowsResult) -> dict[str, Any]:
    labels = [f"row {n.row} ({n.predicted})" for n in result.neighbours]
    return bar_spec("Distance of the nearest rows", result.distance, labels, [("distance", [n.distance for n in result.neighbours])])


# -- describe data --------------------------------------------------------------------------------------------


@headline.register(DataDescription)
def _(result: DataDescription) -> str:
    if result.overview is not None:
        found = result.overview
        return f"{found.rows} rows, classes {', '.join(escape(c) for c in found.classes)}"
    if result.summary is not None:
        return f"<b>{escape(result.summary.feature)}</b> ({escape(result.summary.kind)})"
    return f"Row {result.row}" + (f", true label <b>{escape(result.true_label)}</b>" if result.true_label else "")


@check.register(DataDescription)
def _(result: DataDescription) -> Check:
    return _read("data", "facts of the data")


@to_frame.register(DataDescription)
def _(result: DataDescription) -> pd.DataFrame:
    if result.summary is not None:
        if result.summary.counts:
            return pd.DataFrame([{"value": k, "count": v} for k, v in result.summary.counts.items()])
        return pd.DataFrame([result.summary.model_dump(exclude={"counts"})])
    if result.overview is not None:
        return pd.DataFrame([result.overview.model_dump(exclude={"features", "label_counts"})])
    values = result.values if isinstance(result.values, dict) else {"text": result.values}
    return pd.DataFrame([values])


@chart_spec.register(DataDescription)
def _(result: DataDescription) -> dict[str, Any]:
    summary, overview = result.summary, result.overview
    if summary is not None and summary.counts:
        return bar_spec(f"Values of {summary.feature}", "rows", list(summary.counts), [("rows", list(summary.counts.values()))])
    if summary is not None:
        stats = ["min", "q25", "median", "q75", "max"]
        return bar_spec(f"Spread of {summary.feature}", summary.feature, stats, [("value", [getattr(summary, s) for s in stats])])
    if overview is not None and overview.label_counts:
        counts = overview.label_counts
        return bar_spec("Rows per label", "rows", list(counts), [("rows", list(counts.values()))])
    return bar_spec("No chart for a row's values", "", [], [("value", [])])


# -- global effects -------------------------------------------------------------------------------------------


@headline.register(GlobalEffectsResult)
def _(result: GlobalEffectsResult) -> str:
    top = ", ".join(f"{escape(name)} {value:+.3g}" for name, value in list(result.effects.items())[:4])
    return f"Across the data, mean P({escape(result.class_name)}) moves with: {top}"


@check.register(GlobalEffectsResult)
def _(result: GlobalEffectsResult) -> Check:
    return _read("effects", "the black box's answers averaged over the data")


@to_frame.register(GlobalEffectsResult)
def _(result: GlobalEffectsResult) -> pd.DataFrame:
    if result.curve:
        return pd.DataFrame([point.model_dump() for point in result.curve])
    return pd.DataFrame([{"feature": name, "effect": value} for name, value in result.effects.items()])


@chart_spec.register(GlobalEffectsResult)
def _(result: GlobalEffectsResult) -> dict[str, Any]:
    if result.curve:
        return bar_spec(
            f"Mean P({result.class_name}) as {result.feature} varies",
            f"mean P({result.class_name})",
            [str(point.value) for point in result.curve],
            [("global_effects", [point.mean_probability for point in result.curve])],
        )
    return bar_spec(
        f"Change in mean P({result.class_name}) across the data",
        "effect",
        list(result.effects),
        [("global_effects", list(result.effects.values()))],
        signed=True,
    )


# -- surrogate rule -------------------------------------------------------------------------------------------


@headline.register(SurrogateRuleResult)
def _(result: SurrogateRuleResult) -> str:
    best = result.rules[0] if result.rules else None
    rule = f"if {escape(best.condition)} then <b>{escape(best.label)}</b>" if best else "no rule"
    return f"{rule} (fidelity {result.fidelity:.0%})"


@check.register(SurrogateRuleResult)
def _(result: SurrogateRuleResult) -> Check:
    rule = f"pass when the rule gives the model's label on at least {FIDELITY:.0%} of held-out rows, with confidence"
    hits = round(result.fidelity * result.checked_rows)
    found = proportion_check(hits, result.checked_rows)
    if found is None or not result.held_out:
        value = f"{result.fidelity:.0%} on the {result.checked_rows} rows it was fitted on"
        return Check(name="fidelity", value=value, status="inconclusive", rule=rule)
    low, high = found.interval
    value = f"{result.fidelity:.0%} ({hits}/{result.checked_rows} held out; interval {low:.0%}-{high:.0%})"
    status = "pass" if low >= FIDELITY else "fail" if high < FIDELITY else "inconclusive"
    return Check(name="fidelity", value=value, status=status, rule=rule)


@to_frame.register(SurrogateRuleResult)
def _(result: SurrogateRuleResult) -> pd.DataFrame:
    return pd.DataFrame([r.model_dump() for r in result.rules], columns=["condition", "label", "rows"])


@chart_spec.register(SurrogateRuleResult)
def _(result: SurrogateRuleResult) -> dict[str, Any]:
    labels = [f"{r.condition} → {r.label}" for r in result.rules]
    return bar_spec("Rows per rule", "fitting rows", labels, [("rows", [r.rows for r in result.rules])])


# -- score ----------------------------------------------------------------------------------------------------


@headline.register(ModelScoreResult)
def _(result: ModelScoreResult) -> str:
    return f"Accuracy <b>{result.accuracy:.1%}</b> on {result.rows} labelled rows ({result.mistakes} mistakes)"


@check.register(ModelScoreResult)
def _(result: ModelScoreResult) -> Check:
    found = proportion_check(result.rows - result.mistakes, result.rows)
    value = f"{result.accuracy:.1%}" + (f" (interval {found.interval[0]:.1%}-{found.interval[1]:.1%})" if found else "")
    return Check(name="accuracy", value=value, status="pass", rule="a measurement of the model against true labels, no claim to verify")


@to_frame.register(ModelScoreResult)
def _(result: ModelScoreResult) -> pd.DataFrame:
    return pd.DataFrame([m.model_dump() for m in result.mistake_examples], columns=["row", "predicted", "true_label"])


@chart_spec.register(ModelScoreResult)
def _(result: ModelScoreResult) -> dict[str, Any]:
    return bar_spec(
        f"Accuracy {result.accuracy:.1%}", "rows", ["right", "wrong"],
        [("rows", [result.rows - result.mistakes, result.mistakes])],
    )  # fmt: skip
