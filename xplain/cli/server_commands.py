"""`xplain serve`: the REST API (and chat page) on the configured LLM."""

from __future__ import annotations

import logging
import os
import threading
from typing import Annotated

import typer
import uvicorn

from xplain.cli.common import app, console
from xplain.data.demo import DEMO_MODELS
from xplain.settings import get_settings, unknown_environment

log = logging.getLogger("xplain.server")

#: Seconds the app's own shutdown (jobs cancelled, store closed) may take after open requests were given theirs.
SHUTDOWN_STEPS_S = 5.0


class DrainingServer(uvicorn.Server):
    """uvicorn that, on SIGTERM or Ctrl-C, stops within a bounded time: open requests get
    `timeout_graceful_shutdown` seconds, then are cancelled; the app shuts down (running jobs stay 'running' in
    the store and resume on the next start). A native LLM call cannot be interrupted from Python, and the
    interpreter would wait for its thread at exit, so past the deadline the process ends without waiting."""

    def handle_exit(self, sig: int, frame) -> None:
        if not self.should_exit:
            self.config.app.state.draining = True  # event streams end at their next tick instead of being cut off
            deadline = (self.config.timeout_graceful_shutdown or 0) + SHUTDOWN_STEPS_S
            timer = threading.Timer(deadline, _exit_now, args=(deadline,))
            timer.daemon = True
            timer.start()
        super().handle_exit(sig, frame)


def _exit_now(deadline: float) -> None:
    log.warning("shutdown took over %.0f s (a native call still running); exiting without waiting", deadline)
    os._exit(0)


@app.command(help=f"Serve the REST API; the demo models ({', '.join(DEMO_MODELS)}) are registered unless --no-demo.")
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (XPLAIN_SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (XPLAIN_SERVER_PORT).")] = None,
    demo: Annotated[bool, typer.Option(help="Register the built-in demo models at start.")] = True,
) -> None:
    from xplain.server.app import create_app

    settings = get_settings()
    for line in unknown_environment():
        console.print(f"[yellow]warning:[/yellow] {line}")
    host = host or settings.server_host
    port = port or settings.server_port
    application = create_app(settings, register_demo_models=demo)
    console.print(f"xplain {settings.llm_backend} backend · API on [bold]http://{host}:{port}[/bold] (docs at /docs)")
    config = uvicorn.Config(
        application, host=host, port=port, log_level="warning", timeout_graceful_shutdown=settings.shutdown_grace_s
    )
    DrainingServer(config).run()
