"""A surrogate rule: a small decision tree fitted to the black box's own labels on its data, read as `if ... then`
rules, with its fidelity (how often it gives the model's label) on rows it was not fitted on."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xplain.errors import InvalidInput
from xplain.methods.base import MethodResult, measure_cost
from xplain.methods.catalog import ChatForm, Method, MethodContext, register
from xplain.methods.reference_data import ReferenceData, rounded

MAX_RULES = 8
#: A tree fitted to fewer rows than this describes them, not the model: "always churn" from one row, fidelity 1.
MIN_FIT_ROWS = 8
HELD_OUT_FROM = 20  # with fewer rows the tree is checked on the rows it was fitted on, and says so


class SurrogateRuleOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(3, ge=1, le=4, description="Depth of the rule tree (more = more detail, harder to read).")


class Rule(BaseModel):
    condition: str = Field(description="The conditions of a leaf, joined by 'and' ('always' for a single leaf).")
    label: str = Field(description="The label the tree gives there.")
    rows: int = Field(description="Fitting rows that reach the leaf.")


class SurrogateRuleResult(MethodResult):
    method: str = "surrogate_rule"
    rules: list[Rule] = Field(description="The tree's leaves as rules, largest first.")
    fidelity: float = Field(description="Share of the checked rows where the rule gives the model's own label.")
    checked_rows: int = Field(description="How many rows the fidelity was measured on.")
    held_out: bool = Field(description="Whether those rows were held out of the fitting (with fewer than 20 rows, not).")


def _rule_features(data: ReferenceData) -> tuple[np.ndarray, list[Any]]:
    """What the rule tree splits on, each with how to say its two sides: a number (or ordinal) by a threshold,
    a boolean as itself, a category by one indicator per seen value (`workclass = Private` or not)."""
    rows = np.asarray(data.rows)
    features, names = [], []
    for j, column in enumerate(data.schema.columns):
        name = data.feature_names[j]
        if column.kind == "categorical":
            for code in np.unique(rows[~np.isnan(rows[:, j]), j]):
                features.append((rows[:, j] == code).astype(float))
                value = data.value(j, code)
                names.append((f"{name} != {value}", f"{name} = {value}"))
        elif column.kind == "boolean":
            features.append(rows[:, j])
            names.append((f"{name} = False", f"{name} = True"))
        else:
            features.append(rows[:, j])
            names.append(j)
    return np.column_stack(features), names


def _threshold_sides(data: ReferenceData, column: int, threshold: float) -> tuple[str, str]:
    """`age <= 39.5` / `age > 39.5`; an ordinal by its values: `grade <= mid` / `grade >= high`."""
    name = data.feature_names[column]
    if data.schema.columns[column].kind == "ordinal":
        below, above = np.floor(threshold), np.ceil(threshold)
        return f"{name} <= {data.value(column, below)}", f"{name} >= {data.value(column, above)}"
    return f"{name} <= {rounded(threshold, 3)}", f"{name} > {rounded(threshold, 3)}"


def _tree_rules(tree: Any, names: list[Any], data: ReferenceData) -> list[Rule]:
    """Each leaf of a fitted tree as `if <conditions> then <label>`, largest leaves first."""
    inner = tree.tree_
    rules = []

    def walk(node: int, conditions: list[str]) -> None:
        if inner.children_left[node] == -1:
            label = str(tree.classes_[int(np.argmax(inner.value[node][0]))])
            rules.append(Rule(condition=" and ".join(conditions) or "always", label=label,
                              rows=int(inner.n_node_samples[node])))  # fmt: skip
            return
        name, threshold = names[inner.feature[node]], inner.threshold[node]
        if isinstance(name, tuple):  # an indicator's or boolean's two sides, said in the user's values
            low, high = name
        elif data.kind == "tabular":
            low, high = _threshold_sides(data, name, threshold)
        else:
            low, high = f"the text lacks '{name}'", f"the text contains '{name}'"
        walk(inner.children_left[node], [*conditions, low])
        walk(inner.children_right[node], [*conditions, high])

    walk(0, [])
    return sorted(rules, key=lambda rule: -rule.rows)


async def surrogate_rule(data: ReferenceData, depth: int) -> SurrogateRuleResult:
    from sklearn.tree import DecisionTreeClassifier

    labels = np.asarray(await data.blackbox.apredict(data.rows)).astype(str)
    if data.kind == "tabular":
        features, names = _rule_features(data)
    else:
        from sklearn.feature_extraction.text import CountVectorizer

        from xplain.methods.words import WORD

        vectorizer = CountVectorizer(binary=True, min_df=2, max_features=500, token_pattern=WORD.pattern)
        features = vectorizer.fit_transform([str(t) for t in data.rows]).toarray()
        names = list(vectorizer.get_feature_names_out())
    half = len(labels) // 2 if len(labels) >= HELD_OUT_FROM else len(labels)
    tree = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(features[:half], labels[:half])
    held_out = features[half:] if half < len(labels) else features
    truth = labels[half:] if half < len(labels) else labels
    return SurrogateRuleResult(
        rules=_tree_rules(tree, names, data)[:MAX_RULES],
        fidelity=rounded(np.mean(tree.predict(held_out) == truth)),
        checked_rows=len(truth),
        held_out=half < len(labels),
    )


async def _surrogate_rule(ctx: MethodContext, items: list[Any], options: SurrogateRuleOptions) -> SurrogateRuleResult:
    if 0 < len(items) < MIN_FIT_ROWS:
        raise InvalidInput(
            f"surrogate_rule fits a tree to at least {MIN_FIT_ROWS} rows and got {len(items)}: send more, or none "
            "to use the model's reference rows"
        )
    data = ReferenceData.for_set(ctx, items, what="surrogate_rule")
    with measure_cost(ctx.blackbox) as meter:
        result = await surrogate_rule(data, options.depth)
    result.cost = meter.cost
    return result


def _answer(r: dict[str, Any]) -> str:
    rules = "; ".join(f"if {rule['condition']} then {rule['label']} ({rule['rows']} rows)" for rule in r["rules"][:4])
    return (
        f"A decision tree fitted to the model's own labels agrees with the model on {r['fidelity']} of "
        f"{r['checked_rows']} {'held-out' if r['held_out'] else 'fitting'} rows. Its main rules: {rules}."
    )


register(
    Method(
        name="surrogate_rule",
        description="A readable rule for how the model decides: a small decision tree fitted to the model's own "
        "labels on its data, with its fidelity (how often it agrees with the model) on rows it was not fitted on.",
        inputs=("tabular_row", "text"),
        options=SurrogateRuleOptions,
        result=SurrogateRuleResult,
        run=_surrogate_rule,
        unit="set",
        uses_llm=False,
        min_inputs=0,
        chat=ChatForm(
            " a simple rule that describes how the model decides.",
            (
                (r"\brules?\b|\bdecision tree\b|\bsurrogate\b|\blogic\b", 3),
                (r"\bhow does (?:the )?model (?:decide|work|think|make (?:its )?decisions)\b", 3),
                (r"\bin (?:plain|simple) (?:words|terms)\b|\bsimple description\b|"
                 r"\bsummari[sz]e (?:how )?(?:the )?model\b", 2.5),
            ),
            _answer,
        ),
    )
)
