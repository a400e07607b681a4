"""Reference rows for a registered model: what the chat's tools question it about. The demos bring their held-out
rows; other models name a CSV under XPLAIN_DATA_DIR (resolved so it cannot leave that directory)."""

from __future__ import annotations

from xplain.batch.sources import read_table
from xplain.blackbox import BlackBox
from xplain.data.demo import DemoReference, demo_reference
from xplain.server.schemas import ModelRegistration
from xplain.settings import Settings


def load_reference(registration: ModelRegistration, blackbox: BlackBox, settings: Settings) -> DemoReference | None:
    """The registration's reference rows: the demo's held-out rows, or its CSV under XPLAIN_DATA_DIR (columns in the
    model's feature order; the label column apart)."""
    if registration.source.demo is not None:
        return demo_reference(registration.source.demo)
    spec = registration.reference
    overrides = {n: c.model_dump(exclude_none=True) for n, c in (registration.columns or {}).items()}
    if spec is None:
        if overrides and blackbox.kind == "tabular":
            blackbox.infer_schema(None, overrides)
        return None
    if settings.data_dir is None:
        raise PermissionError("reading data files is off: the operator has not set XPLAIN_DATA_DIR")
    root = settings.data_dir.resolve()
    path = (root / spec.file).resolve()
    if not path.is_relative_to(root):
        raise PermissionError(f"{spec.file} is outside the data directory (XPLAIN_DATA_DIR)")
    if path.suffix.lower() != ".csv" or not path.is_file():
        raise ValueError(f"reference file {spec.file!r} must be an existing .csv file in the data directory")
    table = read_table(path)
    labels = None
    for column in filter(None, (spec.label_column, spec.text_column)):
        if column not in table.columns:
            raise ValueError(f"{spec.file} has no column {column!r}; columns: {', '.join(map(str, table.columns))}")
    if spec.label_column is not None:
        labels = table.pop(spec.label_column).astype(str).to_numpy()
    if len(table) == 0:
        raise ValueError(f"{spec.file} has no rows")
    if blackbox.kind == "text":
        column = spec.text_column or ("text" if "text" in table.columns else None)
        if column is None:
            raise ValueError("a text model's reference file needs a text column: name it with `text_column`")
        rows = table[column].astype(str).tolist()
    else:
        names = blackbox.feature_names or [str(c) for c in table.columns]
        missing = [n for n in names if n not in table.columns]
        if missing:
            raise ValueError(f"{spec.file} lacks the model's feature column(s): {', '.join(missing[:10])}")
        blackbox.infer_schema(table[names], overrides)  # the columns' kinds, categories and ranges from the data
        rows = blackbox.schema.encode(table[names])
    return DemoReference(rows, labels, f"reference rows from {spec.file}")
