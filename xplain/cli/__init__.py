"""The `xplain` command. Each module here adds its commands to the one Typer app; every command listed works."""

from xplain.cli import llm_commands  # noqa: F401  (registers check, ask, score)
from xplain.cli.common import app

__all__ = ["app"]
