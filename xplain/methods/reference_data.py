"""A black box with rows like its data (a table, encoded, or a list of texts) and, when known, their true labels:
what the probes (what-if, occlusion, similar rows, data statistics, global effects, the surrogate rule, the score)
question, and the chat's questions are about. Values always reach the user in the user's own terms (`value`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from xplain.blackbox import BlackBox
from xplain.blackbox.schema import TableSchema, numeric_schema
from xplain.errors import InvalidInput
from xplain.validation import reference_rows, to_model_input

if TYPE_CHECKING:
    from xplain.methods.catalog import MethodContext


def rounded(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


@dataclass
class ReferenceData:
    """A black box plus reference data: a table (tabular kind) or a list of texts (text kind).

    `labels` are the true labels of the rows, when known; they let the score probe compare."""

    blackbox: BlackBox
    rows: np.ndarray | list[str]
    labels: np.ndarray | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.blackbox.kind == "module":
            raise ValueError("the probes question classifiers; a 'module' black box (text -> float) is not one")
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

    @classmethod
    def of(cls, blackbox: BlackBox, reference: Any, labels: Any = None, *, what: str = "this method") -> ReferenceData:
        """The data a method context holds (`MethodContext.reference`, `.reference_labels`); a clear error where the
        model came without rows like its data."""
        if reference is None or len(reference) == 0:
            raise InvalidInput(
                f"{what} questions the model's data, and this model came with none: use a demo model, register "
                "it with a reference file, or give `--reference` (Python: `reference=`)"
            )
        rows = [str(t) for t in reference] if blackbox.kind == "text" else reference_rows(blackbox, reference)
        return cls(blackbox, rows, labels)

    @classmethod
    def for_set(cls, ctx: MethodContext, items: list[Any], *, what: str) -> ReferenceData:
        """The data a set probe questions: the inputs given (rows or texts, unlabelled), else the model's reference
        rows with their labels."""
        if not items:
            return cls.of(ctx.blackbox, ctx.reference, ctx.reference_labels, what=what)
        return cls(ctx.blackbox, [to_model_input(ctx.blackbox, item) for item in items])

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
            raise InvalidInput(f"row {index} does not exist; rows are numbered 0 to {len(self.rows) - 1}")
        return self.rows[index]

    def as_input(self, index: int) -> Any:
        """Row `index` as a user would send it to a method: a text, or an object of the columns' own values
        (unrounded, so that the method sees exactly this row)."""
        row = self.row(index)
        if self.kind == "text":
            return row
        return {
            name: column.decode(np.array([code], dtype=np.float64))[0]
            for name, column, code in zip(self.feature_names, self.schema.columns, row)
        }

    def feature_index(self, name: str) -> int:
        names = self.feature_names
        if name in names:
            return names.index(name)
        lowered = [n.lower() for n in names]
        if name.strip().lower() in lowered:
            return lowered.index(name.strip().lower())
        raise InvalidInput(f"no feature named {name!r}; features are: {', '.join(names)}")

    # -- what the probes share ----------------------------------------------------------------------------------

    def probabilities(self, row: np.ndarray) -> dict[str, float]:
        return {name: rounded(p) for name, p in zip(self.class_names, row)}

    def label(self, probabilities: np.ndarray) -> str:
        return self.class_names[int(np.argmax(probabilities))]

    def batch(self, inputs: list[Any]) -> Any:
        """Inputs as one black-box batch: a table's rows stacked, texts as a list."""
        return np.vstack([np.asarray(x, dtype=np.float64) for x in inputs]) if self.kind == "tabular" else list(inputs)

    def moves(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        """How far each row is from `x` per column: numbers in the reference's standard deviations, a category or
        boolean 1 where it differs (a difference of codes means nothing)."""
        return self.schema.changes(rows, x, self.schema.scale(np.asarray(self.rows)))

    def differences(self, row: np.ndarray, x: np.ndarray, most: int = 5) -> dict[str, Any]:
        """The columns in which `row` differs from `x`, with `row`'s values in the user's terms (largest first)."""
        moved = np.abs(self.moves(np.asarray(row, dtype=np.float64)[None, :], x)[0])
        order = [j for j in np.argsort(-moved, kind="stable") if moved[j] > 0][:most]
        return {self.feature_names[j]: self.value(j, row[j]) for j in order}
