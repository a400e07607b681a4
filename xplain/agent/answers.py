"""Answers written from templates filled with a tool's own numbers: the planner's answer, and the agent's floor when
the LLM stops without one. A number enters an answer only as the tool returned it, so grounding holds by design."""

from __future__ import annotations

import json
import tomllib
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any

from langchain_core.messages import ToolMessage

MAX_LISTED = 5


@lru_cache
def _templates() -> dict[str, str]:
    text = (resources.files("xplain.agent") / "answers.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)["templates"]


def templates_ref() -> str:
    text = (resources.files("xplain.agent") / "answers.toml").read_text(encoding="utf-8")
    return f"agent/answers@{tomllib.loads(text)['version']}"


def _fill(name: str, **values: Any) -> str:
    return Template(_templates()[name]).substitute({k: str(v) for k, v in values.items()})


def tool_payload(message: ToolMessage) -> tuple[dict[str, Any] | None, str | None]:
    """(result, error) of a tool message: the artifact when the tool gave one, else its JSON content; a tool that
    failed (status 'error' or an `{"error": ...}` body) gives its message as the error."""
    artifact = getattr(message, "artifact", None)
    data: Any = artifact.model_dump(mode="json") if hasattr(artifact, "model_dump") else artifact
    if data is None:
        try:
            data = json.loads(str(message.text))
        except ValueError:
            data = None
    if isinstance(data, dict) and set(data) == {"error"}:
        return None, str(data["error"])
    if getattr(message, "status", "success") == "error":
        return None, str(message.text)
    if not isinstance(data, dict):
        return None, f"the tool returned no result I can read: {str(message.text)[:200]}"
    return data, None


def subject(result: dict[str, Any]) -> str:
    if result.get("row") is not None:
        return f"row {result['row']}"
    if result.get("text"):
        text = str(result["text"])
        return f'the text "{text[:80]}{"…" if len(text) > 80 else ""}"'
    return "this input"


def _signed(effects: dict[str, float]) -> str:
    listed = list(effects.items())[:MAX_LISTED]
    return ", ".join(f"{name} {'+' if value > 0 else ''}{value}" for name, value in listed)


def _check(check: dict[str, Any] | None) -> str:
    if not check or check.get("pgi") is None or check.get("pgu") is None:
        return ""
    verdict = VERDICT_WORDS.get(check.get("verdict") or "", "holds up" if check["pgi"] > check["pgu"] else "is doubtful")
    interval = check.get("interval")
    sure = f" (interval of the difference {interval[0]} to {interval[1]})" if interval else ""
    return (
        f" Check: perturbing the top {check['top_k']} moves the prediction by {check['pgi']} (PGI) against "
        f"{check['pgu']} for the others (PGU){sure}, so this ranking {verdict}."
    )


VERDICT_WORDS = {
    "faithful": "holds up",
    "not faithful": "is not borne out",
    "inconclusive": "is not decided either way by the draws made",
}


def _truth(result: dict[str, Any]) -> str:
    return f" The true label is {result['true_label']}." if result.get("true_label") is not None else ""


def _probability_of(side: dict[str, Any]) -> Any:
    probabilities = side.get("probabilities") or {}
    return probabilities.get(side.get("predicted"), "")


def render_answer(tool: str, result: dict[str, Any], *, question_kind: str | None = None) -> str:
    """The templated answer for `tool`'s result; `question_kind` picks between answers one tool gives
    (`model_score`: 'accuracy' or 'mistakes')."""
    renderer = RENDERERS.get(tool)
    if renderer is None:
        return _generic(tool, result)
    try:
        return renderer(result, question_kind)
    except (KeyError, TypeError, IndexError, AttributeError):  # a result shaped otherwise than its template expects
        return _generic(tool, result)


def render_failure(tool: str, error: str) -> str:
    return _fill("failed", tool=tool, error=error)


def _predict(r: dict[str, Any], _: str | None) -> str:
    return _fill(
        "predict", label=r["predicted"], subject=subject(r), probability=r["probabilities"][r["predicted"]],
        truth=_truth(r),
    )  # fmt: skip


def _feature_effect(r: dict[str, Any], _: str | None) -> str:
    return _fill(
        "feature_effect", label=r["predicted"], subject=subject(r), probability=r["probability"],
        perturbation=r["perturbation"].replace("feature set", "set").replace("word removed", "removed"),
        effects=_signed(r["effects"]), check=_check(r.get("check")),
    )  # fmt: skip


def _what_if(r: dict[str, Any], _: str | None) -> str:
    if r.get("changes"):
        changes = ", ".join(f"setting {f} from {c['from']} to {c['to']}" for f, c in r["changes"].items())
    else:
        changes = f'editing the text to "{str(r.get("edited_text", ""))[:120]}"'
    before, after = r["before"], r["after"]
    if r.get("label_changed"):
        outcome = (
            f"changes from {before['predicted']} (probability {_probability_of(before)}) to {after['predicted']} "
            f"(probability {_probability_of(after)})"
        )
    else:
        label = before["predicted"]
        outcome = (
            f"stays {label}, with P({label}) going from {_probability_of(before)} to "
            f"{after['probabilities'].get(label, '')}"
        )
    return _fill("what_if", subject=subject(r), changes=changes, outcome=outcome)


def _counterfactual(r: dict[str, Any], _: str | None) -> str:
    shown = r.get("counterfactuals") or []
    valid = [c for c in shown if c.get("valid")]
    common = {"subject": subject(r), "label": r["original_prediction"], "probability": _said(r["original_probability"])}
    if "already" in str(r.get("stopped_by", "")):
        return _fill("counterfactual_already", **common)
    if not valid:
        return _fill("counterfactual_none", tried=len(shown), **common)
    best = valid[0]
    if "changes" in best:  # a row: [{feature, old, new}]
        edit = "setting " + ", ".join(
            f"{c['feature']} from {_said(c['old'])} to {_said(c['new'])}" for c in best["changes"]
        )
    else:
        edit = f'rewriting it as "{str(best.get("text", ""))[:160]}"'
    found = (
        f"The smallest change found that flips it: {edit} gives {best['prediction']} "
        f"(probability {_said(best['probability'])}), re-checked by the model."
    )
    return _fill("counterfactual", found=found, **common)


def _similar(r: dict[str, Any], _: str | None) -> str:
    neighbours = []
    for n in r["neighbours"][:MAX_LISTED]:
        truth = f", true {n['true_label']}" if "true_label" in n else ""
        neighbours.append(f"row {n['row']} (distance {n['distance']}, predicted {n['predicted']}{truth})")
    return _fill(
        "similar_rows", subject=subject(r), metric=r.get("distance", ""), neighbours="; ".join(neighbours) or "none"
    )


def _score(r: dict[str, Any], kind: str | None) -> str:
    if kind == "mistakes":
        examples = "; ".join(
            f"row {m['row']} (predicted {m['predicted']}, true {m['true_label']})" for m in r["mistake_examples"]
        )
        return _fill("mistakes", mistakes=r["mistakes"], rows=r["rows"], examples=f" For example: {examples}." if examples else "")
    return _fill("accuracy", rows=r["rows"], accuracy=f"{100 * r['accuracy']:.1f}%", mistakes=r["mistakes"])


def _global(r: dict[str, Any], _: str | None) -> str:
    if "curve" in r:
        first, last = r["curve"][0], r["curve"][-1]
        rise = last["mean_probability"] - first["mean_probability"]
        trend = "rising" if rise > 0 else "falling" if rise < 0 else "flat"
        return _fill(
            "global_curve", feature=r["feature"], low=first["value"], high=last["value"],
            p_low=first["mean_probability"], p_high=last["mean_probability"], trend=trend, **{"class": r["class"]},
        )  # fmt: skip
    return _fill("global_effects", perturbation=r["perturbation"], effects=_signed(r["effects"]), **{"class": r["class"]})


def _describe(r: dict[str, Any], _: str | None) -> str:
    if "values" in r:
        values = r["values"]
        shown = (
            ", ".join(f"{k} {v}" for k, v in list(values.items())[:12]) + (" …" if len(values) > 12 else "")
            if isinstance(values, dict)
            else f'"{str(values)[:300]}"'
        )
        return _fill("describe_row", subject=subject(r).capitalize(), values=shown, truth=_truth(r))
    if "mean" in r:
        return _fill("describe_feature", **{k: r[k] for k in ("feature", "mean", "median", "min", "max", "q25", "q75", "std")})
    features = f", {r.get('n_features', len(r['features']))} features ({', '.join(r['features'][:8])}{' …' if len(r['features']) > 8 else ''})" if r.get("features") else ""
    counts = r.get("label_counts")
    counts_text = f" Label counts: {', '.join(f'{k} {v}' for k, v in counts.items())}." if counts else ""
    return _fill("describe_overview", rows=r["rows"], features=features, classes=", ".join(r["classes"]), counts=counts_text)


def _surrogate(r: dict[str, Any], _: str | None) -> str:
    rules = "; ".join(f"if {rule['if']} then {rule['then']} ({rule['rows']} rows)" for rule in r["rules"][:4])
    return _fill("surrogate_rule", fidelity=r["fidelity"], checked_on=r["checked_on"], rules=rules)


def _posthoc(r: dict[str, Any], _: str | None) -> str:
    features = r.get("features") or []
    named = ", ".join(
        f"{f['feature']} ({f.get('direction', '')})" if isinstance(f, dict) else str(f) for f in features[:MAX_LISTED]
    )
    check = r.get("check") or {"pgi": r.get("pgi"), "pgu": r.get("pgu"), "top_k": len(features)}
    check = {**check, "top_k": check.get("top_k", len(features))}
    return _fill("posthoc", subject=subject(r), features=named or "none", check=_check(check))


def _rule(r: dict[str, Any], _: str | None) -> str:
    best = r["rules"][0]
    return _fill("describe_rule", rule=best["rule"], agreement=best["heldout_agreement"])


def render_declared(tool: str, template: str | None, result: dict[str, Any]) -> str:
    """The answer a catalog method declares (`ChatForm.answer`), filled with its result's top-level values (floats
    as the tool showed them to the model, lists by their first items) and `$subject`; the generic answer where it
    declares none (its tool's own renderer, if any) or names a value the result lacks."""
    if template is None:
        return render_answer(tool, result)
    values = {key: _said(value) for key, value in result.items()}
    try:
        return Template(template).substitute({**values, "subject": subject(result)})
    except (KeyError, ValueError):
        return _generic(tool, result)


def _said(value: Any) -> str:
    if isinstance(value, float):
        return str(round(value, 4))
    if isinstance(value, list):
        return ", ".join(_said(item) for item in value[:MAX_LISTED]) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_said(v)}" for k, v in list(value.items())[:MAX_LISTED])
    return str(value)


def _generic(tool: str, result: dict[str, Any]) -> str:
    """A tool with no template of its own: its top-level scalar fields, as words (never the raw JSON)."""
    scalars = [f"{k.replace('_', ' ')} {v}" for k, v in result.items() if isinstance(v, str | int | float) and k != "plot"]
    return f"The {tool} tool reports: {'; '.join(scalars[:8]) or 'a result with no single value to quote'}."


RENDERERS = {
    "predict": _predict,
    "feature_effect": _feature_effect,
    "what_if": _what_if,
    "counterfactual": _counterfactual,
    "similar_rows": _similar,
    "model_score": _score,
    "global_effects": _global,
    "describe_data": _describe,
    "surrogate_rule": _surrogate,
    "posthoc": _posthoc,
    "describe_rule": _rule,
}
