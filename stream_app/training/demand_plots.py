"""The demand report's figures: fan charts (the P10-P90 band and P50 against what sold) for a
few series picked by rule, and the P10-P90 coverage per horizon day against the nominal 80 %."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from stream_app.training.demand_data import Panel
from stream_app.training.plots import MissingData, add_figure, colours, new_figure
from stream_app.training.report import Report

HISTORY_SHOWN_DAYS = 56  # of sales before the forecast origin, for context
MIN_HISTORY_DAYS = 28  # series charted when they have sold for this long (a history to see), if any has
COVERAGE_TOLERANCE = 0.05  # the report's target: 80 % +- 5


@dataclass
class DemandForecasts:
    """The test period's daily forecasts, one row per (series, origin) pair."""

    panel: Panel
    pairs: np.ndarray  # (N, 2): series index, origin day index (the last day of history)
    actual: np.ndarray  # (N, H) units sold on the days after the origin
    daily: np.ndarray  # (N, H, 3) calibrated P10 / P50 / P90


def add_figures(report: Report, forecasts: Optional[DemandForecasts], per_horizon_day: Mapping[str, Sequence[Mapping[str, Any]]],
                method_names: Mapping[str, str], nominal: float) -> None:
    add_figure(
        report, "Figure: fan charts of sample series (test period)", "fan_charts.png",
        lambda: fan_figure(forecasts),
        note="The forecast made at the start of the test period, for three series picked by the units they sold over "
             f"the days charted (among those whose first sale was {MIN_HISTORY_DAYS} days or more before it): the highest "
             "volume, the median one, and the sparsest (fewest days with a sale, among series with one). Shaded: "
             "P10-P90 after interval calibration; line: P50; dots: units sold.",
    )
    add_figure(
        report, "Figure: P10-P90 coverage by horizon (test period)", "interval_coverage.png",
        lambda: coverage_figure(per_horizon_day, method_names, nominal),
        note=f"Share of realised days inside each method's P10-P90 on each day ahead; the band is the target "
             f"{nominal:.0%} +- {COVERAGE_TOLERANCE:.0%}.",
    )


def pick_series(volume: np.ndarray, selling_days: np.ndarray) -> list[tuple[int, str]]:
    """Series indices to chart, each with why: the highest volume, the median volume and the
    sparsest (fewest days with a sale), among series that sold; ties go to the lower index,
    and no series is picked twice."""
    volume, selling_days = np.asarray(volume, dtype=np.float64), np.asarray(selling_days)
    sold = np.flatnonzero(volume > 0)
    picks: list[tuple[int, str]] = []

    def take(order: np.ndarray, why: str) -> None:
        for i in order:
            if int(i) not in [p for p, _ in picks]:
                picks.append((int(i), why))
                return

    ascending = sold[np.lexsort((sold, volume[sold]))]
    mid = len(ascending) // 2
    take(sold[np.lexsort((sold, -volume[sold]))], "highest volume")
    take(np.r_[ascending[mid:], ascending[:mid][::-1]], "median volume")  # or the nearest one left
    take(sold[np.lexsort((sold, selling_days[sold]))], "sparsest")
    return picks


def fan_figure(forecasts: Optional[DemandForecasts]) -> Figure:
    if forecasts is None or not len(forecasts.pairs):
        raise MissingData("no test-period forecasts to chart.")
    panel, pairs = forecasts.panel, np.asarray(forecasts.pairs)
    start = int(pairs[:, 1].min())  # the origin at the start of the test period
    charted = np.isin(np.arange(len(panel.series)), pairs[pairs[:, 1] == start, 0])
    established = charted & (panel.first_active <= start - MIN_HISTORY_DAYS)
    candidates = established if established.any() else charted
    window = panel.units[:, start + 1:start + 1 + forecasts.actual.shape[1]]  # the days charted
    picks = pick_series(np.where(candidates, window.sum(axis=1), 0.0), (window > 0).sum(axis=1))
    if not picks:
        raise MissingData("no series sold anything in the first forecast's horizon.")
    fig, axes = new_figure(10.0, 0.6 + 2.8 * len(picks), rows=len(picks))
    band, median = colours(1)[0], "#08306b"
    for ax, (s, why) in zip(axes, picks):
        row = int(np.flatnonzero((pairs[:, 0] == s) & (pairs[:, 1] == start))[0])
        q, actual = forecasts.daily[row], forecasts.actual[row]
        ahead = np.arange(1, len(actual) + 1)
        before = np.arange(max(int(panel.first_active[s]), start - HISTORY_SHOWN_DAYS + 1), start + 1)
        ax.plot(before - start, panel.units[s, before], color="black", linewidth=1, label="Units sold before the origin")
        ax.fill_between(ahead, q[:, 0], q[:, 2], color=band, alpha=0.3, step="mid", label="P10-P90 forecast")
        ax.plot(ahead, q[:, 1], color=median, linewidth=1.5, drawstyle="steps-mid", label="P50 forecast")
        ax.plot(ahead, actual, color="black", marker="o", markersize=3, linestyle="none", label="Units sold (realised)")
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
        inside = int(((q[:, 0] <= actual) & (actual <= q[:, 2])).sum())
        sku, market = panel.series[s]
        ax.set(title=f"{sku} / {market}, {why}: {inside} of {len(actual)} days inside P10-P90", ylabel="Units per day",
               xlim=(-HISTORY_SHOWN_DAYS + 0.5, len(actual) + 0.5))
        ax.set_ylim(bottom=-0.03 * ax.get_ylim()[1])  # sales of 0 stay visible above the axis
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(f"Days from the forecast origin (the close of {panel.date(start)}): history before 0, "
                        "forecast after")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=4, fontsize=8)
    return fig


def coverage_figure(per_horizon_day: Mapping[str, Sequence[Mapping[str, Any]]], method_names: Mapping[str, str],
                    nominal: float) -> Figure:
    curves = {name: [d.get("coverage") for d in days] for name, days in per_horizon_day.items() if days}
    if not any(c is not None for days in curves.values() for c in days):
        raise MissingData("no realised test-period day to measure coverage on.")
    fig, (ax,) = new_figure(8.0, 4.5)
    horizon = max(len(c) for c in curves.values())
    ax.axhspan(nominal - COVERAGE_TOLERANCE, nominal + COVERAGE_TOLERANCE, color="grey", alpha=0.15,
               label=f"Target {nominal:.0%} +- {COVERAGE_TOLERANCE:.0%}")
    ax.axhline(nominal, color="grey", linestyle="--", linewidth=1, label=f"Nominal {nominal:.0%}")
    for (name, days), colour in zip(curves.items(), colours(len(curves))):
        values = np.array([np.nan if c is None else c for c in days], dtype=np.float64)
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, color=colour,
                linewidth=2 if name == "model" else 1, label=method_names.get(name, name))
    ax.set(xlim=(0.5, horizon + 0.5), ylim=(0, 1), xlabel="Day ahead", ylabel="Share of days inside P10-P90",
           title="P10-P90 coverage by horizon on the test period")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return fig
