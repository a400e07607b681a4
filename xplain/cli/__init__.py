"""The `xplain` command. Every module `xplain/cli/*_commands.py` adds its commands to the one Typer app, so a new
feature brings its commands without touching a shared list."""

import importlib
import pkgutil

from xplain.cli.common import app

for _module in pkgutil.iter_modules(__path__):
    if _module.name.endswith("_commands"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["app"]
