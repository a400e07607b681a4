"""The one place where inputs from users are checked before any work: names, paths, rows and texts.

Like scikit-learn's `utils/validation.py`: every front and method calls these, so a row is refused with the same
words whether it came over REST, from a file, from the CLI or from Python.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xplain.blackbox import BlackBox
from xplain.errors import Forbidden, InvalidInput

#: Names of models, classifiers and jobs: letters, digits, `-`, `_`, `.`; not starting with a dot (so never `..`
#: nor a hidden file), at most 100 characters.
SLUG = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}$"
_SLUG = re.compile(SLUG)


def is_blank(text: str) -> bool:
    """Nothing to read: only spaces and invisible characters (zero-width spaces and joiners, direction marks)."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


class RowError(InvalidInput):
    """A row that does not fit the model's input."""


def check_slug(name: str, what: str = "name") -> str:
    """`name` if it is a valid slug; otherwise InvalidInput that says what a name may hold."""
    if not isinstance(name, str) or not _SLUG.fullmatch(name):
        raise InvalidInput(
            f"{what} {name!r} is not allowed: use letters, digits, '-', '_' and '.', not starting with a dot "
            "(at most 100 characters)"
        )
    return name


def resolve_under(root: Path | str, name: str | Path, where: str = "its directory") -> Path:
    """`root / name` with symlinks resolved, refused (Forbidden) unless it stays inside `root`.

    Absolute paths, `..` and symlinks that lead out of `root` all end outside it and are refused; `where` names
    the directory in the message (never its real path, which is the server's business).
    """
    base = Path(root).resolve()
    candidate = (base / name).resolve()
    if candidate == base or not candidate.is_relative_to(base):
        raise Forbidden(f"{str(name)!r} is outside {where}")
    return candidate


def to_model_input(blackbox: BlackBox, row: Any) -> Any:
    """A tabular row (a list of values in column order, or an object keyed by column name, with the column's own
    values: numbers, booleans, category names, null where the model takes missing values) as its encoded float
    list (see `xplain.blackbox.schema`); a text row (a string, or an object with a `text` field) as a string."""
    if blackbox.kind == "tabular":
        if blackbox.schema is None:
            return _numbers(row)
        try:
            return blackbox.schema.encode_row(row)
        except ValueError as error:
            raise RowError(str(error)) from None
    if isinstance(row, dict):
        row = row.get("text")
    if not isinstance(row, str) or is_blank(row):
        raise RowError(
            'a text row is a string with something to read (not only spaces or invisible characters), '
            'or an object with such a "text" field'
        )
    return row


def _numbers(row: Any) -> list[float]:
    """A row of a model that does not say its columns: finite numbers."""
    if not isinstance(row, list | tuple):
        raise RowError("a tabular row is a list of numbers")
    try:
        values = [float(v) for v in row]
    except (TypeError, ValueError) as error:
        raise RowError(f"a tabular row must hold numbers: {error}") from error
    if not np.all(np.isfinite(values)):
        raise RowError("a tabular row holds NaN or infinity")
    return values


def rows_of(inputs: Any) -> list[Any]:
    """The rows of what a Python user holds: a DataFrame (records), a 2-D array (lists), or a list as it is."""
    if isinstance(inputs, pd.DataFrame):
        return inputs.to_dict(orient="records")
    if isinstance(inputs, np.ndarray):
        return inputs.tolist()
    return list(inputs)


def reference_rows(blackbox: BlackBox, reference: Any) -> np.ndarray | None:
    """Reference (background) rows as encoded floats: a DataFrame, records, or lists of values; a float array is
    taken as encoded rows already (what the demos and the registry keep)."""
    if reference is None:
        return None
    if blackbox.schema is None:
        return np.asarray(reference, dtype=float)
    try:
        if isinstance(reference, np.ndarray) and reference.dtype.kind in "fiub":
            return np.asarray(reference, dtype=float)
        if isinstance(reference, pd.DataFrame) and set(blackbox.schema.names) <= set(reference.columns):
            reference = reference[blackbox.schema.names]  # a label column beside them is left out
        return blackbox.schema.encode(reference if isinstance(reference, pd.DataFrame) else list(reference))
    except ValueError as error:
        raise InvalidInput(f"reference rows do not fit the model: {error}") from None


def describe_row(blackbox: BlackBox, row: Any) -> str:
    """A row as short human-readable text for a prompt, in the user's own terms (`workclass = Private`)."""
    if blackbox.kind == "tabular":
        if blackbox.schema is not None:
            return blackbox.schema.describe(row)
        return ", ".join(f"x{i} = {v:.4g}" for i, v in enumerate(row))
    return str(row)


def to_text(item: Any) -> str:
    """A text item of a set method: a string, or an object with a "text" field."""
    text = item.get("text") if isinstance(item, dict) else item
    if not isinstance(text, str) or is_blank(text):
        raise InvalidInput(
            'each text is a string with something to read (not only spaces or invisible characters), '
            'or an object with such a "text" field'
        )
    return text


def check_pair(item: Any) -> tuple[str, str]:
    """An input/output example: `{"input": ..., "output": ...}` or a two-item list, both as strings."""
    if isinstance(item, dict) and set(item) == {"input", "output"}:
        pair = (item["input"], item["output"])
    elif isinstance(item, list | tuple) and len(item) == 2:
        pair = tuple(item)
    else:
        raise InvalidInput('an example is {"input": ..., "output": ...} or a pair [input, output]')
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in pair):
        raise InvalidInput("an example's input and output are strings or numbers")
    return str(pair[0]), str(pair[1])


def check_labelled(item: Any) -> tuple[Any, str]:
    """A training example: `{"row": [...] or {...} or "text", "label": ...}`. A row of numbers comes back as
    floats; a row with words, booleans or empty cells, or keyed by column, as it is (its columns' kinds decide)."""
    if not isinstance(item, dict) or "label" not in item or not ({"row", "text"} & set(item)):
        raise InvalidInput(
            'a training example is {"row": [values] or {column: value}, "label": L} or {"text": "...", "label": L}'
        )
    label = item["label"]
    if not isinstance(label, str | int) or isinstance(label, bool):
        raise InvalidInput("a label is a string or an integer")
    if "text" in item:
        if not isinstance(item["text"], str) or is_blank(item["text"]):
            raise InvalidInput("a training text is a string with something to read (not only invisible characters)")
        return item["text"], str(label)
    row = item["row"]
    cells = list(row.values()) if isinstance(row, dict) else row
    if not isinstance(cells, list) or not all(v is None or isinstance(v, str | int | float) for v in cells):
        raise InvalidInput("a training row is a list of values or an object keyed by column (numbers, words, "
                           "booleans or null)")  # fmt: skip
    if isinstance(row, dict) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in cells):
        return row, str(label)
    values = [float(v) for v in cells]
    if not np.all(np.isfinite(values)):
        raise InvalidInput("a training row holds NaN or infinity")
    return values, str(label)
