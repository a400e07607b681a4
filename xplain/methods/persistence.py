"""Save a fitted LMLDAPClassifier or TextBottleneckClassifier to a directory and load it back, without pickle.

The directory holds `model.json` (kind, hyperparameters except `llm`, and the learned text state: summaries,
the training table's column schema, concepts, cached ratings) and `arrays.skops` (the numeric and scikit-learn parts: training table, classes, the L1
layer). Loading refuses an `arrays.skops` holding any type beyond skops' defaults and numpy/scikit-learn types, so
a tampered model directory cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import skops.io as sio

from xplain.blackbox.schema import TableSchema, numeric_schema
from xplain.llm import LLM
from xplain.methods.base import Cost
from xplain.methods.lml_dap import LMLDAPClassifier
from xplain.methods.tbm import Concept, MeasurementCache, TextBottleneckClassifier

FORMAT_VERSION = 1
STATE_FILE = "model.json"
ARRAYS_FILE = "arrays.skops"
TRUSTED_PREFIXES = ("numpy.", "sklearn.")
Classifier = LMLDAPClassifier | TextBottleneckClassifier

LML_ARRAYS = ("classes_", "y_index_", "X_train_", "mean_", "scale_")
TBM_ARRAYS = ("classes_", "layer_")


def save_classifier(clf: Classifier, path: str | Path) -> Path:
    """Write a fitted classifier to directory `path` (created if missing); returns the directory."""
    if isinstance(clf, (LMLDAPClassifier, TextBottleneckClassifier)) and not hasattr(
        clf, "classes_"
    ):
        raise ValueError(
            f"the {type(clf).__name__} is not fitted; fit it before saving"
        )
    if isinstance(clf, LMLDAPClassifier):
        kind, names = "lml_dap", LML_ARRAYS
        state: dict[str, Any] = {
            "summaries_": clf.summaries_,
            "feature_names_": clf.feature_names_,
            "schema_": clf.schema_.model_dump(mode="json"),
        }
    elif isinstance(clf, TextBottleneckClassifier):
        kind, names = "tbm", TBM_ARRAYS
        state = {
            "concepts_": [c.model_dump() for c in clf.concepts_],
            "measurement_failures_": clf.measurement_failures_,
            "fit_cost_": clf.fit_cost_.model_dump(mode="json"),
            "ratings": [[q, t, r] for (q, t), r in clf.cache_.ratings.items()],
        }
    else:
        raise TypeError(
            f"can save LMLDAPClassifier or TextBottleneckClassifier, not {type(clf).__name__}"
        )
    params = {
        k: v for k, v in clf.get_params(deep=False).items() if k not in ("llm", "cache")
    }
    arrays = {n: getattr(clf, n) for n in names}
    for optional in ("n_features_in_", "feature_names_in_"):
        if hasattr(clf, optional):
            arrays[optional] = getattr(clf, optional)
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "params": params,
        "state": state,
    }
    (directory / STATE_FILE).write_text(json.dumps(document, indent=2))
    sio.dump(arrays, directory / ARRAYS_FILE)
    return directory


def load_classifier(path: str | Path, llm: LLM | None = None) -> Classifier:
    """Read a directory written by `save_classifier`; `llm=None` uses the configured LLM at predict time."""
    directory = Path(path)
    state_file, arrays_file = directory / STATE_FILE, directory / ARRAYS_FILE
    if not state_file.is_file() or not arrays_file.is_file():
        raise ValueError(
            f"{directory} is not a saved classifier: expected {STATE_FILE} and {ARRAYS_FILE} in it"
        )
    try:
        document = json.loads(state_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{state_file} is not valid JSON: {error}") from error
    if document.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{state_file} has format {document.get('format')!r}; this xplain reads {FORMAT_VERSION}"
        )
    arrays = _load_arrays(arrays_file)
    kind, params, state = (
        document.get("kind"),
        document.get("params", {}),
        document.get("state", {}),
    )
    if kind == "lml_dap":
        clf = LMLDAPClassifier(llm, **params)
        clf.summaries_ = state["summaries_"]
        clf.feature_names_ = state["feature_names_"]
        # the training table's columns; a save from before tables had kinds held plain numbers
        clf.schema_ = (
            TableSchema.model_validate(state["schema_"]) if "schema_" in state else numeric_schema(clf.feature_names_)
        )
    elif kind == "tbm":
        if params.get("concepts") is not None:
            params["concepts"] = [tuple(pair) for pair in params["concepts"]]
        clf = TextBottleneckClassifier(llm, **params)
        clf.concepts_ = [Concept(**c) for c in state["concepts_"]]
        clf.measurement_failures_ = state["measurement_failures_"]
        clf.fit_cost_ = Cost.model_validate(state["fit_cost_"])
        clf.cache_ = MeasurementCache()
        clf.cache_.ratings = {(q, t): float(r) for q, t, r in state["ratings"]}
    else:
        raise ValueError(f"{state_file} has kind {kind!r}; expected 'lml_dap' or 'tbm'")
    for name, value in arrays.items():
        setattr(clf, name, value)
    if kind == "tbm":
        clf.weights_ = clf.layer_.coef_
    return clf


def _load_arrays(arrays_file: Path) -> dict[str, Any]:
    """skops load trusting only its defaults plus numpy and scikit-learn types; anything else is refused."""
    try:
        found = sio.get_untrusted_types(file=arrays_file)
    except (
        Exception
    ) as error:  # skops raises assorted errors on a corrupt archive; report them as one
        raise ValueError(
            f"{arrays_file} is not a readable skops file: {error}"
        ) from error
    refused = [t for t in found if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise ValueError(
            f"refusing to load {arrays_file}: it contains untrusted type(s) {refused}; "
            "only numpy and scikit-learn types are accepted — was the file tampered with?"
        )
    return sio.load(arrays_file, trusted=found)
