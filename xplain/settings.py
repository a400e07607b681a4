"""All of xplain's settings in one place: environment variables `XPLAIN_*`, or a TOML file.

The file is `xplain.toml` in the working directory, or the path in `XPLAIN_CONFIG`; environment variables
win over the file. Changing `XPLAIN_LLM_BACKEND` is the one setting that moves a run from the embedded CPU model
to a vLLM server or engine (DESIGN.md rule 6).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

BackendName = Literal["llamacpp", "openai", "vllm", "fake"]


def _config_file() -> Path:
    return Path(os.environ.get("XPLAIN_CONFIG", "xplain.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XPLAIN_", extra="forbid")

    llm_backend: BackendName = Field("llamacpp", description="Which LLM backend answers.")
    llm_model: str | None = Field(
        None, description="Model name for the openai/vllm backends; the server's first model when unset."
    )
    llm_model_path: Path | None = Field(
        None, description="A GGUF file for the llamacpp backend; the packaged SmolLM2-135M-Instruct when unset."
    )
    llm_base_url: str = Field("http://127.0.0.1:8000/v1", description="Base URL of an OpenAI-compatible server.")
    llm_api_key: SecretStr = Field(SecretStr("EMPTY"), description="API key for the OpenAI-compatible server.")
    llm_max_concurrency: int = Field(16, ge=1, description="Requests in flight at once to the LLM backend.")
    llm_timeout_s: float = Field(120.0, gt=0, description="Timeout of one HTTP request to the LLM server.")
    llm_max_retries: int = Field(4, ge=0, description="Retries on connection errors, 429 and 5xx.")
    llm_retry_base_delay_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry.")
    llm_context_size: int | None = Field(
        None,
        ge=256,
        description="Context window: for llamacpp, the KV-cache cells of each worker, shared by its sequences (the "
        "GGUF's trained length when unset); for vllm, the longest sequence (the model's own limit when unset).",
    )
    llm_threads: int | None = Field(None, ge=1, description="llamacpp: CPU threads in all (every core when unset).")
    llm_workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="llamacpp: contexts decoding side by side on the one model, the threads shared among them (one "
        "per thread, at most 8, when unset). Each holds its own KV cache: 22.5 KiB a token of llm_context_size for "
        "the packaged model, 180 MiB at 8192 (about 250 MiB a worker with its compute buffers).",
    )
    llm_parallel: int | None = Field(
        None,
        ge=1,
        le=128,
        description="llamacpp: requests the workers hold at once, shared among them (8 per thread, at most 32, "
        "when unset); each worker generates one reply at a time, so that a reply is the same alone or in a batch.",
    )
    llm_max_tokens: int = Field(256, ge=1, description="Default cap on generated tokens.")
    llm_structured_attempts: int = Field(3, ge=1, description="Tries to get a schema-valid reply before failing.")
    llm_gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vllm engine: GPU memory share.")
    llm_batch_invariant: bool = Field(
        True,
        description="vllm engine: vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT=1; vLLM 0.11.1+, NVIDIA compute "
        "capability 8.0+), so a request's scores do not depend on what else is in the batch, at some speed cost. "
        "The embedded engine is batch-invariant always.",
    )

    cache_enabled: bool = Field(True, description="Serve repeated temperature-0 LLM requests from a cache.")
    cache_path: Path | None = Field(None, description="SQLite file for an on-disk LLM cache; memory only when unset.")

    llm_fake_delay_s: float = Field(0.0, ge=0, description="fake backend: seconds each batch takes (for tests).")

    server_host: str = Field("127.0.0.1", description="Address `xplain serve` listens on.")
    server_port: int = Field(8080, ge=1, le=65535, description="Port `xplain serve` listens on.")
    database_url: str = Field(
        "sqlite:///xplain-data/xplain.sqlite", description="Jobs and models database (SQLAlchemy URL)."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated; if set, every API call needs one of these (Bearer or X-API-Key).",
    )
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated operator keys: API keys that also list, read, cancel and resume every key's jobs. "
        "Each other key sees only the jobs, models and conversations it made (and the demos).",
    )
    max_body_bytes: int = Field(
        10_000_000, ge=1024, description="Largest request body the API accepts (counted as it arrives, chunked too)."
    )
    sync_timeout_s: float = Field(
        120.0, gt=0, description="Time a synchronous API request may take before it is stopped; longer work: POST /jobs."
    )
    sync_concurrency: int = Field(
        2,
        ge=1,
        description="Synchronous method calls (POST /methods/...) that run at once; the rest wait in a queue. Side by "
        "side, calls share the backend and each takes longer: match it to what the backend serves at once (the "
        "embedded model's workers; more for a GPU server).",
    )
    sync_queue: int = Field(
        8,
        ge=0,
        description="Synchronous method calls that may wait for a free place; over it, or when a call could not "
        "finish within XPLAIN_SYNC_TIMEOUT_S, the answer is 503 with Retry-After at once.",
    )
    shutdown_grace_s: float = Field(
        3.0, ge=0, description="On SIGTERM, seconds open requests get to finish before they are cancelled."
    )
    allowed_model_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated hosts and CIDRs that models registered by URL may live on (none: URL models are off). "
            "Loopback, private, link-local and metadata addresses are refused unless an entry covers them."
        ),
    )
    allowed_llm_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated base URLs of OpenAI-compatible servers that LLM classifiers registered over the "
        "API may run on, besides the configured LLM (none: only the configured LLM).",
    )
    max_batch_rows: int = Field(100_000, ge=1, description="Most rows one batch job may hold.")
    data_dir: Path | None = Field(None, description="The only directory batch jobs may read data files from.")
    job_concurrency: int | None = Field(
        None,
        ge=1,
        description="Chunks of rows one job runs at once; unset: 2 for LLM methods (one chunk's black-box work "
        "beside another's LLM round), 8 for the others.",
    )
    job_chunk_size: int | None = Field(
        None,
        ge=1,
        description="Rows a method receives together; unset: for LLM methods as many as the LLM backend works on at "
        "once (one batched round across the rows), 4 for the others.",
    )

    classifier_dir: Path = Field(
        Path("xplain-data/classifiers"), description="Where the API saves the LML-DAP / TBM classifiers it fits."
    )
    trusted_model_dir: Path | None = Field(
        None, description="The only directory from which joblib/pickle model files may be loaded."
    )
    trusted_import_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated module prefixes the API may load models from by import path (none: refused); "
        "only objects defined in those modules resolve, never what they import.",
    )
    trusted_import_objects: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated exact import paths (`pkg.mod:obj`) the API may load even when `obj` is defined "
        "elsewhere (a model object from another library re-exported by your module).",
    )
    chat_mode: Literal["planner", "agent", "auto"] = Field(
        "auto",
        description="Chat: `planner` (the LLM only chooses; templates answer), `agent` (free tool calling), or "
        "`auto` (planner on the embedded llamacpp backend, agent elsewhere).",
    )
    chat_rephrase: bool = Field(
        False, description="Planner: let the LLM reword templated answers (kept only if every number survives)."
    )
    blackbox_query_budget: int | None = Field(None, ge=1, description="Default cap on black-box queries.")

    @field_validator(
        "api_keys",
        "admin_api_keys",
        "trusted_import_prefixes",
        "trusted_import_objects",
        "allowed_model_hosts",
        "allowed_llm_endpoints",
        mode="before",
    )
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_config_file()))


# Variables with the prefix that are not settings on purpose: the config file's path, and the test suite's own.
NOT_SETTINGS = ("XPLAIN_CONFIG", "XPLAIN_TEST_")


def unknown_environment(environ: Mapping[str, str] = os.environ) -> list[str]:
    """A line for each `XPLAIN_*` variable that names no setting, with the closest name: pydantic-settings ignores
    such a variable without a word, so a typo such as XPLAIN_API_KEY would leave the API open."""
    known = [name.upper() for name in Settings.model_fields]
    lines = []
    for variable in sorted(environ):
        name = variable.removeprefix("XPLAIN_")
        if variable.startswith("XPLAIN_") and name not in known and not variable.startswith(NOT_SETTINGS):
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            hint = f"; did you mean XPLAIN_{close[0]}?" if close else "; `xplain check` lists the settings"
            lines.append(f"{variable} is not an xplain setting and is ignored{hint}")
    return lines


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; tests build `Settings(...)` directly instead."""
    return Settings()
