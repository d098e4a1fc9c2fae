"""Per data set: the product's evidence for normal and attack transactions, and detection per
attack family for the product and the baselines. Needs matplotlib (the project's `load`
extra); without it no plot is written and the caller says so."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from benchmarks.supply_chain.datasets import Dataset
from benchmarks.supply_chain.evaluate import Scored


def write(path: Path, data: Dataset, scored: Sequence[Scored], families: Sequence[str],
          threshold: Optional[float]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    family = np.array([data.family(r["event_id"]) for r in data.test], dtype=object)
    normal = family == "normal"
    product = scored[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    bins = np.linspace(0.0, max(12.0, float(product.score.max())) + 0.1, 60)
    left.hist(product.score[normal], bins=bins, alpha=0.6, label=f"normal ({int(normal.sum()):,})", density=True)
    left.hist(product.score[~normal], bins=bins, alpha=0.6, label=f"attack ({int((~normal).sum()):,})", density=True)
    if threshold is not None:
        left.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:.2f}")
    left.set_yscale("log")
    left.set_xlabel("product evidence (surprise, decades of normal rarity)")
    left.set_ylabel("density")
    left.set_title(f"{data.name}: score distributions")
    left.legend(fontsize=8)
    width = 0.8 / len(scored)
    x = np.arange(len(families))
    for k, s in enumerate(scored):
        rates = [float(s.flagged[family == f].mean()) if (family == f).any() else 0.0 for f in families]
        flag_rate = float(s.flagged[normal].mean())
        right.bar(x + k * width, rates, width, label=f"{s.model} ({flag_rate:.2%} of normal flagged)")
    right.axhline(0.95, color="k", linestyle="--", linewidth=1)
    right.set_xticks(x + 0.4 - width / 2, list(families), rotation=20)
    right.set_ylim(0, 1.05)
    right.set_ylabel("attack shipments flagged")
    right.set_title("detection per attack family")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
