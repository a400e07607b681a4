"""What the agent's tools work on: one black box and the rows it is questioned about."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xplain.blackbox import BlackBox
from xplain.blackbox.schema import TableSchema, numeric_schema
from xplain.llm import LLM
from xplain.data.demo import DEMO_MODELS, demo_blackbox, demo_reference

DEMOS = tuple(DEMO_MODELS)


@dataclass
class ProbeContext:
    """A black box plus reference data: a table (tabular kind) or a list of texts (text kind).

    `labels` are the true labels of the rows, when known; they let the score/mistakes probe compare.
    """

    blackbox: BlackBox
    rows: np.ndarray | list[str]
    labels: np.ndarray | None = None
    description: str = ""
    #: The LLM that method tools (counterfactuals, ...) call; probes don't need one. The agent sets it.
    llm: LLM | None = None

    def __post_init__(self) -> None:
        if self.blackbox.kind == "module":
            raise ValueError("the chat tools question classifiers; a 'module' black box (text -> float) is not one")
        if self.blackbox.kind == "tabular":
            self.rows = np.asarray(self.rows, dtype=np.float64)
            names = self.blackbox.feature_names
            if self.rows.ndim != 2 or (names is not None and self.rows.shape[1] != len(names)):
                raise ValueError(
                    f"tabular rows must be a 2-D table with one column per feature ({len(names or [])}), "
                    f"got shape {self.rows.shape}"
                )
        elif not all(isinstance(text, str) for text in self.rows):
            raise ValueError("a text black box needs its reference rows as a list of strings")
        if len(self.rows) == 0:
            raise ValueError("the reference data is empty: give at least one row")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if len(self.labels) != len(self.rows):
                raise ValueError(f"{len(self.labels)} labels for {len(self.rows)} rows; give one label per row")

    @property
    def kind(self) -> Literal["tabular", "text"]:
        return "tabular" if self.blackbox.kind == "tabular" else "text"

    @property
    def feature_names(self) -> list[str]:
        if self.blackbox.feature_names is not None:
            return self.blackbox.feature_names
        return [f"x{i}" for i in range(np.shape(self.rows)[1])]

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in (self.blackbox.classes_ if self.blackbox.classes_ is not None else [])]

    @property
    def schema(self) -> TableSchema:
        """The table's columns: the black box's schema, or plain numbers where it has none."""
        return self.blackbox.schema or numeric_schema(self.feature_names)

    def value(self, column: int, code: float) -> Any:
        """A table value as the user holds it (the rows here are encoded, see `xplain.blackbox.schema`): a
        category or boolean as itself, a number rounded, None where missing. Every probe shows values through
        this, so none shows a category code."""
        [value] = self.schema.columns[column].decode(np.array([code], dtype=np.float64))
        return round(value, 4) if isinstance(value, float) else value

    def values(self, row: np.ndarray) -> dict[str, Any]:
        """A whole encoded row in the user's own terms, keyed by column name."""
        return {name: self.value(j, code) for j, (name, code) in enumerate(zip(self.feature_names, row))}

    def row(self, index: int) -> np.ndarray | str:
        """Row `index` of the reference data; a clear error names the valid range."""
        if not 0 <= index < len(self.rows):
            raise ValueError(f"row {index} does not exist; rows are numbered 0 to {len(self.rows) - 1}")
        return self.rows[index]

    def feature_index(self, name: str) -> int:
        names = self.feature_names
        if name in names:
            return names.index(name)
        lowered = [n.lower() for n in names]
        if name.strip().lower() in lowered:
            return lowered.index(name.strip().lower())
        raise ValueError(f"no feature named {name!r}; features are: {', '.join(names)}")


def demo_context(name: str) -> ProbeContext:
    """A built-in demo model (`xplain.data.demo`), questioned about its held-out rows."""
    reference = demo_reference(name)
    return ProbeContext(demo_blackbox(name), reference.rows, reference.labels, reference.description)
