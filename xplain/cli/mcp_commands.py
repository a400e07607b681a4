"""`xplain mcp`: the method catalog as an MCP server, over stdio (an assistant starts it) or streamable HTTP."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import typer

from xplain.cli.common import app
from xplain.settings import get_settings


@app.command()
def mcp(
    transport: Annotated[
        Literal["stdio", "http"], typer.Option(help="stdio for an assistant that starts xplain; http to serve at /mcp.")
    ] = "stdio",
    host: Annotated[str | None, typer.Option(help="http: address to listen on (XPLAIN_SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="http: port (XPLAIN_SERVER_PORT).")] = None,
    demo: Annotated[bool, typer.Option(help="Serve the built-in demo models beside the registered ones.")] = True,
) -> None:
    """Serve the method catalog over MCP: list_models, list_methods and one tool per method. Over http the API key
    (XPLAIN_API_KEYS) and body limit (XPLAIN_MAX_BODY_BYTES) apply as on the REST API."""
    from xplain.mcp.server import build_server, http_app, serve_stdio

    settings = get_settings()
    server = build_server(settings, register_demo_models=demo)
    if transport == "stdio":
        asyncio.run(serve_stdio(server))
        return
    import uvicorn

    host = host or settings.server_host
    port = port or settings.server_port
    typer.echo(f"xplain MCP server on http://{host}:{port}/mcp", err=True)
    uvicorn.run(http_app(server, settings, host=host), host=host, port=port, log_level="warning")
