"""Turning raw rows (JSON values from a request or a file) into black-box inputs, with errors that say what to fix."""

from __future__ import annotations

from typing import Any

import numpy as np

from xplain.blackbox import BlackBox


class RowError(ValueError):
    """A row that does not fit the model's input."""


def to_model_input(blackbox: BlackBox, row: Any) -> Any:
    """A tabular row (list of numbers, or an object keyed by feature name) as a float list; a text row (a string,
    or an object with a `text` field) as a string."""
    if blackbox.kind == "tabular":
        names = blackbox.feature_names or []
        if isinstance(row, dict):
            missing = [n for n in names if n not in row]
            if missing:
                raise RowError(f"row lacks feature(s) {missing[:5]}{'…' if len(missing) > 5 else ''}")
            row = [row[n] for n in names]
        if not isinstance(row, list | tuple):
            raise RowError(f"a tabular row is a list of {len(names)} numbers or an object keyed by feature name")
        if names and len(row) != len(names):
            raise RowError(f"row has {len(row)} values; the model takes {len(names)} features")
        try:
            values = [float(v) for v in row]
        except (TypeError, ValueError) as error:
            raise RowError(f"a tabular row must hold numbers: {error}") from error
        if not np.all(np.isfinite(values)):
            raise RowError("a tabular row holds NaN or infinity")
        return values
    if isinstance(row, dict):
        row = row.get("text")
    if not isinstance(row, str) or not row.strip():
        raise RowError('a text row is a non-empty string, or an object with a "text" field')
    return row


def describe_row(blackbox: BlackBox, row: Any) -> str:
    """A row as short human-readable text for a prompt."""
    if blackbox.kind == "tabular":
        names = blackbox.feature_names or [f"x{i}" for i in range(len(row))]
        return ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, row))
    return str(row)
