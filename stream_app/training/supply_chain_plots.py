"""The supply-chain report's figures: how the scores of normal and attack transactions separate
(the ensemble's evidence and the HalfSpaceTrees baseline's score), and detection per attack
kind at the target flag rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from stream_app.training.plots import MissingData, add_figure, colours, new_figure
from stream_app.training.report import Report

NORMAL = ""  # the kind of a transaction no confirmed verdict names
NORMAL_COLOUR, ATTACK_COLOUR = "#7f7f7f", "#d62728"
# Bars of the detection figure, in order: metrics key, legend label.
POLICIES = (("ensemble", "Ensemble"), ("product", "Product (gated, rules)"),
            ("baseline_hst", "HalfSpaceTrees alone (baseline)"), ("rules_only", "Rules only"))


@dataclass
class SupplyChainScores:
    """Test-period scores behind the figures, one entry per transaction."""

    kind: np.ndarray  # attack kind, NORMAL for the others
    evidence: np.ndarray  # the ensemble's
    evidence_threshold: float
    baseline: np.ndarray  # the HalfSpaceTrees score
    baseline_threshold: float


def add_figures(report: Report, scores: SupplyChainScores, test_metrics: Mapping[str, Any], target_rate: float) -> None:
    add_figure(
        report, "Figure: score distributions, normal against attack (test period)", "score_distributions.png",
        lambda: score_figure(scores),
        note="Counts on a log scale (attacks are rare); the dashed lines are the thresholds set for the target flag rate "
             "on the validation period's normal transactions.",
    )
    add_figure(
        report, "Figure: detection per attack kind (test period)", "detection_by_kind.png",
        lambda: detection_figure(test_metrics, target_rate),
        note="Share of each kind's attack shipments flagged; the legend gives each policy's flag rate on normal "
             "transactions of the test period.",
    )


def score_figure(scores: SupplyChainScores) -> Figure:
    attack = np.asarray(scores.kind) != NORMAL
    if not attack.any():
        raise MissingData("no confirmed attack in the test period (no verdicts, or none naming a test shipment), so "
                          "normal and attack scores cannot be compared.")
    fig, axes = new_figure(11.0, 4.5, cols=2)
    panels = (("Ensemble evidence", scores.evidence, scores.evidence_threshold),
              ("HalfSpaceTrees score (baseline)", scores.baseline, scores.baseline_threshold))
    for ax, (title, values, threshold) in zip(axes, panels):
        values = np.asarray(values, dtype=np.float64)
        _log_histogram(ax, [("Normal", values[~attack], NORMAL_COLOUR), ("Attack", values[attack], ATTACK_COLOUR)],
                       threshold)
        ax.set(xlabel=title, title=title)
    fig.suptitle("Scores of normal and attack transactions (test period)")
    return fig


def detection_figure(test_metrics: Mapping[str, Any], target_rate: float) -> Figure:
    policies = [(key, label) for key, label in POLICIES if key in test_metrics]
    kinds = sorted(test_metrics[policies[0][0]]["kinds"]) if policies else []
    if not kinds:
        raise MissingData("no confirmed attack in the test period (no verdicts, or none naming a test shipment), so "
                          "detection cannot be measured.")
    fig, (ax,) = new_figure(max(8.0, 1.3 * len(kinds) + 2), 5.5)
    width = 0.8 / len(policies)
    x = np.arange(len(kinds))
    for k, ((key, label), colour) in enumerate(zip(policies, colours(len(policies)))):
        m = test_metrics[key]
        rates = [m["kinds"][kind]["detection"] for kind in kinds]
        bars = ax.bar(x + (k - (len(policies) - 1) / 2) * width, rates, width=width, color=colour,
                      label=f"{label}: flags {100 * m['flag_rate_normal']:.2f} % of normal")
        ax.bar_label(bars, [f"{100 * r:.0f}" for r in rates], fontsize=7, padding=1)
    ax.set_xticks(x, [kind.replace("_", " ") for kind in kinds], rotation=20, ha="right")
    ax.set(ylim=(0, 1.12), ylabel="Attack shipments flagged (share)", xlabel="Attack kind",
           title=f"Detection per attack kind at a {100 * target_rate:.1f} % target flag rate (test period; bar labels in %)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _log_histogram(ax: Axes, groups: Sequence[tuple[str, np.ndarray, str]], threshold: float, bins: int = 60) -> None:
    """Step histograms on shared bins with a log count axis, and the threshold as a dashed line."""
    finite = [v[np.isfinite(v)] for _, v, _ in groups]
    both = np.concatenate(finite)
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    for (label, _, colour), v in zip(groups, finite):
        ax.hist(v, bins=edges, histtype="stepfilled", alpha=0.3, color=colour)
        ax.hist(v, bins=edges, histtype="step", color=colour, linewidth=1.2, label=f"{label} (n={len(v):,})")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"Threshold ({threshold:.3g})")
    ax.set_yscale("log")
    ax.set_ylabel("Transactions (log scale)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
