"""Build the `LLM` the settings ask for: `XPLAIN_LLM_BACKEND` is the one switch between backends."""

from __future__ import annotations

from xplain.llm.backends.base import Backend
from xplain.llm.cache import ResponseCache
from xplain.llm.client import LLM
from xplain.settings import Settings, get_settings


def make_backend(settings: Settings) -> Backend:
    match settings.llm_backend:
        case "llamacpp":
            from xplain.llm.backends.llamacpp import LlamaCppBackend

            return LlamaCppBackend(
                settings.llm_model_path,
                context_size=settings.llm_context_size,
                threads=settings.llm_threads,
                workers=settings.llm_workers,
                parallel=settings.llm_parallel,
            )
        case "openai":
            from xplain.llm.backends.openai_compat import OpenAIBackend

            return OpenAIBackend(
                settings.llm_base_url,
                api_key=settings.llm_api_key.get_secret_value(),
                model=settings.llm_model,
                max_concurrency=settings.llm_max_concurrency,
                timeout_s=settings.llm_timeout_s,
                max_retries=settings.llm_max_retries,
                retry_base_delay_s=settings.llm_retry_base_delay_s,
                # the server reports its own limit (vLLM); only a size set on purpose overrides it
                context_size=settings.llm_context_size if "llm_context_size" in settings.model_fields_set else None,
            )
        case "vllm":
            from xplain.llm.backends.vllm_engine import VLLMEngineBackend

            if not settings.llm_model:
                raise ValueError("the vllm backend needs a model: set XPLAIN_LLM_MODEL (a Hugging Face name or path)")
            return VLLMEngineBackend(
                settings.llm_model,
                gpu_memory_utilization=settings.llm_gpu_memory_utilization,
                # vLLM reads the model's own limit; only a context size set on purpose overrides it
                max_model_len=settings.llm_context_size,
                batch_invariant=settings.llm_batch_invariant,
            )
        case "fake":
            from xplain.llm.backends.fake import FakeBackend, plumbing_reply

            return FakeBackend(default=plumbing_reply, delay_s=settings.llm_fake_delay_s)
    raise ValueError(f"unknown LLM backend {settings.llm_backend!r}")


def make_llm(settings: Settings | None = None, *, backend: Backend | None = None) -> LLM:
    """An `LLM` over the configured backend (or the one given), with the configured cache."""
    settings = settings or get_settings()
    cache = ResponseCache(settings.cache_path) if settings.cache_enabled else None
    return LLM(
        backend or make_backend(settings),
        cache=cache,
        default_max_tokens=settings.llm_max_tokens,
        structured_attempts=settings.llm_structured_attempts,
    )
