"""One row per (data set, model or baseline) and the markdown table the suite writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

Figure = Union[float, int, str, None]


@dataclass(frozen=True)
class BenchmarkRow:
    stream: str  # maintenance | supply-chain | demand
    dataset: str  # e.g. "turbofan-degradation"
    model: str  # the product's served policy, or a baseline's name
    metrics: dict[str, Figure] = field(default_factory=dict)
    target: Optional[str] = None  # the target in words, where the row is judged against one
    passed: Optional[bool] = None  # None: no target for this row
    note: str = ""  # where a target is missed: by how much and why


def _cell(value: Figure) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown(rows: Sequence[BenchmarkRow]) -> str:
    """One table per stream: a column per metric any of its rows has."""
    out: list[str] = []
    for stream in dict.fromkeys(r.stream for r in rows):
        mine = [r for r in rows if r.stream == stream]
        keys = list(dict.fromkeys(k for r in mine for k in r.metrics))
        out.append(f"### {stream}\n")
        out.append("| data set | model | " + " | ".join(keys) + " | target | met |")
        out.append("|" + "---|" * (len(keys) + 4))
        for r in mine:
            met = "-" if r.passed is None else ("yes" if r.passed else "**no**")
            cells = [r.dataset, r.model, *(_cell(r.metrics.get(k)) for k in keys), r.target or "-", met]
            out.append("| " + " | ".join(cells) + " |")
        notes = [f"- {r.dataset} / {r.model}: {r.note}" for r in mine if r.note]
        out.extend(["", *notes, ""] if notes else [""])
    return "\n".join(out)
