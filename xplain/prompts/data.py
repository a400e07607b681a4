"""Untrusted text goes into prompts as data (DESIGN.md rule 3): inside a delimiter it cannot close itself."""

from __future__ import annotations

import re


def fence(text: str, label: str = "data") -> str:
    """Wrap `text` in `<label>` tags, defusing any `<label>` or `</label>` inside it that could end the block."""
    tag = re.compile(rf"<\s*/?\s*{re.escape(label)}\s*>", re.IGNORECASE)
    safe = tag.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)
    return f"<{label}>\n{safe}\n</{label}>"
