"""An HTML report of a batch run: summary figures, a chart per kind of result, and the rows themselves."""

from __future__ import annotations

import html
import json
from collections import Counter
from importlib import resources
from pathlib import Path
from string import Template

from xplain.batch.runner import RowOutcome

MAX_ROWS_SHOWN = 500


def svg_bar_chart(labels: list[str], values: list[float], *, width: int = 560, bar_height: int = 22) -> str:
    """Horizontal bars, negative values to the left of the axis: enough for counts, shares and signed effects."""
    if not values:
        return ""
    label_width, pad = 180, 60
    span = max(max(values), 0) - min(min(values), 0) or 1.0
    scale = (width - label_width - pad) / span
    zero = label_width + (-min(min(values), 0)) * scale
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{bar_height * len(values) + 10}">']
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 5 + i * bar_height
        x = zero if value >= 0 else zero + value * scale
        colour = "#2e7d32" if value >= 0 else "#c62828"
        parts.append(f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" font-size="12">{html.escape(label)}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{abs(value) * scale:.1f}" height="{bar_height - 6}" fill="{colour}"/>')
        parts.append(f'<text x="{max(x + abs(value) * scale, zero) + 4:.1f}" y="{y + 15}" font-size="11">{value:.3g}</text>')
    parts.append(f'<line x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{bar_height * len(values) + 10}" stroke="#555"/>')
    parts.append("</svg>")
    return "".join(parts)


def _figures(outcomes: list[RowOutcome]) -> list[tuple[str, str]]:
    """Charts for the result fields this report knows: labels, agreement, feature effects."""
    results = [o.result for o in outcomes if o.ok and o.result]
    figures = []
    labels = Counter(str(r.get("label", r.get("blackbox", {}).get("label"))) for r in results if "label" in r or "blackbox" in r)
    if labels:
        names = sorted(labels)
        figures.append(("Black-box labels", svg_bar_chart(names, [labels[n] for n in names])))
    agreement = [r["agrees"] for r in results if "agrees" in r]
    if agreement:
        share = sum(agreement) / len(agreement)
        figures.append(("LLM agrees with the black box", svg_bar_chart(["agree", "disagree"], [share, 1 - share])))
    effects: dict[str, list[float]] = {}
    for r in results:
        for feature in r.get("features", []):
            if isinstance(feature, dict) and "name" in feature and isinstance(feature.get("weight"), int | float):
                effects.setdefault(str(feature["name"]), []).append(float(feature["weight"]))
    if effects:
        mean = sorted(((sum(v) / len(v), k) for k, v in effects.items()), key=lambda t: -abs(t[0]))[:15]
        figures.append(("Mean feature effect", svg_bar_chart([k for _, k in mean], [v for v, _ in mean])))
    return figures


def write_report(path: Path, title: str, outcomes: list[RowOutcome], seconds: float | None = None) -> None:
    ok = sum(o.ok for o in outcomes)
    summary = [("rows", len(outcomes)), ("succeeded", ok), ("failed", len(outcomes) - ok)]
    if seconds is not None:
        summary.append(("seconds (this run)", f"{seconds:.1f}"))
    reasons = Counter(o.error for o in outcomes if not o.ok)
    summary += [(f"failure: {reason}", count) for reason, count in reasons.most_common(5)]
    rows = "".join(
        f"<tr><td>{o.index}</td><td class=\"{'' if o.ok else 'bad'}\">{'ok' if o.ok else 'failed'}</td>"
        f"<td><pre>{html.escape(json.dumps(o.result, indent=1) if o.ok else str(o.error))}</pre></td></tr>"
        for o in outcomes[:MAX_ROWS_SHOWN]
    )
    page = Template(resources.files(__package__).joinpath("templates/report.html").read_text(encoding="utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        page.substitute(
            title=html.escape(title),
            summary="".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary),
            figures="".join(f"<figure><figcaption>{html.escape(c)}</figcaption>{svg}</figure>" for c, svg in _figures(outcomes)),
            rows=rows,
        ),
        encoding="utf-8",
    )
