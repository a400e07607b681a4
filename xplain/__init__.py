"""xplain: large language models that explain black-box models, and check their explanations.

`xplain.run(method, model, inputs, **options)` runs any method of the catalog (`xplain methods` lists them)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `import xplain` stays light (the CLI and settings import it); the catalog loads on first use of `run`.
    if name == "run":
        from xplain.library import run

        return run
    raise AttributeError(f"module 'xplain' has no attribute {name!r}")
