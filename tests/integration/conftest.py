"""Real models and real servers: the embedded GGUF, and llama-cpp-python's OpenAI-compatible server on it."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from xplain.llm.backends.llamacpp import packaged_model_path
from xplain.testing.serve import free_port


@pytest.fixture(scope="session")
def llama_server_url(tmp_path_factory):
    """llama-cpp-python's server on the packaged model, on 127.0.0.1.

    `add_bos_token` is forced on: without a BOS token that server's echo logprobs are shifted by one position
    (llama-cpp-python issue #1983), and scoring through `echo` would read the wrong numbers.
    """
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(packaged_model_path()),
        "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--logits_all", "true",
        "--kv_overrides", "tokenizer.ggml.add_bos_token=bool:true",
    ]  # fmt: skip
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"llama-cpp-python server did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture
async def embedded_llm():
    """The embedded model, uncached, so each test measures real calls."""
    from xplain.llm import make_llm
    from xplain.settings import Settings

    client = make_llm(Settings(llm_backend="llamacpp", cache_enabled=False))
    yield client
    await client.aclose()
