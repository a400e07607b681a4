"""The vLLM releases xplain relies on, in one place for the server backend and the in-process engine."""

from __future__ import annotations

import re

#: The first release with `structured_outputs` (`StructuredOutputsParams`, vllm/sampling_params.py).
STRUCTURED_OUTPUTS = (0, 11)


def release(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a version such as "0.11.0" or "0.11.1rc2.dev5+g1234"; None when it is not one."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None
