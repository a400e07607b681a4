"""Checks on names and paths that come from users, in one place so that every front applies the same rule."""

from __future__ import annotations

import re
from pathlib import Path

from xplain.errors import Forbidden, InvalidInput

#: Names of models, classifiers and jobs: letters, digits, `-`, `_`, `.`; not starting with a dot (so never `..`
#: nor a hidden file), at most 100 characters.
SLUG = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}$"
_SLUG = re.compile(SLUG)


def check_slug(name: str, what: str = "name") -> str:
    """`name` if it is a valid slug; otherwise InvalidInput that says what a name may hold."""
    if not isinstance(name, str) or not _SLUG.fullmatch(name):
        raise InvalidInput(
            f"{what} {name!r} is not allowed: use letters, digits, '-', '_' and '.', not starting with a dot "
            "(at most 100 characters)"
        )
    return name


def resolve_under(root: Path | str, name: str | Path, where: str = "its directory") -> Path:
    """`root / name` with symlinks resolved, refused (Forbidden) unless it stays inside `root`.

    Absolute paths, `..` and symlinks that lead out of `root` all end outside it and are refused; `where` names
    the directory in the message (never its real path, which is the server's business).
    """
    base = Path(root).resolve()
    candidate = (base / name).resolve()
    if candidate == base or not candidate.is_relative_to(base):
        raise Forbidden(f"{str(name)!r} is outside {where}")
    return candidate
