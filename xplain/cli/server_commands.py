"""`xplain serve`: the REST API (and chat page) on the configured LLM."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from xplain.cli.common import app, console
from xplain.settings import get_settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (XPLAIN_SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (XPLAIN_SERVER_PORT).")] = None,
    demo: Annotated[bool, typer.Option(help="Register the built-in demo models at start.")] = True,
) -> None:
    """Serve the REST API; the demo models `breast_cancer` and `reviews` are registered unless --no-demo."""
    from xplain.server.app import create_app

    settings = get_settings()
    host = host or settings.server_host
    port = port or settings.server_port
    application = create_app(settings, register_demo_models=demo)
    console.print(f"xplain {settings.llm_backend} backend · API on [bold]http://{host}:{port}[/bold] (docs at /docs)")
    uvicorn.run(application, host=host, port=port, log_level="warning")
