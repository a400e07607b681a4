"""The columns of a tabular black box: what each one is (numeric, integer, boolean, categorical, ordinal), its
categories, range and missing-value rate, inferred from the estimator and reference rows, and overridable.

Methods work on one float row per input with one column per original column ("encoded" rows: numbers as they are,
a boolean as 0/1, a category as the index of its value in `categories`, a missing number as NaN), so every
explainer, check and search runs unchanged on any table; attributions are per original column, never per one-hot
column. The schema turns what users hold (DataFrames, records, lists) into encoded rows, decodes them back into
what the model was fitted on (a DataFrame with the original columns and dtypes), shows them in the user's own
terms (`workclass = Private`), and perturbs them as their kinds allow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from xplain.blackbox.errors import BlackBoxInputError

ColumnKind = Literal["numeric", "integer", "boolean", "categorical", "ordinal"]
Category = str | bool | int | float | None
DISCRETE: tuple[ColumnKind, ...] = ("boolean", "categorical", "ordinal")
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}


class Column(BaseModel):
    """One column as the model takes it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: ColumnKind = "numeric"
    categories: list[Category] | None = Field(
        None,
        description="Categorical / ordinal: the values the model knows, in order (ordinal: low to high); "
        "null stands for a missing value the model was fitted with.",
    )
    min: float | None = Field(None, description="The smallest value seen (numbers), or allowed where set.")
    max: float | None = None
    missing_rate: float = Field(0.0, ge=0, le=1, description="Share of missing values in the reference rows.")
    immutable: bool = Field(False, description="Never perturbed nor changed by a counterfactual.")
    dtype: str | None = Field(None, description="The pandas dtype the model was fitted with, when known.")

    @property
    def discrete(self) -> bool:
        return self.kind in DISCRETE

    @property
    def accepts_missing(self) -> bool:
        return self.missing_rate > 0 or (self.categories is not None and None in self.categories)

    def encode(self, value: Any) -> float:
        """One value as its encoded float; ValueError naming the column and what it takes."""
        if _is_missing(value):
            if not self.accepts_missing:
                raise BlackBoxInputError(
                    f"{self.name} is missing, and the model was not fitted with missing values in it"
                )
            if self.categories is not None:
                return float(self.categories.index(None)) if None in self.categories else math.nan
            return math.nan
        if self.kind == "boolean":
            return float(_as_bool(self.name, value))
        if self.categories is not None:
            return float(self._code(value))
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise BlackBoxInputError(f"{self.name} = {value!r} is not a number") from None
        if not isinstance(value, int | float | np.number | np.bool_):  # a boolean counts as 0 / 1
            raise BlackBoxInputError(f"{self.name} = {value!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise BlackBoxInputError(f"{self.name} = {number} is not a finite number")
        if self.kind == "integer" and number != round(number):
            raise BlackBoxInputError(f"{self.name} = {number:g} is not a whole number")
        return number

    def _code(self, value: Any) -> int:
        categories = self.categories or []
        for index, category in enumerate(categories):
            if category is not None and _same(category, value):
                return index
        for index, category in enumerate(categories):  # "1" from a CSV for the category 1, and the like
            if category is not None and str(category) == str(value):
                return index
        shown = ", ".join(str(c) for c in categories if c is not None)
        raise BlackBoxInputError(f"{self.name} = {value!r} is not a category the model knows ({shown})")

    def decode(self, codes: np.ndarray) -> list[Any]:
        """Encoded floats back to the column's values (None where missing)."""
        if self.kind == "boolean":
            return [None if math.isnan(c) else bool(c >= 0.5) for c in codes]
        if self.categories is not None:
            last = len(self.categories) - 1
            return [None if math.isnan(c) else self.categories[min(max(int(round(c)), 0), last)] for c in codes]
        if self.kind == "integer":
            return [None if math.isnan(c) else int(round(c)) for c in codes]
        return [None if math.isnan(c) else float(c) for c in codes]

    def show(self, code: float) -> str:
        """A value as the user writes it: `Private`, `39`, `0.25`, `missing`."""
        [value] = self.decode(np.array([code], dtype=float))
        if value is None:
            return "missing"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)


class TableSchema(BaseModel):
    """Every column of a tabular model, in the model's order."""

    model_config = ConfigDict(extra="forbid")

    columns: list[Column]
    frame: bool = Field(False, description="The model takes a pandas DataFrame (it was fitted on one).")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def all_numeric(self) -> bool:
        return all(c.kind == "numeric" and c.categories is None for c in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    # -- users' rows -> encoded rows --------------------------------------------------------------------------

    def encode_row(self, row: Any) -> list[float]:
        """One row as the user holds it (an object keyed by column, a list in column order, a pandas Series)."""
        if isinstance(row, pd.Series):
            row = row.to_dict()
        if isinstance(row, Mapping):
            missing = [n for n in self.names if n not in row]
            if missing:
                raise BlackBoxInputError(f"row lacks feature(s) {missing[:5]}{'…' if len(missing) > 5 else ''}")
            unknown = [str(k) for k in row if k not in set(self.names)]
            if unknown:
                raise BlackBoxInputError(
                    f"row has unknown column(s) {unknown[:5]}; the model's columns are {self.names[:20]}"
                )
            values = [row[n] for n in self.names]
        elif isinstance(row, list | tuple | np.ndarray):
            values = list(row)
            if len(values) != len(self.columns):
                raise BlackBoxInputError(f"row has {len(values)} values; the model takes {len(self.columns)} features")
        else:
            raise BlackBoxInputError(
                f"a tabular row is a list of {len(self.columns)} values or an object keyed by feature name"
            )
        return [column.encode(value) for column, value in zip(self.columns, values)]

    def encode(self, rows: Any) -> np.ndarray:
        """Many rows: a DataFrame, records, a 2-D array or list of lists; already-encoded float arrays of an
        all-numeric schema pass through."""
        if isinstance(rows, pd.DataFrame):
            unknown = [str(c) for c in rows.columns if c not in set(self.names)]
            missing = [n for n in self.names if n not in rows.columns]
            if missing or unknown:
                raise BlackBoxInputError(
                    f"the table's columns do not match the model's: missing {missing[:10]}, unknown {unknown[:10]}"
                )
            rows = rows[self.names].astype(object).to_numpy().tolist()
        elif isinstance(rows, np.ndarray) and rows.dtype.kind in "fiub" and rows.ndim == 2 and self.all_numeric:
            return rows.astype(np.float64)
        encoded = [self.encode_row(row) for row in rows]
        return np.asarray(encoded, dtype=np.float64).reshape(len(encoded), len(self.columns))

    # -- encoded rows -> what the model and the user see -------------------------------------------------------

    def decode(self, encoded: np.ndarray) -> pd.DataFrame:
        """Encoded rows as a DataFrame with the original columns and (where known) dtypes."""
        encoded = np.asarray(encoded, dtype=np.float64).reshape(-1, len(self.columns))
        data = {}
        for j, column in enumerate(self.columns):
            data[column.name] = _as_dtype(column, column.decode(encoded[:, j]))
        return pd.DataFrame(data, columns=self.names)

    def model_input(self, encoded: np.ndarray) -> Any:
        """What the estimator takes: the decoded DataFrame if it was fitted on one, else a float array."""
        if self.all_numeric and not self.frame:
            return encoded
        decoded = self.decode(encoded)
        if self.frame:
            return decoded
        try:
            return decoded.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):  # categories that are words, for a function or an endpoint
            return decoded.to_numpy(dtype=object)

    def records(self, encoded: np.ndarray) -> list[dict[str, Any]]:
        """Encoded rows as objects keyed by column, values in the user's own terms (JSON-ready)."""
        encoded = np.asarray(encoded, dtype=np.float64).reshape(-1, len(self.columns))
        columns = [column.decode(encoded[:, j]) for j, column in enumerate(self.columns)]
        return [{name: _plain(values[i]) for name, values in zip(self.names, columns)} for i in range(len(encoded))]

    def describe(self, row: Sequence[float]) -> str:
        """A row for a prompt: `workclass = Private, age = 39`."""
        return ", ".join(f"{c.name} = {c.show(v)}" for c, v in zip(self.columns, row))

    # -- perturbations ----------------------------------------------------------------------------------------

    def scale(self, background: np.ndarray) -> np.ndarray:
        """Each column's spread in its own units (missing values ignored; 1 where it does not vary)."""
        background = np.asarray(background, dtype=float)
        with np.errstate(all="ignore"):
            spread = np.nanstd(background, axis=0) if len(background) else np.ones(len(self.columns))
        spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        return spread

    def perturb(
        self,
        x: np.ndarray,
        n: int,
        *,
        sigma: float,
        scale: np.ndarray,
        background: np.ndarray | None,
        rng: np.random.Generator,
        resample_probability: float,
        resampled: Sequence[int] = (),
    ) -> np.ndarray:
        """`n` neighbours of encoded row `x`, each column moved as its kind allows: numbers by Gaussian noise of
        `sigma` x its scale (integers rounded, kept in range), booleans flipped, categories redrawn from the
        background's (seen) values, ordinals stepped along their order, each with `resample_probability`;
        immutable columns never move. `resampled` adds columns to redraw like categories (an old option)."""
        x = np.asarray(x, dtype=float)
        rows = x + rng.normal(0.0, sigma, size=(n, x.size)) * scale
        for j, column in enumerate(self.columns):
            if column.immutable:
                rows[:, j] = x[j]
            elif column.kind == "integer":
                rows[:, j] = self._clip(j, np.round(rows[:, j]))
            elif column.discrete or j in resampled:
                rows[:, j] = self._redraw(j, x[j], n, background, rng, resample_probability)
        return rows

    def snap(self, rows: np.ndarray) -> np.ndarray:
        """Rows another sampler perturbed (LIME's Gaussian), put back where each column's kind allows: integers
        rounded into range, booleans to 0 / 1, category codes to the nearest one."""
        rows = np.array(rows, dtype=float)
        for j, column in enumerate(self.columns):
            if column.kind == "integer":
                rows[:, j] = self._clip(j, np.round(rows[:, j]))
            elif column.kind == "boolean":
                rows[:, j] = np.clip(np.round(rows[:, j]), 0, 1)
            elif column.categories:
                rows[:, j] = np.clip(np.round(rows[:, j]), 0, len(column.categories) - 1)
        return rows

    def _clip(self, j: int, values: np.ndarray) -> np.ndarray:
        column = self.columns[j]
        low = -np.inf if column.min is None else column.min
        high = np.inf if column.max is None else column.max
        return np.clip(values, low, high)

    def _redraw(self, j, value, n, background, rng, probability) -> np.ndarray:
        column = self.columns[j]
        redraw = rng.random(n) < probability
        if column.kind == "boolean":
            return np.where(redraw, 1.0 - (value >= 0.5), value)
        if column.kind == "ordinal" and column.categories:
            top = len([c for c in column.categories if c is not None]) - 1
            step = rng.choice([-1.0, 1.0], n)
            return np.where(redraw, np.clip(value + step, 0, top), value)
        seen = None if background is None or not len(background) else np.asarray(background, dtype=float)[:, j]
        if seen is None and column.categories:
            seen = np.arange(len(column.categories), dtype=float)
        if seen is None:
            return np.full(n, value)
        return np.where(redraw, rng.choice(seen, n), value)

    def changes(self, neighbours: np.ndarray, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """How far each neighbour moved per column: numbers in standard deviations, categories and booleans 1
        when changed (a code difference means nothing), 0 where both are missing."""
        neighbours = np.asarray(neighbours, dtype=float)
        moved = (neighbours - x) / scale
        for j, column in enumerate(self.columns):
            if column.discrete:
                moved[:, j] = (neighbours[:, j] != x[j]).astype(float)
        return np.nan_to_num(moved, nan=0.0)


def numeric_schema(names: Sequence[str]) -> TableSchema:
    """The schema of a model that takes plain numbers (a function, an endpoint, an estimator fitted on arrays)."""
    return TableSchema(columns=[Column(name=str(n)) for n in names])


ColumnOverrides = Mapping[str, Mapping[str, Any] | Column]


def infer_schema(
    estimator: Any = None,
    *,
    reference: Any = None,
    feature_names: Sequence[str] | None = None,
    overrides: ColumnOverrides | None = None,
) -> TableSchema | None:
    """The columns of a tabular model from the estimator (`feature_names_in_`, the categories of its encoders,
    a HistGradientBoosting's categorical columns) and reference rows (pandas dtypes, ranges, missing rates),
    with `overrides` (column -> fields of `Column`) on top. None when nothing tells the column count."""
    frame = _frame(reference, feature_names or _fitted_names(estimator))
    names = list(feature_names or _fitted_names(estimator) or (frame.columns if frame is not None else []))
    if not names:
        n = getattr(estimator, "n_features_in_", None)
        if n is None:
            return None
        names = [f"x{i}" for i in range(n)]
    names = [str(n) for n in names]
    known = _encoder_categories(estimator) if estimator is not None else {}
    native = _native_categorical(estimator, names)
    columns = []
    for name in names:
        series = frame[name] if frame is not None and name in frame.columns else None
        columns.append(_column(name, series, known.get(name), name in native))
    schema = TableSchema(columns=columns, frame=_fitted_names(estimator) is not None)
    return apply_overrides(schema, overrides) if overrides else schema


def apply_overrides(schema: TableSchema, overrides: ColumnOverrides) -> TableSchema:
    """The schema with some columns' fields replaced; unknown columns and fields are refused by name."""
    unknown = sorted(set(overrides) - set(schema.names))
    if unknown:
        raise BlackBoxInputError(f"column overrides name unknown column(s) {unknown}; the columns are {schema.names}")
    columns = []
    for column in schema.columns:
        given = overrides.get(column.name)
        if given is None:
            columns.append(column)
            continue
        fields = given.model_dump(exclude_unset=True) if isinstance(given, Column) else dict(given)
        fields.pop("name", None)
        try:
            columns.append(Column.model_validate({**column.model_dump(), **fields}))
        except ValueError as error:
            raise BlackBoxInputError(f"override of column {column.name!r} is invalid: {error}") from None
        if columns[-1].kind in ("categorical", "ordinal") and not columns[-1].categories:
            raise BlackBoxInputError(f"column {column.name!r} is {columns[-1].kind}: give its categories")
    return schema.model_copy(update={"columns": columns})


def _column(name: str, series: pd.Series | None, categories: list | None, native_categorical: bool) -> Column:
    fields: dict[str, Any] = {"name": name}
    if native_categorical and series is None:
        fields["dtype"] = "category"  # HistGradientBoosting reads its categorical columns from this dtype
    if series is not None:
        fields["dtype"] = str(series.dtype)
        fields["missing_rate"] = float(series.isna().mean())
    if series is not None and pd.api.types.is_bool_dtype(series.dtype):
        kind, categories = "boolean", None
    elif categories is not None:
        kind = "categorical"
        if series is not None:  # an encoder that ignores unknown categories takes the reference's others too
            categories = categories + [v for v in _sorted_values(series) if v not in categories]
    elif series is None:
        kind = "categorical" if native_categorical else "numeric"
    elif isinstance(series.dtype, pd.CategoricalDtype):
        kind = "ordinal" if series.dtype.ordered else "categorical"
        categories = [_plain(c) for c in series.dtype.categories]
    elif pd.api.types.is_numeric_dtype(series.dtype):
        kind = "integer" if pd.api.types.is_integer_dtype(series.dtype) else "numeric"
        if native_categorical:
            kind = "categorical"
    else:  # strings (or Python objects): categories, unless they are all booleans
        values = series.dropna()
        booleans = len(values) and values.map(lambda v: isinstance(v, bool | np.bool_)).all()
        kind = "boolean" if booleans else "categorical"
    if kind == "categorical" and categories is None and series is not None:
        categories = _sorted_values(series)
    if categories is not None:
        if series is not None and series.isna().any() and None not in categories:
            categories = [*categories, None]
        fields["categories"] = categories
    elif series is not None and kind in ("numeric", "integer"):
        values = pd.to_numeric(series, errors="coerce").dropna()
        if len(values):
            fields["min"], fields["max"] = float(values.min()), float(values.max())
    fields["kind"] = kind
    return Column.model_validate(fields)


def _sorted_values(series: pd.Series) -> list:
    """The distinct values of a column, in a stable order (so codes do not depend on the process)."""
    return sorted({_plain(v) for v in series.dropna()}, key=lambda v: (str(type(v)), v))


def _fitted_names(estimator: Any) -> list[str] | None:
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else [str(n) for n in names]


def _frame(reference: Any, names: Sequence[str] | None) -> pd.DataFrame | None:
    if reference is None:
        return None
    if isinstance(reference, pd.DataFrame):
        return reference
    rows = list(reference)
    if not rows:
        return None
    if isinstance(rows[0], Mapping):
        return pd.DataFrame.from_records(rows)
    if names is None:
        return None
    return pd.DataFrame(rows, columns=list(names))


def _encoder_categories(estimator: Any) -> dict[str, list]:
    """Column -> categories, from every OneHotEncoder / OrdinalEncoder a pipeline applies to named columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    found: dict[str, list] = {}

    def encoders(step: Any) -> list:
        if isinstance(step, Pipeline):
            return [e for _, s in step.steps for e in encoders(s)]
        return [step] if isinstance(step, OneHotEncoder | OrdinalEncoder) else []

    def visit(step: Any, columns: Sequence[str] | None) -> None:
        if isinstance(step, Pipeline):
            visit(step.steps[0][1], columns)
        elif isinstance(step, ColumnTransformer) and hasattr(step, "transformers_"):
            names = list(getattr(step, "feature_names_in_", columns or []))
            for _, transformer, selected in step.transformers_:
                if isinstance(transformer, str):
                    continue
                chosen = _selected(selected, names)
                for encoder in encoders(transformer):
                    for column, categories in zip(chosen, encoder.categories_):
                        found[column] = [_plain(c) for c in categories]
        elif getattr(step, "is_categorical_", None) is not None and hasattr(step, "_preprocessor"):
            visit(step._preprocessor, columns)  # HistGradientBoosting's own encoder of its categorical columns
        elif isinstance(step, OneHotEncoder | OrdinalEncoder) and columns:
            for column, categories in zip(columns, step.categories_):
                found[column] = [_plain(c) for c in categories]

    visit(estimator, _fitted_names(estimator))
    return found


def _selected(selected: Any, names: list[str]) -> list[str]:
    if isinstance(selected, str):
        return [selected]
    selected = list(np.asarray(selected).reshape(-1)) if not callable(selected) else []
    if selected and all(isinstance(s, bool | np.bool_) for s in selected):
        return [n for n, keep in zip(names, selected) if keep]
    return [names[int(s)] if isinstance(s, int | np.integer) else str(s) for s in selected]


def _native_categorical(estimator: Any, names: list[str]) -> set[str]:
    """Columns a HistGradientBoosting model treats as categories itself (`is_categorical_`)."""
    mask = getattr(estimator, "is_categorical_", None)
    return set() if mask is None else {n for n, flag in zip(names, mask) if flag}


def _as_dtype(column: Column, values: list[Any]) -> pd.Series:
    dtype = column.dtype
    has_missing = any(v is None for v in values)
    if dtype == "category":
        categories = [c for c in column.categories or [] if c is not None]
        return pd.Series(pd.Categorical(values, categories=categories, ordered=column.kind == "ordinal"))
    if column.kind == "boolean":
        return pd.Series(values, dtype="boolean" if has_missing else bool)
    if column.categories is not None:
        series = pd.Series([np.nan if v is None else v for v in values], dtype=object)
        if dtype is not None and dtype != "object" and not has_missing:
            try:
                return series.astype(dtype)
            except (TypeError, ValueError):
                return series
        return series
    numbers = pd.Series([np.nan if v is None else v for v in values], dtype=float)
    if dtype is not None and pd.api.types.is_integer_dtype(dtype) and not has_missing:
        return numbers.astype(dtype)
    return numbers


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.number) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise BlackBoxInputError(f"{name} = {value!r} is not a boolean (true/false)")


def _same(category: Any, value: Any) -> bool:
    if isinstance(category, bool) != isinstance(value, bool | np.bool_):
        return False
    try:
        return bool(category == value)
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones; NaN as None (JSON-ready)."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
