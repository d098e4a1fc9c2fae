"""The maintenance report's figures: calibration (reliability), ranking (ROC and
precision-recall against the baselines), what the served policy gave before each failure (lead
time), and the time-to-failure head (predicted against actual)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
from matplotlib.figure import Figure

from stream_app.training.plots import (
    MISSED_COLOUR, MissingData, add_figure, colours, new_figure, pr_curve, roc_curve, sample_indices, thin,
)
from stream_app.training.report import Report, average_precision, reliability_bins, rmse, roc_auc

MAX_SCATTER_POINTS = 4000
# How each policy's lead time is drawn: served policy as bars, the others as markers.
_LEAD_MARKERS = (("model_only", "Model alone", "o"), ("rules_only", "Rules only", "^"))
_POINT_MARKERS = {"product": ("Served policy (model + rules)", "*"), "rules_only": ("Rules only", "^")}


@dataclass
class MaintenanceCurves:
    """Test-period arrays behind the figures, over the readings whose label is known."""

    y: np.ndarray  # failure within the horizon, 0/1
    probability: dict[str, np.ndarray]  # calibrated, by display name, the LSTM first
    uncalibrated: np.ndarray  # the LSTM's raw mean of heads
    ttf_true_hours: np.ndarray  # readings with an exact time to failure below the cap
    ttf_pred_hours: np.ndarray


def add_figures(report: Report, curves: MaintenanceCurves, policy: Optional[dict[str, Any]],
                horizon_hours: float, ttf_cap_hours: float) -> None:
    lstm = next(iter(curves.probability))
    add_figure(
        report, "Figure: reliability (test period)", "reliability.png",
        lambda: reliability_figure(curves.y, {f"{lstm} (calibrated)": curves.probability[lstm],
                                              f"{lstm} (uncalibrated)": curves.uncalibrated}, horizon_hours),
        note="Readings binned by predicted probability: the mean prediction of a bin against the share of its readings "
             "followed by a failure within the horizon. On the diagonal, a probability means what it says.",
    )
    add_figure(
        report, "Figure: ROC and precision-recall (test period)", "roc_pr.png",
        lambda: ranking_figure(curves.y, curves.probability, (policy or {}).get("decision_points") or {}, horizon_hours),
        note="Per-reading ranking of the calibrated failure probabilities; markers: the per-reading decisions (before the "
             "cooldown) of the served policy and of the rules alone, which have no score to sweep.",
    )
    add_figure(
        report, "Figure: lead time before failures (served policy, test period)", "lead_time.png",
        lambda: lead_time_figure(policy, horizon_hours),
        note="Per failure in the test period, how many hours before it the first alert within the horizon came; missed "
             "failures had none. The served policy is what users get (see 'Decision policy on the test period').",
    )
    add_figure(
        report, "Figure: predicted against actual time to failure (test period)", "ttf.png",
        lambda: ttf_figure(curves.ttf_true_hours, curves.ttf_pred_hours, ttf_cap_hours),
        note="Readings whose exact time to the next failure is known and below the cap (the ones the TTF RMSE counts); "
             f"at most {MAX_SCATTER_POINTS:,} drawn, chosen with a fixed seed.",
    )


def reliability_figure(y: np.ndarray, probabilities: Mapping[str, np.ndarray], horizon_hours: float,
                       bins: int = 10) -> Figure:
    """Mean predicted probability against observed frequency per equal-width bin (the first
    series' bins labelled with their reading counts), and the counts themselves below."""
    if len(np.asarray(y)) == 0:
        raise MissingData("no test reading has a known label.")
    fig, (top, bottom) = new_figure(7.0, 7.0, rows=2)
    fig.get_layout_engine().set(h_pad=0.1)
    top.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1, label="Perfectly calibrated")
    width = 1.0 / bins / (len(probabilities) + 1)
    for k, ((name, p), colour) in enumerate(zip(probabilities.items(), colours(len(probabilities)))):
        table = reliability_bins(y, p, bins)
        full = [b for b in table if b["n"]]
        x = [b["mean_predicted"] for b in full]
        top.plot(x, [b["observed"] for b in full], marker="o", color=colour, label=name)
        if k == 0:
            for b in full:  # counts under the points, kept inside the axes at the right edge
                right = b["mean_predicted"] > 0.85
                top.annotate(f"n={b['n']:,}", (b["mean_predicted"], b["observed"]), textcoords="offset points",
                             xytext=(-4 if right else 4, -11), ha="right" if right else "left", fontsize=7, color=colour)
        centres = np.array([(b["low"] + b["high"]) / 2 for b in table])
        bottom.bar(centres + (k - (len(probabilities) - 1) / 2) * width, [b["n"] for b in table], width=width,
                   color=colour, label=name)
    top.set(xlim=(0, 1), ylim=(0, 1), xlabel="Mean predicted probability",
            ylabel=f"Observed frequency of failure within {horizon_hours:g} h",
            title=f"Reliability on the test period ({bins} equal-width bins)")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set(xlim=(0, 1), xlabel="Predicted probability (bin)", ylabel="Readings (log scale)")
    bottom.legend(fontsize=8)
    return fig


def ranking_figure(y: np.ndarray, probabilities: Mapping[str, np.ndarray], points: Mapping[str, Mapping[str, Any]],
                   horizon_hours: float) -> Figure:
    """ROC and precision-recall curves, one per model (AUC / average precision in the legend),
    and the fixed decisions `points` (name -> false/true-positive rate, precision) as markers."""
    y = np.asarray(y)
    if not len(y) or y.min() == y.max():
        raise MissingData("the test period's labelled readings are all of one class (no failure within the horizon, "
                          "or nothing but).")
    fig, (roc, pr) = new_figure(11.0, 5.0, cols=2)
    for (name, p), colour in zip(probabilities.items(), colours(len(probabilities))):
        fpr, tpr = thin(*roc_curve(y, p))
        roc.plot(fpr, tpr, color=colour, label=f"{name} (AUC {roc_auc(y, p):.3f})")
        recall, precision = thin(*pr_curve(y, p))
        pr.plot(recall, precision, color=colour, drawstyle="steps-post",
                label=f"{name} (AP {average_precision(y, p):.3f})")
    for key, point in points.items():
        label, marker = _POINT_MARKERS.get(key, (key, "s"))
        if point.get("false_positive_rate") is not None and point.get("true_positive_rate") is not None:
            roc.plot(point["false_positive_rate"], point["true_positive_rate"], marker=marker, markersize=10,
                     color="black", linestyle="none", label=label)
        if point.get("precision") is not None and point.get("true_positive_rate") is not None:
            pr.plot(point["true_positive_rate"], point["precision"], marker=marker, markersize=10, color="black",
                    linestyle="none", label=label)
    prevalence = float(np.mean(y > 0.5))
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="Chance")
    pr.axhline(prevalence, color="grey", linestyle=":", linewidth=1, label=f"Chance (prevalence {prevalence:.3f})")
    roc.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False-positive rate", ylabel="True-positive rate (recall)",
            title=f"ROC, failure within {horizon_hours:g} h")
    pr.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="Recall", ylabel="Precision",
           title=f"Precision-recall, failure within {horizon_hours:g} h")
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is roc else "lower left")
    return fig


def lead_time_figure(policy: Optional[Mapping[str, Any]], horizon_hours: float) -> Figure:
    """One bar per test-period failure: hours from the served policy's first alert to the
    failure (missed ones marked), with the model alone and the rules alone as markers."""
    if policy is None:
        raise MissingData("the decision policy has not been evaluated.")
    failures = list(policy.get("failures") or [])
    if not failures:
        raise MissingData("no failure in the test period (with a test reading within the horizon before it).")
    lead = np.array([f["lead_hours"]["product"] if f["lead_hours"]["product"] is not None else np.nan for f in failures])
    order = np.lexsort((np.arange(len(lead)), -np.nan_to_num(lead, nan=-1.0)))  # longest first, missed last
    failures, lead = [failures[k] for k in order], lead[order]
    missed = np.isnan(lead)
    x = np.arange(len(failures))
    fig, (ax,) = new_figure(max(7.0, min(14.0, 0.18 * len(failures) + 4)), 4.8)
    ax.bar(x[~missed], lead[~missed], color=colours(1)[0], label="Served policy (model + rules)")
    if missed.any():
        ax.plot(x[missed], np.zeros(int(missed.sum())), marker="x", markersize=9, color=MISSED_COLOUR,
                linestyle="none", label=f"Missed by the served policy ({int(missed.sum())})")
    for key, label, marker in _LEAD_MARKERS:
        other = np.array([f["lead_hours"].get(key) if f["lead_hours"].get(key) is not None else np.nan for f in failures])
        if np.isfinite(other).any():
            ax.plot(x, other, marker=marker, markersize=5, markerfacecolor="none", color="black", linestyle="none",
                    label=f"{label} ({int(np.isfinite(other).sum())} caught)")
    ax.axhline(horizon_hours, color="grey", linestyle="--", linewidth=1, label=f"Horizon ({horizon_hours:g} h)")
    caught = lead[~missed]
    median = f", median lead {np.median(caught):.1f} h" if len(caught) else ""
    ax.set(xlim=(-1, len(failures)), ylim=(0, horizon_hours * 1.15), ylabel="Hours from first alert to failure",
           xlabel="Failures in the test period, longest warning first",
           title=f"Lead time: {len(caught)} of {len(failures)} failures alerted within the horizon{median}")
    if len(failures) <= 30:
        ax.set_xticks(x, [f["machine_id"] for f in failures], rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xticks([])
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    ax.grid(axis="y", alpha=0.3)
    return fig


def ttf_figure(truth: np.ndarray, pred: np.ndarray, cap_hours: float) -> Figure:
    """Predicted against actual hours to failure, with the diagonal and the median prediction
    per actual-time bin (a bias shows as a gap between the two lines)."""
    truth, pred = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    keep = np.isfinite(truth) & np.isfinite(pred)
    truth, pred = truth[keep], pred[keep]
    if not len(truth):
        raise MissingData("no test reading has an exact time to failure below the cap (no failure in the test period).")
    fig, (ax,) = new_figure(6.0, 6.0)
    shown = sample_indices(len(truth), MAX_SCATTER_POINTS)
    ax.scatter(truth[shown], pred[shown], s=6, alpha=0.3, color=colours(1)[0], linewidths=0,
               label=f"Readings ({len(shown):,} of {len(truth):,})")
    edges = np.linspace(0, cap_hours, 13)
    index = np.clip(np.digitize(truth, edges) - 1, 0, len(edges) - 2)
    centres, medians = [], []
    for k in range(len(edges) - 1):
        if (index == k).sum() >= 5:
            centres.append((edges[k] + edges[k + 1]) / 2)
            medians.append(float(np.median(pred[index == k])))
    ax.plot(centres, medians, color="black", marker="o", markersize=4, label="Median prediction per bin")
    ax.plot([0, cap_hours], [0, cap_hours], color="grey", linestyle=":", label="Perfect prediction")
    ax.set(xlim=(0, cap_hours), ylim=(0, cap_hours * 1.02), xlabel="Actual hours to failure",
           ylabel="Predicted hours to failure", title=f"Time to failure (cap {cap_hours:g} h), RMSE {rmse(truth, pred):.1f} h")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig
