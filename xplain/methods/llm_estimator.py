"""Shared plumbing for scikit-learn estimators built on the async LLM: sync entry points over async work, the LLM
as a handle resolved at fit time, and the scikit-learn contract (clone, pickling) around a live LLM.

The `llm` hyperparameter may be an `LLM`, a `Settings`, a backend name ("llamacpp", "openai", "vllm", "fake") or
None (the configured one). `clone` keeps the LLM and a shared cache BY REFERENCE (like Pipeline's `memory`): a
model in memory is a service, not a parameter to copy, and GridSearchCV / cross_val_score clones then share it.
Pickling (joblib workers, saving) sends an LLM that cannot be pickled as the settings it is rebuilt from.
"""

from __future__ import annotations

import atexit
import copy
import json
import pickle
import threading
from typing import Any, get_args

from sklearn.base import clone

from xplain.llm import LLM, make_llm
from xplain.llm.loop_thread import run_sync
from xplain.settings import BackendName, Settings, get_settings

LLMSpec = LLM | Settings | str | None

_built: dict[str, LLM] = {}
_built_lock = threading.Lock()


def resolve_llm(llm: LLMSpec) -> LLM:
    """The LLM a spec stands for. Settings and names build one LLM per distinct settings, reused afterwards (so
    many clones and refits load a local model once)."""
    if isinstance(llm, LLM):
        return llm
    if llm is None:
        settings = get_settings()
    elif isinstance(llm, Settings):
        settings = llm
    elif isinstance(llm, str):
        names = get_args(BackendName)
        if llm not in names:
            raise ValueError(f"llm={llm!r} is not a backend name; use one of {list(names)}, a Settings or an LLM")
        settings = get_settings().model_copy(update={"llm_backend": llm})
    else:
        raise TypeError(f"llm must be an LLM, a Settings, a backend name or None, not {type(llm).__name__}")
    key = json.dumps(
        [settings.model_dump(mode="json"), settings.llm_api_key.get_secret_value()], sort_keys=True, default=str
    )
    with _built_lock:
        if key not in _built:
            if not _built:
                atexit.register(_close_built)
            _built[key] = make_llm(settings)
        return _built[key]


def _close_built() -> None:
    """Close the LLMs built here on the loop they ran on, so an HTTP client's sessions end with the process."""
    for llm in _built.values():
        run_sync(llm.aclose)


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # whatever a backend holds (locks, queues, native handles) that cannot travel
        return False
    return True


class LLMEstimatorMixin:
    """Mixed into LLM-backed estimators before BaseEstimator: `clone` keeps the shared parameters by reference,
    pickling turns a live LLM into its settings, and `_llm()` resolves the handle once per fitted estimator."""

    #: hyperparameters that are services shared between clones, never copied
    _shared_params: tuple[str, ...] = ("llm",)

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        twin = type(self)(
            **{name: value if name in self._shared_params else clone(value, safe=False) for name, value in params.items()}
        )
        for attribute in ("_metadata_request", "_sklearn_output_config"):  # as sklearn's own clone carries them
            if hasattr(self, attribute):
                setattr(twin, attribute, copy.deepcopy(getattr(self, attribute)))
        return twin

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ hands out __dict__ itself
        spec = state.get("llm")
        if isinstance(spec, LLM) and not _picklable(spec):
            spec = state["llm"] = get_settings()
        resolved = state.get("llm_")
        if isinstance(resolved, LLM) and resolved is not state.get("llm") and not _picklable(resolved):
            state["llm_"] = spec  # rebuilt from what it was resolved from
        return state

    def _llm(self) -> LLM:
        """The LLM of this estimator: resolved from the `llm` handle on first use and kept as `llm_`."""
        llm = getattr(self, "llm_", None)
        if not isinstance(llm, LLM):
            llm = self.llm_ = resolve_llm(llm if llm is not None else self.llm)
        return llm
