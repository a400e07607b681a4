"""An LLM as the black box: a prompt template with a `{text}` slot, a set of labels with the words that stand for
them, and the LLM it runs on. Its class probabilities are the labels' likelihoods after the prompt, normalised
(one `LLM.score` call per batch of rows), so every method explains it as it explains any classifier, and every
check (PGI / PGU, flips) re-queries the LLM.

The black-box API is synchronous (`predict_proba(X)`, called from worker threads, from LIME's and SHAP's own loops,
or from plain code) while the LLM is async. The box runs its LLM calls on an event loop of its own, on a thread of
its own, whatever thread or loop asks: no loop is nested, and a server's loop is never blocked waiting on itself.
Its LLM's calls and tokens are handed back to the caller's usage meters, so a result's `cost.llm` counts them.
"""

from __future__ import annotations

import json
import threading
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Unpack

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from scipy.special import softmax

from xplain.blackbox.errors import BlackBoxLoadError, BlackBoxRowRejected
from xplain.blackbox.model import BlackBox, WrapperOptions
from xplain.errors import Forbidden, InvalidInput, plain_validation_error
from xplain.llm import (
    LLM,
    LLMError,
    LLMRequestError,
    Message,
    ScoreRequest,
    Scores,
    Usage,
    make_llm,
    record_usage,
    track_usage,
)
from xplain.llm.loop_thread import EventLoopThread
from xplain.settings import Settings, get_settings

TEXT_SLOT = "{text}"
#: Stands for the input while a chat template is rendered, so that it is rendered once per classifier.
SLOT_MARK = "XPLAININPUTSLOT7Q"
ALLOWED_ENDPOINTS_SETTING = "XPLAIN_ALLOWED_LLM_ENDPOINTS"


class LLMEndpoint(BaseModel):
    """An OpenAI-compatible server (vLLM, llama.cpp's server, OpenAI) for the classifier to run on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        pattern=r"^https?://",
        max_length=500,
        description=f"The server's /v1 URL; one listed in {ALLOWED_ENDPOINTS_SETTING}.",
    )
    model: str | None = Field(None, min_length=1, max_length=200, description="The server's first model if unset.")

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


class LLMClassifierSpec(BaseModel):
    """What an LLM classifier is: its prompt, its labels and where it runs. Shown with the model, as it was given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(
        min_length=len(TEXT_SLOT),
        max_length=20_000,
        description="The prompt, with `{text}` exactly once where the input goes (a table row as `name = value` "
        "lines). The labels' words are scored right after it, so end it where the label is written, "
        "e.g. 'Review: {text}\\nSentiment:'. In a chat classifier it is the user's turn.",
    )
    chat: bool = Field(
        False,
        description="Send the template as a chat: the user's turn (after `system`, if given), rendered with the "
        "LLM's own chat template, the labels scored as the first words of the assistant's reply. True by "
        "itself when `system` is given.",
    )
    system: str | None = Field(
        None, min_length=1, max_length=20_000, description="A system turn before the template's user turn."
    )
    labels: dict[str, str] = Field(
        min_length=2,
        max_length=20,
        description="Each class and the words scored for it after the prompt, e.g. "
        "{'negative': ' negative', 'positive': ' positive'} (mind the leading space).",
    )
    feature_names: list[str] | None = Field(
        None, min_length=1, max_length=200, description="For table rows: the columns, rendered as `name = value`."
    )
    endpoint: LLMEndpoint | None = Field(None, description="Where it runs; the configured LLM when unset.")

    @model_validator(mode="before")
    @classmethod
    def _system_means_chat(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("system") is not None:
            if data.get("chat") is False:
                raise ValueError("a system turn makes a chat: leave `chat` out or set it true")
            return {**data, "chat": True}
        return data

    @field_validator("template")
    @classmethod
    def _one_slot(cls, template: str) -> str:
        found = template.count(TEXT_SLOT)
        if found != 1:
            raise ValueError(f"the template must contain {TEXT_SLOT} exactly once, where the input goes; found {found}")
        return template

    @field_validator("labels")
    @classmethod
    def _words(cls, labels: dict[str, str]) -> dict[str, str]:
        for label, words in labels.items():
            if not label.strip() or len(label) > 100:
                raise ValueError(f"a label name is 1 to 100 characters, not blank; got {label[:120]!r}")
            if not words.strip() or len(words) > 100:
                raise ValueError(f"label {label!r}: its words are 1 to 100 characters, not blank: {words[:120]!r}")
        repeated = sorted({w for w in labels.values() if list(labels.values()).count(w) > 1})
        if repeated:
            raise ValueError(f"two labels have the same words {repeated[0]!r}; the LLM could not tell them apart")
        return labels

    @field_validator("feature_names")
    @classmethod
    def _names(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        if any(not n.strip() or len(n) > 100 for n in names):
            raise ValueError("feature names are 1 to 100 characters, not blank")
        if len(set(names)) != len(names):
            raise ValueError("feature names must be distinct")
        return names

    @property
    def kind(self) -> str:
        return "tabular" if self.feature_names else "text"

    def messages(self, user: str) -> list[Message]:
        """The chat turns, with `user` as the user's turn."""
        system = [Message(role="system", content=self.system)] if self.system is not None else []
        return [*system, Message(role="user", content=user)]

    def slot_text(self, row: Any) -> str:
        """What goes in the `{text}` slot: a text as it is, a table row as `name = value` lines."""
        if self.feature_names:
            return "\n".join(f"{name} = {format(float(value), '.10g')}" for name, value in zip(self.feature_names, row))
        return str(row)


class LLMClassifier:
    """The batch function behind an LLM black box: rows -> probability rows, one `score` call per batch, made on
    the box's own event loop. It closes `llm` in `close` when it `owns` it (built for this box alone)."""

    def __init__(self, spec: LLMClassifierSpec, llm: LLM, *, owns: bool = False) -> None:
        self.spec = spec
        self.llm = llm
        self.owns = owns
        self.continuations = list(spec.labels.values())
        #: How the LLM scored the rows so far (`Scores.scoring`: next_token, prompt_logprobs, prefix_tree...).
        self.scoring: Counter[str] = Counter()
        self._scoring_lock = threading.Lock()
        self._frame: tuple[str, str] | Literal[False] | None = None  # False: the server takes chat turns
        self._loop = EventLoopThread("xplain-llm-blackbox")

    def __call__(self, batch: Sequence[Any]) -> np.ndarray:
        """Probability rows. The LLM's calls and tokens count in the caller's `track_usage()` blocks (a method's
        `cost.llm`); a row whose prompt the LLM refuses (longer than its context) is named in a
        `BlackBoxRowRejected`, which `run_units` turns into that row's failure alone."""
        texts = [self.spec.slot_text(row) for row in batch]
        scored, usage = self._loop.run(lambda: self._score(texts))
        record_usage(usage)
        for answer in scored:
            if isinstance(answer, InvalidInput):
                raise BlackBoxRowRejected(f"the classifier's LLM ({self.llm.name}) cannot take this input: {answer}")
            if isinstance(answer, Exception):
                raise answer
        with self._scoring_lock:
            self.scoring.update(s.scoring for s in scored)
        return softmax(np.array([s.logprobs for s in scored], dtype=np.float64), axis=1)

    async def _score(self, texts: list[str]) -> tuple[list[Scores | LLMError], Usage]:
        frame = await self.frame()
        if frame is None:  # the server applies its chat template itself: send the turns
            user = self.spec.template.replace
            requests = [
                ScoreRequest(messages=self.spec.messages(user(TEXT_SLOT, text)), continuations=self.continuations)
                for text in texts
            ]
        else:
            head, tail = frame
            requests = [ScoreRequest(prompt=head + text + tail, continuations=self.continuations) for text in texts]
        with track_usage() as meter:
            scored = await self.llm.score(requests, on_error="return")
        return scored, meter.usage

    async def frame(self) -> tuple[str, str] | None:
        """The raw prompt before and after the input: the template's two sides, or for a chat the LLM's chat
        template rendered once around a marker where the input goes; None for a chat on a server that does not
        lend its chat template but applies it itself (OpenAI's chat models), which is sent the turns."""
        if self._frame is None:
            if not self.spec.chat:
                head, tail = self.spec.template.split(TEXT_SLOT)
                self._frame = (head, tail)
            else:
                turns = self.spec.messages(self.spec.template.replace(TEXT_SLOT, SLOT_MARK))
                try:
                    rendered = await self.llm.render_chat(turns)
                except LLMRequestError:
                    if not self.llm.scores_chats:
                        raise
                    self._frame = False
                    return None
                if rendered.count(SLOT_MARK) != 1:
                    raise LLMRequestError(f"the chat template of {self.llm.name} did not keep the input's place")
                head, tail = rendered.split(SLOT_MARK)
                self._frame = (head, tail)
        return self._frame or None

    def close(self) -> None:
        """Close the LLM it owns (on the loop it ran on), then the loop."""
        if self.owns:
            self._loop.run(self.llm.aclose)
        self._loop.stop()


def from_llm(
    template: str,
    labels: Mapping[str, str] | Sequence[str],
    *,
    feature_names: Sequence[str] | None = None,
    system: str | None = None,
    chat: bool = False,
    endpoint: LLMEndpoint | Mapping[str, Any] | str | None = None,
    llm: LLM | None = None,
    settings: Settings | None = None,
    name: str | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """An LLM classifier as a black box: `from_llm("Review: {text}\\nSentiment:", ["negative", "positive"])`.

    `labels` maps each class to the words scored for it, or lists the classes (each scored as ' ' + its name).
    With `system` (or `chat=True`) the template is a chat's user turn, rendered with the LLM's chat template.
    It runs on `llm`, else on `endpoint` (an OpenAI-compatible base URL, or `{"base_url", "model"}`), else on
    the configured LLM (`settings`, default the environment's).
    """
    words = dict(labels) if isinstance(labels, Mapping) else {str(label): f" {label}" for label in labels}
    if isinstance(endpoint, str):
        endpoint = {"base_url": endpoint}
    try:
        spec = LLMClassifierSpec(
            template=template,
            labels=words,
            feature_names=feature_names,
            system=system,
            chat=chat or system is not None,
            endpoint=endpoint,
        )
    except ValidationError as error:
        raise BlackBoxLoadError(f"bad LLM classifier: {plain_validation_error(error, LLMClassifierSpec)}") from None
    return from_llm_spec(spec, llm=llm, settings=settings, name=name, **options)


def from_llm_file(
    path: str | Path,
    *,
    llm: LLM | None = None,
    settings: Settings | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """An LLM classifier described by a JSON or TOML file holding `LLMClassifierSpec`'s fields."""
    path = Path(path)
    if not path.is_file():
        raise BlackBoxLoadError(f"no LLM classifier file at {path}")
    try:
        raw = path.read_text(encoding="utf-8")
        data = tomllib.loads(raw) if path.suffix.lower() == ".toml" else json.loads(raw)
        spec = LLMClassifierSpec.model_validate(data)
    except (ValueError, UnicodeDecodeError) as error:
        detail = plain_validation_error(error, LLMClassifierSpec) if isinstance(error, ValidationError) else error
        raise BlackBoxLoadError(f"{path} is not a valid LLM classifier (JSON or TOML): {detail}") from None
    return from_llm_spec(spec, llm=llm, settings=settings, name=f"llm:{path}", **options)


class LLMEndpointRefused(BlackBoxLoadError, Forbidden):
    """An endpoint the operator has not listed for LLM classifiers."""

    status = 403


def from_llm_spec(
    spec: LLMClassifierSpec,
    *,
    llm: LLM | None = None,
    settings: Settings | None = None,
    allowed_endpoints: Sequence[str] | None = None,
    name: str | None = None,
    **options: Unpack[WrapperOptions],
) -> BlackBox:
    """The black box a spec describes. With `allowed_endpoints` (what the server passes) only a listed endpoint
    may be named; without it (a local caller) any.

    It runs on `llm`, shared (in-process LLMs: the embedded model, the vLLM engine, the fake), except that an LLM
    whose client belongs to the event loop it first ran on (the OpenAI-compatible backend's HTTP session) cannot be
    called from the box's own loop as well as its owner's: when `settings` are given, the box builds its own from
    them instead. Without `llm` it builds its own from `settings` (default: the environment's)."""
    if spec.endpoint is not None:
        url = spec.endpoint.base_url
        if allowed_endpoints is not None and url not in {e.strip().rstrip("/") for e in allowed_endpoints}:
            raise LLMEndpointRefused(
                f"LLM endpoint {url} is not one the operator allows; list it in {ALLOWED_ENDPOINTS_SETTING}"
                if allowed_endpoints
                else f"LLM classifiers on other endpoints are off: the operator has not set {ALLOWED_ENDPOINTS_SETTING}"
            )
        model = LLMClassifier(spec, make_llm(endpoint_settings(settings or get_settings(), spec.endpoint)), owns=True)
    elif llm is not None and not (settings is not None and llm.backend.binds_event_loop):
        model = LLMClassifier(spec, llm)
    else:
        model = LLMClassifier(spec, make_llm(settings or get_settings()), owns=True)
    return BlackBox(
        model,
        kind=spec.kind,
        classes=list(spec.labels),
        feature_names=spec.feature_names,
        name=name or f"llm:{model.llm.name}",
        **options,
    )


def endpoint_settings(settings: Settings, endpoint: LLMEndpoint) -> Settings:
    """The settings for an LLM on `endpoint`: the configured API key goes only to the configured server."""
    same_server = endpoint.base_url == settings.llm_base_url.rstrip("/")
    return settings.model_copy(
        update={
            "llm_backend": "openai",
            "llm_base_url": endpoint.base_url,
            "llm_model": endpoint.model,
            "llm_api_key": settings.llm_api_key if same_server else SecretStr("EMPTY"),
        }
    )
