"""Prompt templates live here as files (DESIGN.md rule 7): `<group>/<name>.toml` with a `version` and a `template`.

Templates use `string.Template` placeholders (`$name`), so JSON braces in a prompt need no escaping. Results
record the `name@version` of each template they used.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from string import Template

from pydantic import BaseModel


class PromptTemplate(BaseModel):
    name: str
    version: int
    template: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values: object) -> str:
        """Fill every placeholder; a missing value is a KeyError naming it, never a silent blank."""
        return Template(self.template).substitute({k: str(v) for k, v in values.items()})


@lru_cache
def load_prompt(name: str) -> PromptTemplate:
    """Load `group/name` from the package's prompt files."""
    group, _, stem = name.rpartition("/")
    folder = resources.files(__package__)
    for part in filter(None, group.split("/")):
        folder = folder / part
    path = folder / f"{stem}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {name!r} (looked for {path})")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return PromptTemplate(name=name, version=data["version"], template=data["template"])
