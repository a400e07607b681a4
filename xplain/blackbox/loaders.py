"""Build a `BlackBox` from wherever a model lives: a scikit-learn object, a skops file, a pickle file the operator
vouched for, a Python import path, or an HTTP endpoint.

Loading a pickle runs arbitrary code, so pickles load only from the directory the operator names
(`XPLAIN_TRUSTED_MODEL_DIR`, passed in by the caller) and skops files only when every type they hold is trusted.
"""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import re
import socket
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Unpack

import httpx
import joblib
import numpy as np
import skops.io
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer, TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from xplain.blackbox.errors import (
    BlackBoxLoadError,
    BlackBoxOutputError,
    BlackBoxUnavailableError,
    UntrustedModelFileError,
)
from xplain.blackbox.llm_classifier import from_llm_file
from xplain.blackbox.model import BatchFunction, BlackBox, Kind, WrapperOptions
from xplain.blackbox.schema import ColumnOverrides
from xplain.errors import Forbidden
from xplain.llm import LLM
from xplain.settings import Settings

TRUSTED_DIR_SETTING = "XPLAIN_TRUSTED_MODEL_DIR"
TEXT_VECTORIZERS = (CountVectorizer, TfidfVectorizer, HashingVectorizer)
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"
IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
LLM_PREFIX = "llm:"
ACCEPTED_SPECS = (
    "an http:// or https:// URL, a .skops file, a .joblib/.pkl/.pickle file inside the trusted model directory, "
    "a Python import path 'package.module:attribute', or llm:FILE (an LLM classifier's JSON or TOML file)"
)


def load_blackbox(
    spec: str,
    *,
    kind: Kind | None = None,
    trusted_dir: str | Path | None = None,
    trusted_types: Sequence[str] | None = None,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None = None,
    timeout_s: float = 30.0,
    llm: LLM | None = None,
    settings: Settings | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """Pick the loader that `spec`'s form calls for; `trusted_dir` comes from the caller's settings, and an LLM
    classifier runs on `llm` (see `from_llm_spec`)."""
    lowered = spec.lower()
    if spec.startswith(LLM_PREFIX):
        box = from_llm_file(spec.removeprefix(LLM_PREFIX), llm=llm, settings=settings, **options)
        if classes is not None or (kind is not None and kind != box.kind):
            raise BlackBoxLoadError(f"{spec} is a {box.kind} LLM classifier whose file names its labels")
        if feature_names is not None and list(feature_names) != box.feature_names:
            raise BlackBoxLoadError(f"{spec} takes the features {box.feature_names}, not {list(feature_names)}")
        return box
    if lowered.startswith(("http://", "https://")):
        if kind is None:
            raise BlackBoxLoadError(f"an HTTP black box needs kind ('tabular', 'text' or 'module'): {spec}")
        return from_http(
            spec, kind=kind, classes=classes, feature_names=feature_names, timeout_s=timeout_s, **options
        )
    if lowered.endswith(SKOPS_SUFFIX):
        return from_skops(spec, trusted=trusted_types, kind=kind, feature_names=feature_names, **options)
    if lowered.endswith(PICKLE_SUFFIXES):
        return from_pickle(spec, trusted_dir=trusted_dir, kind=kind, feature_names=feature_names, **options)
    if IMPORT_PATH.fullmatch(spec):
        return from_import_path(spec, kind=kind, classes=classes, feature_names=feature_names, **options)
    raise BlackBoxLoadError(f"cannot tell how to load black box {spec!r}; expected {ACCEPTED_SPECS}")


def from_estimator(
    estimator: Any,
    *,
    kind: Kind | None = None,
    feature_names: Sequence[str] | None = None,
    reference: Any = None,
    columns: ColumnOverrides | None = None,
    name: str | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """Wrap a fitted scikit-learn estimator or pipeline; classifiers must offer `predict_proba`. A tabular one
    gets its columns (`schema`) from the estimator and the `reference` rows, with `columns` overriding them."""
    name = name or f"estimator:{type(estimator).__name__}"
    if not isinstance(estimator, BaseEstimator):
        raise BlackBoxLoadError(f"{name} is not a scikit-learn estimator; wrap a plain function with from_callable")
    try:
        check_is_fitted(estimator)
    except NotFittedError as exc:
        raise BlackBoxLoadError(f"{name} is not fitted: {exc}") from exc
    kind = kind or _infer_kind(estimator, name)
    if kind == "module":
        return BlackBox(_module_function(estimator, name), kind="module", name=name, **options)
    if not hasattr(estimator, "predict_proba"):
        raise BlackBoxLoadError(
            f"{name} has no predict_proba, and xplain explains classifiers through class probabilities; "
            "calibrate it (e.g. CalibratedClassifierCV) or, for a text scorer, pass kind='module'"
        )
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        raise BlackBoxLoadError(f"{name} has no classes_, so its probability columns cannot be labelled")
    blackbox = BlackBox(
        estimator.predict_proba,
        kind=kind,
        classes=classes,
        feature_names=_feature_names(estimator, feature_names, name) if kind == "tabular" else feature_names,
        name=name,
        **options,
    )
    if kind == "tabular" and blackbox.feature_names is not None:
        blackbox.infer_schema(reference, columns)
    return blackbox


def from_callable(
    function: BatchFunction,
    *,
    kind: Kind,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None = None,
    name: str | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """Wrap a function over a batch (list of texts or 2-D array) returning probability rows or floats.

    Without `classes`, a classifier's classes are 0..k-1, with k read from its first answer.
    """
    if not callable(function):
        raise BlackBoxLoadError(f"expected a callable, got {type(function).__name__}")
    name = name or f"callable:{getattr(function, '__qualname__', type(function).__name__)}"
    return BlackBox(function, kind=kind, classes=classes, feature_names=feature_names, name=name, **options)


def from_skops(
    path: str | Path,
    *,
    trusted: Sequence[str] | None = None,
    kind: Kind | None = None,
    feature_names: Sequence[str] | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """Load a skops file, refusing it if it holds any type skops does not trust and the operator did not list."""
    path = Path(path)
    if not path.is_file():
        raise BlackBoxLoadError(f"no skops file at {path}")
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except zipfile.BadZipFile as exc:
        raise BlackBoxLoadError(f"{path} is not a skops file: {exc}") from exc
    operator_trusted = set(trusted or ())
    refused = [type_name for type_name in untrusted if type_name not in operator_trusted]
    if refused:
        raise UntrustedModelFileError(
            f"refusing to load {path}: it contains types that are not trusted: {', '.join(refused)}. "
            "Loading them could run their code; inspect them, and list those you trust in XPLAIN_TRUSTED_SKOPS_TYPES "
            "(comma-separated; over REST also the registration's `trusted_types`)"
        )
    model = skops.io.load(path, trusted=untrusted)
    return _from_object(model, kind=kind, feature_names=feature_names, name=f"skops:{path}", **options)


def from_pickle(
    path: str | Path,
    *,
    trusted_dir: str | Path | None,
    kind: Kind | None = None,
    feature_names: Sequence[str] | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """Load a joblib/pickle file, but only one whose real path lies inside the operator's trusted directory."""
    if trusted_dir is None:
        raise UntrustedModelFileError(
            f"refusing to load {path}: pickle/joblib files run code when loaded, and it is outside the trusted "
            f"directory because none is set; set {TRUSTED_DIR_SETTING} to the directory of model files you trust, "
            "or save the model with skops"
        )
    real_path = Path(path).resolve()
    real_trusted_dir = Path(trusted_dir).resolve()
    if not real_path.is_relative_to(real_trusted_dir):
        raise UntrustedModelFileError(
            f"refusing to load {path}: it resolves to {real_path}, outside the trusted directory "
            f"{real_trusted_dir} ({TRUSTED_DIR_SETTING})"
        )
    if not real_path.is_file():
        raise BlackBoxLoadError(f"no model file at {path}")
    model = joblib.load(real_path)
    return _from_object(model, kind=kind, feature_names=feature_names, name=f"pickle:{path}", **options)


def from_import_path(
    spec: str,
    *,
    kind: Kind | None = None,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None = None,
    trusted_prefixes: Sequence[str] | None = None,
    trusted_objects: Sequence[str] = (),
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """Import `package.module:attribute` (attribute may be dotted): an estimator, or a batch function with kind.

    With `trusted_prefixes` (what the server passes) the path must stay inside the operator's code: see
    `resolve_trusted_import`. Without it (a local caller naming its own code) any import path is used.
    """
    if not IMPORT_PATH.fullmatch(spec):
        raise BlackBoxLoadError(f"an import path looks like 'package.module:attribute', got {spec!r}")
    if trusted_prefixes is None:
        found = _import_object(spec)
    else:
        found = resolve_trusted_import(spec, trusted_prefixes, trusted_objects)
    return _from_object(
        found, kind=kind, classes=classes, feature_names=feature_names, name=f"import:{spec}", **options
    )


def _import_object(spec: str) -> Any:
    module_name, attribute_path = spec.split(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise BlackBoxLoadError(f"cannot import module {module_name!r} for {spec!r}: {exc}") from exc
    for attribute in attribute_path.split("."):
        try:
            found = getattr(found, attribute)
        except AttributeError as exc:
            raise BlackBoxLoadError(f"module {module_name!r} has no attribute {attribute_path!r}") from exc
    return found


def _under(module_name: object, prefixes: Sequence[str]) -> bool:
    return isinstance(module_name, str) and any(
        module_name == prefix or module_name.startswith(prefix + ".") for prefix in prefixes
    )


def resolve_trusted_import(spec: str, prefixes: Sequence[str], exact: Sequence[str] = ()) -> Any:
    """The object `spec` names, only if it is the operator's own code.

    A module prefix alone is not enough: a trusted module that imports `os` would hand out `pkg:os.system`. So the
    module must be under a trusted prefix, no name may be a dunder (`__globals__`, `__builtins__`), the walk may
    only pass through classes defined under a trusted prefix, and the object reached must itself be defined there
    (a function's or class's `__module__`; an instance's class), unless the operator lists `spec` exactly.
    """
    module_name, attribute_path = spec.split(":")
    if spec in exact:
        return _import_object(spec)
    refused = f"import path {spec!r} is refused: "
    if not _under(module_name, prefixes):
        raise Forbidden(
            refused + f"its module is not under XPLAIN_TRUSTED_IMPORT_PREFIXES ({', '.join(prefixes) or 'none set'})"
        )
    names = [*module_name.split("."), *attribute_path.split(".")]
    if any(name.startswith("__") for name in names):
        raise Forbidden(refused + "dunder names (such as __globals__ or __builtins__) are not followed")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise BlackBoxLoadError(f"cannot import module {module_name!r} for {spec!r}: {exc}") from exc
    for depth, attribute in enumerate(attribute_path.split(".")):
        if depth and not (isinstance(found, type) and _under(found.__module__, prefixes)):
            raise Forbidden(refused + "only classes defined in a trusted module may be walked through")
        try:
            found = inspect.getattr_static(found, attribute)
        except AttributeError:
            raise BlackBoxLoadError(f"module {module_name!r} has no attribute {attribute_path!r}") from None
        if isinstance(found, (staticmethod, classmethod)):
            found = found.__func__
    if inspect.ismodule(found):
        raise Forbidden(refused + "it names a module, not a model or function")
    if isinstance(found, BaseEstimator) and not callable(found):
        return found  # a fitted model bound in the trusted module: only its predict methods are ever called
    is_code = isinstance(found, type) or inspect.isfunction(found)
    home = found.__module__ if is_code else type(found).__module__
    if not _under(home, prefixes):
        raise Forbidden(
            refused + f"it is defined in {home!r}, not in a trusted module; list it in XPLAIN_TRUSTED_IMPORT_OBJECTS "
            "to allow it exactly"
        )
    return found


def from_http(
    url: str,
    *,
    kind: Kind,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None = None,
    timeout_s: float = 30.0,
    allowed_hosts: Sequence[str] | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """Query a model served over HTTP: POST `{"inputs": [...]}`, answer `{"outputs": [...]}`.

    With `allowed_hosts` (what the server passes: XPLAIN_ALLOWED_MODEL_HOSTS) every request goes only to an
    address that `HostPolicy` allows; without it (a local caller naming its own model) any URL is used.
    """
    policy = HostPolicy(allowed_hosts) if allowed_hosts is not None else None
    if policy is not None:
        try:
            policy.check(url)  # refuse at registration, not at the first query
        except BlackBoxUnavailableError as exc:  # a name that does not resolve: the URL is wrong
            raise BlackBoxLoadError(str(exc)) from exc
    return BlackBox(
        HttpModel(url, timeout_s=timeout_s, policy=policy),
        kind=kind,
        classes=classes,
        feature_names=feature_names,
        name=url,
        **options,
    )


class ModelHostRefused(BlackBoxLoadError, Forbidden):
    """A model URL whose host the operator has not allowed, or that resolves to an address it may not reach."""

    status = 403


#: Cloud metadata services; most are link-local already, listed so that the refusal names them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)


class HostPolicy:
    """Where URL models may live: entries are exact host names, or IP addresses / CIDRs.

    A host is allowed when it is listed by name, or when every address it resolves to lies in a listed network.
    Either way, each resolved address that is not public (loopback, private, link-local, metadata, reserved,
    multicast) is refused unless a listed network covers it: naming a host does not open the internal network.
    """

    def __init__(self, allowed: Sequence[str]) -> None:
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in (e.strip() for e in allowed if e.strip()):
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.lower().rstrip("."))

    def check(self, url: str) -> list[str]:
        """The addresses `url`'s host resolves to, all allowed; otherwise ModelHostRefused saying why."""
        if not self.names and not self.networks:
            raise ModelHostRefused(
                "models registered by URL are off: the operator has not set XPLAIN_ALLOWED_MODEL_HOSTS"
            )
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ModelHostRefused(f"a model URL is http:// or https:// with a host, got {url!r}")
        host = parsed.host.lower().rstrip(".")
        addresses = _resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
        named = host in self.names
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            covered = any(ip in network for network in self.networks)
            if covered:
                continue
            if not named:
                raise ModelHostRefused(f"host {host} ({ip}) is not in XPLAIN_ALLOWED_MODEL_HOSTS")
            if ip in METADATA_ADDRESSES or not ip.is_global or ip.is_multicast:
                raise ModelHostRefused(
                    f"host {host} resolves to {ip}, a loopback, private, link-local or metadata address; "
                    "list its address or network in XPLAIN_ALLOWED_MODEL_HOSTS to allow it"
                )
        return addresses


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BlackBoxUnavailableError(f"cannot resolve the model host {host}: {exc.strerror or exc}") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


class HttpModel:
    """A batch function backed by an HTTP endpoint; one connection pool, closed by `BlackBox.close()`.

    Under a `HostPolicy` each request re-resolves the host, checks the addresses and connects to the checked one
    (the name kept for the Host header and TLS), so a DNS answer that changes after the check is not followed.
    Redirects are refused, and the remote's answer is never echoed back in errors.
    """

    def __init__(self, url: str, *, timeout_s: float, policy: HostPolicy | None = None) -> None:
        self.url = url
        self.policy = policy
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def __call__(self, batch: np.ndarray | list[str]) -> Any:
        inputs = batch.tolist() if isinstance(batch, np.ndarray) else list(batch)
        try:
            response = self._client.send(self._request(inputs))
        except httpx.TransportError as exc:
            raise BlackBoxUnavailableError(
                f"cannot reach the black-box endpoint {self.url}: {type(exc).__name__}"
            ) from exc
        if response.is_redirect:
            raise BlackBoxUnavailableError(
                f"black-box endpoint {self.url} answered a redirect (HTTP {response.status_code}); "
                "redirects are not followed: register the final URL"
            )
        if response.is_error:
            raise BlackBoxUnavailableError(f"black-box endpoint {self.url} failed with HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise BlackBoxOutputError(f"black-box endpoint {self.url} did not answer JSON") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("outputs"), list):
            raise BlackBoxOutputError(
                f'black-box endpoint {self.url} should answer {{"outputs": [...]}}, got a {type(payload).__name__}'
                + (f" with keys {sorted(map(str, payload))[:10]}" if isinstance(payload, dict) else "")
            )
        return payload["outputs"]

    def _request(self, inputs: list[Any]) -> httpx.Request:
        if self.policy is None:
            return self._client.build_request("POST", self.url, json={"inputs": inputs})
        url = httpx.URL(self.url)
        address = self.policy.check(self.url)[0]
        pinned = url.copy_with(host=address)
        request = self._client.build_request(
            "POST", pinned, json={"inputs": inputs}, headers={"Host": url.netloc.decode("ascii")}
        )
        if url.scheme == "https":
            request.extensions["sni_hostname"] = url.host
        return request

    def close(self) -> None:
        self._client.close()


def _from_object(
    model: Any,
    *,
    kind: Kind | None,
    classes: Sequence[Any] | None = None,
    feature_names: Sequence[str] | None,
    name: str,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """Wrap whatever a file or import path held: a scikit-learn estimator or a batch function."""
    if isinstance(model, BaseEstimator):
        if classes is not None:
            raise BlackBoxLoadError(f"{name} is an estimator, which names its own classes; do not pass classes")
        return from_estimator(model, kind=kind, feature_names=feature_names, name=name, **options)
    if callable(model) and not isinstance(model, type):
        if kind is None:
            raise BlackBoxLoadError(f"{name} is a plain function; pass kind ('tabular', 'text' or 'module')")
        return from_callable(model, kind=kind, classes=classes, feature_names=feature_names, name=name, **options)
    raise BlackBoxLoadError(f"{name} is a {type(model).__name__}, not a scikit-learn estimator or a batch function")


def _starts_with_text_vectorizer(estimator: BaseEstimator) -> bool:
    return isinstance(estimator, Pipeline) and isinstance(estimator.steps[0][1], TEXT_VECTORIZERS)


def _infer_kind(estimator: BaseEstimator, name: str) -> Kind:
    if is_classifier(estimator):
        return "text" if _starts_with_text_vectorizer(estimator) else "tabular"
    raise BlackBoxLoadError(
        f"{name} is not a classifier, so its kind cannot be inferred; for a text model that returns one float "
        "per text pass kind='module'"
    )


def _module_function(estimator: BaseEstimator, name: str) -> BatchFunction:
    """A module answers one float per text: a regressor's prediction or a binary classifier's decision score."""
    if is_regressor(estimator):
        return estimator.predict
    if hasattr(estimator, "decision_function"):
        return estimator.decision_function
    raise BlackBoxLoadError(f"{name} is neither a regressor nor has decision_function, so it cannot be a module")


def _feature_names(estimator: BaseEstimator, given: Sequence[str] | None, name: str) -> list[str] | None:
    """Explicit names, else those the estimator was fitted with, else x0..x{n-1}; None if the count is unknown."""
    n_features = getattr(estimator, "n_features_in_", None)
    if given is not None:
        if n_features is not None and len(given) != n_features:
            raise BlackBoxLoadError(f"{name} takes {n_features} features but {len(given)} feature names were given")
        return list(given)
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if fitted_names is not None:
        return [str(feature) for feature in fitted_names]
    if n_features is not None:
        return [f"x{index}" for index in range(n_features)]
    return None
