"""Evaluation metrics and the training report (report.md for people, report.json for programs).

Nothing here knows about maintenance: the metrics take label/score arrays, and `Report` is a
list of headed blocks (text, key-value lists, tables, figures) that renders to Markdown and JSON,
so other streams' trainers can reuse both. Figures are saved as PNGs beside report.md and linked
from it (drawn by stream_app.training.plots).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


# --- metrics -----------------------------------------------------------------------------------
def _binary(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != score.shape:
        raise ValueError(f"labels {y.shape} and scores {score.shape} differ in shape")
    keep = np.isfinite(score)
    return y[keep] > 0.5, score[keep]


def roc_auc(y: np.ndarray, score: np.ndarray) -> Optional[float]:
    """Area under the ROC curve (ties count one half); None when only one class is present."""
    pos, s = _binary(y, score)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average ranks over ties
    n = len(s)
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [n]])
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, score: np.ndarray) -> Optional[float]:
    """Step-wise area under the precision-recall curve (as scikit-learn computes it)."""
    pos, s = _binary(y, score)
    n_pos = int(pos.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted, p_sorted = s[order], pos[order]
    tp = np.cumsum(p_sorted)
    fp = np.cumsum(~p_sorted)
    # evaluate only at the last index of each group of tied scores
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def threshold_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, Optional[float]]:
    pos, s = _binary(y, score)
    pred = s >= threshold
    tp = int((pred & pos).sum())
    fp = int((pred & ~pos).sum())
    fn = int((~pred & pos).sum())
    tn = int((~pred & ~pos).sum())
    return {
        "threshold": float(threshold),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "false_positive_rate": fp / (fp + tn) if fp + tn else None,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "true_negatives": tn,
    }


def rmse(truth: np.ndarray, pred: np.ndarray) -> Optional[float]:
    truth = np.asarray(truth, dtype=np.float64).ravel()
    pred = np.asarray(pred, dtype=np.float64).ravel()
    keep = np.isfinite(truth) & np.isfinite(pred)
    if not keep.any():
        return None
    return float(np.sqrt(np.mean((truth[keep] - pred[keep]) ** 2)))


def brier(y: np.ndarray, probability: np.ndarray) -> Optional[float]:
    """Mean squared difference between probability and outcome (0 perfect; always 0.25 for a coin)."""
    pos, p = _binary(y, probability)
    return float(np.mean((p - pos) ** 2)) if len(p) else None


def reliability_bins(y: np.ndarray, probability: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width probability bins: per bin the readings, the mean predicted probability and the
    observed rate of positives (a calibrated model has the two equal). Empty bins are kept (n 0)."""
    pos, p = _binary(y, probability)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    out = []
    for k in range(bins):
        sel = index == k
        n = int(sel.sum())
        out.append({
            "low": float(edges[k]),
            "high": float(edges[k + 1]),
            "n": n,
            "mean_predicted": float(p[sel].mean()) if n else None,
            "observed": float(pos[sel].mean()) if n else None,
        })
    return out


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, Any]:
    pos, _ = _binary(y, score)
    return {
        "n": int(len(pos)),
        "positives": int(pos.sum()),
        "roc_auc": roc_auc(y, score),
        "average_precision": average_precision(y, score),
        **threshold_metrics(y, score, threshold),
    }


# --- the report ----------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -digits):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (Mapping, list, tuple)) for v in value):
            return json.dumps(_jsonable(value), separators=(", ", ": "))
        return ", ".join(_fmt(v, digits) for v in value) or "–"
    if isinstance(value, Mapping):
        return json.dumps(_jsonable(value), separators=(", ", ": "))
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class Block:
    heading: str
    kind: str  # "text" | "kv" | "table" | "figure"
    text: str = ""  # for a figure: why it was not drawn
    items: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""
    image: str = ""  # a figure's PNG file name, beside report.md
    figure: Optional["Figure"] = None  # None: not drawn (see text)


class Report:
    """Headed blocks rendered to Markdown; `data` (any JSON-able mapping) plus the blocks go to
    report.json, so programs never have to parse the Markdown."""

    def __init__(self, title: str, data: Optional[Mapping[str, Any]] = None) -> None:
        self.title = title
        self.created_at = datetime.now(timezone.utc)
        self.blocks: list[Block] = []
        self.data: dict[str, Any] = dict(data or {})

    def text(self, heading: str, text: str) -> "Report":
        self.blocks.append(Block(heading, "text", text=text))
        return self

    def kv(self, heading: str, items: Mapping[str, Any], note: str = "") -> "Report":
        self.blocks.append(Block(heading, "kv", items=dict(items), note=note))
        return self

    def table(self, heading: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> "Report":
        self.blocks.append(Block(heading, "table", columns=list(columns), rows=[list(r) for r in rows], note=note))
        return self

    def figure(self, heading: str, image: str, figure: "Figure", note: str = "") -> "Report":
        """A figure, written as the PNG `image` beside report.md and linked under `heading`."""
        self.blocks.append(Block(heading, "figure", image=_image_name(image), figure=figure, note=note))
        return self

    def figure_skipped(self, heading: str, image: str, why: str) -> "Report":
        """A figure that was not drawn: `why` (a sentence) stands under its heading instead."""
        self.blocks.append(Block(heading, "figure", image=_image_name(image), text=why))
        return self

    def figures(self) -> list[dict[str, Any]]:
        """Per figure: its heading, its file (None when not drawn) and why not."""
        return [{"heading": b.heading, "file": b.image if b.figure is not None else None,
                 **({"note": b.note} if b.note and b.figure is not None else {}),
                 **({"skipped": b.text} if b.figure is None else {})}
                for b in self.blocks if b.kind == "figure"]

    # --- rendering ---------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        out = [f"# {self.title}", "", f"_Generated {self.created_at.strftime('%Y-%m-%d %H:%M:%S UTC')}_", ""]
        for block in self.blocks:
            if block.heading:
                out += [f"## {block.heading}", ""]
            if block.kind == "text":
                out += [block.text.strip(), ""]
            elif block.kind == "figure":
                out += [f"![{_alt(block.heading or block.image)}]({block.image})" if block.figure is not None
                        else block.text.strip(), ""]
            elif block.kind == "kv":
                out += [f"- **{_cell(k)}**: {_cell(_fmt(v))}" for k, v in block.items.items()]
                out.append("")
            else:
                out.append("| " + " | ".join(_cell(c) for c in block.columns) + " |")
                out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(block.columns))) + "|")
                for row in block.rows:
                    out.append("| " + " | ".join(_cell(_fmt(v)) for v in row) + " |")
                out.append("")
            if block.note and not (block.kind == "figure" and block.figure is None):
                out += [f"_{block.note.strip()}_", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_dict(self) -> dict[str, Any]:
        blocks = []
        for b in self.blocks:
            entry: dict[str, Any] = {"heading": b.heading, "kind": b.kind}
            if b.kind == "text":
                entry["text"] = b.text
            elif b.kind == "kv":
                entry["items"] = b.items
            elif b.kind == "figure":
                entry["file"] = b.image if b.figure is not None else None
                if b.figure is None:
                    entry["skipped"] = b.text
            else:
                entry["columns"] = b.columns
                entry["rows"] = b.rows
            if b.note:
                entry["note"] = b.note
            blocks.append(entry)
        return _jsonable({"title": self.title, "created_at": self.created_at, **self.data, "figures": self.figures(),
                          "sections": blocks})

    def write(self, directory: Path | str, stem: str = "report") -> tuple[Path, Path]:
        """report.md and report.json (named by `stem`) and the figures' PNGs, each PNG replaced
        whole; a figure that cannot be saved is noted in the report, not raised."""
        directory = Path(directory)
        self._save_figures(directory)
        md, js = directory / f"{stem}.md", directory / f"{stem}.json"
        md.write_text(self.to_markdown(), encoding="utf-8")
        js.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return md, js

    def _save_figures(self, directory: Path) -> None:
        for block in self.blocks:
            if block.kind != "figure" or block.figure is None:
                continue
            tmp = directory / f".{block.image}.tmp"
            try:
                block.figure.savefig(tmp, format="png", dpi="figure", metadata={"Software": None})
                os.replace(tmp, directory / block.image)
            except Exception as exc:  # the report and the run outlive a figure that cannot be saved
                logger.warning("report figure %s could not be saved", block.image, exc_info=True)
                tmp.unlink(missing_ok=True)
                block.figure, block.text = None, f"Not drawn: saving the image failed ({type(exc).__name__}: {exc})."


def _image_name(image: str) -> str:
    """A plain PNG file name: figures sit beside report.md, never elsewhere."""
    name = Path(image).name
    if name != image or not name.endswith(".png") or name.startswith("."):
        raise ValueError(f"figure image must be a plain .png file name, got {image!r}")
    return name


def _alt(text: str) -> str:
    return text.replace("[", "(").replace("]", ")").replace("\n", " ")


def jsonable(value: Any) -> Any:
    """numpy scalars/arrays, datetimes and non-finite floats -> plain JSON values (NaN -> null)."""
    return _jsonable(value)
