"""Reading rows from data files, and the JSONL file that `xplain batch` keeps as its durable record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xplain.batch.runner import RowOutcome
from xplain.errors import Forbidden, InvalidInput, NotFound
from xplain.validation import resolve_under

DATA_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


def lines_of(text: str) -> list[str]:
    """The non-blank lines of a data file's text (JSON lines, a text corpus), split at "\n" only:
    Python's own line splitting also breaks at U+0085, U+2028, U+2029 and other characters that JSON strings hold
    unescaped (real reviews contain them)."""
    return [line for line in text.split("\n") if line.strip()]


def read_jsonl(path: Path) -> list[Any]:
    """Every value of a JSON-lines file, in order."""
    values = []
    for number, line in enumerate(lines_of(_text(path)), 1):
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{path.name}: JSON line {number} is not JSON ({error.msg})") from None
    return values


def _text(path: Path) -> str:
    """A data file's text, or an error that says it is not UTF-8 and where."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from None


def _not_utf8(path: Path, error: UnicodeDecodeError) -> InvalidInput:
    return InvalidInput(
        f"{path.name} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
        "save it as UTF-8"
    )


def resolve_data_file(path: str | Path, data_dir: Path | None) -> Path:
    """A data file inside `data_dir` (symlinks resolved); anything else is refused. For server requests."""
    if data_dir is None:
        raise Forbidden("reading data files is off: the operator has not set XPLAIN_DATA_DIR")
    candidate = resolve_under(data_dir, path, "the data directory (XPLAIN_DATA_DIR)")
    if not candidate.is_file():
        raise NotFound(f"no data file {path} in the data directory")
    return candidate


def read_rows(path: Path, *, column: str | None = None) -> list[Any]:
    """Rows of a CSV, JSONL, JSON (a list) or Parquet file: objects keyed by column, or one column's values."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = read_jsonl(path)
    elif suffix == ".json":
        try:
            rows = json.loads(_text(path))
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{path.name} is not JSON ({error.msg}, line {error.lineno})") from None
        if not isinstance(rows, list):
            raise ValueError(f"{path.name}: a JSON data file holds a list of rows")
    elif suffix in (".csv", ".parquet"):
        rows = read_table(path).to_dict(orient="records")
    else:
        raise ValueError(f"{path.name}: data files are {', '.join(DATA_SUFFIXES)}")
    if column is not None:
        missing = [i for i, row in enumerate(rows) if not isinstance(row, dict) or column not in row]
        if missing:
            raise ValueError(f"{path.name}: row {missing[0]} has no column {column!r}")
        rows = [row[column] for row in rows]
    return rows


def read_table(path: Path) -> Any:
    """A CSV or Parquet file as a pandas DataFrame (strings, booleans and empty cells as pandas reads them); a file
    that is not UTF-8, a line with more fields than the header, or an empty file is an error that says so."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path.name}: a table is a .csv or .parquet file")
    if suffix == ".parquet":
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path)
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from None
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"{path.name} is empty: a CSV starts with a header line naming its columns") from None
    except pd.errors.ParserError as error:
        detail = str(error).strip().removeprefix("Error tokenizing data. C error: ")
        raise InvalidInput(f"{path.name} is not a well-formed CSV: {detail}") from None


class JsonlSink:
    """Results as JSON lines, flushed and synced per chunk. Reopening keeps the successful lines and drops failed
    ones, so a rerun with the same output resumes: it skips finished rows and retries failed ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        kept: dict[int, RowOutcome] = {}
        if path.exists():
            for line in lines_of(path.read_text(encoding="utf-8")):
                try:
                    outcome = RowOutcome.model_validate_json(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if outcome.ok:
                    kept[outcome.index] = outcome
        self.finished = kept
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text("".join(o.model_dump_json() + "\n" for o in sorted(kept.values(), key=lambda o: o.index)))
        os.replace(temporary, path)
        self._file = path.open("a", encoding="utf-8")

    async def record(self, outcomes: list[RowOutcome]) -> None:
        self._file.write("".join(o.model_dump_json() + "\n" for o in outcomes))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def outcomes(self) -> list[RowOutcome]:
        """Everything in the file, last word per row."""
        by_index: dict[int, RowOutcome] = {}
        for line in lines_of(self.path.read_text(encoding="utf-8")):
            outcome = RowOutcome.model_validate_json(line)
            by_index[outcome.index] = outcome
        return [by_index[i] for i in sorted(by_index)]
