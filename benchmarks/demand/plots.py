"""Per data set, into its folder: fan charts (the live forecasts' P10-P90 and P50 against what
sold) of three series, and P10-P90 coverage and WAPE by horizon day for the product and the
baselines. Needs matplotlib (a core dependency); drawn headless (Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.demand.dataset import Dataset
from benchmarks.demand.evaluate import TRANSFORMER, Evaluation, Truth
from stream_app.features.demand import day_date

HISTORY_SHOWN = 42
NOMINAL = 0.8


def write(directory: Path, data: Dataset, tr: Truth, ev: Evaluation, holiday_days: dict[str, set[int]]) -> list[Path]:
    """`holiday_days`: per market, the days (since the epoch) its calendar marks as holidays."""
    import matplotlib

    matplotlib.use("Agg")
    directory.mkdir(parents=True, exist_ok=True)
    return [_fan(directory / "fan_charts.png", data, tr, ev, holiday_days),
            _by_horizon(directory / "by_horizon.png", data, ev)]


def _origin(ev: Evaluation, tr: Truth, holiday_days: set[int]) -> int:
    """The origin whose 30-day horizon holds the most holiday days (the calendar at work), the
    first origin when there are none."""
    origins = np.unique(ev.origin)
    H = ev.actual.shape[1]
    counts = [sum(tr.first_day + o + h in holiday_days for h in range(1, H + 1)) for o in origins]
    return int(origins[int(np.argmax(counts))])


def _picks(actual: np.ndarray) -> list[tuple[int, str]]:
    """Rows to chart: the highest volume, the median volume and the fewest selling days, among
    series that sold; none twice."""
    volume, selling = actual.sum(axis=1), (actual > 0).sum(axis=1)
    sold = np.flatnonzero(volume > 0)
    by_volume = sold[np.argsort(-volume[sold], kind="stable")]
    out: list[tuple[int, str]] = []
    for candidates, why in ((by_volume, "highest volume"), (by_volume[len(by_volume) // 2:], "median volume"),
                            (sold[np.argsort(selling[sold], kind="stable")], "fewest selling days")):
        pick = next((int(i) for i in candidates if int(i) not in [p for p, _ in out]), None)
        if pick is not None:
            out.append((pick, why))
    return out


def _fan(path: Path, data: Dataset, tr: Truth, ev: Evaluation, holiday_days: dict[str, set[int]]) -> Path:
    import matplotlib.pyplot as plt

    origin = _origin(ev, tr, set().union(*holiday_days.values()) if holiday_days else set())
    rows = np.flatnonzero(ev.origin == origin)
    picks = [(int(rows[i]), why) for i, why in _picks(ev.actual[rows])]
    product = next(s for s in ev.scored if s.name == TRANSFORMER)
    best = min((s for s in ev.scored if s.by_model is None), key=lambda s: s.scores["1-30"]["pinball"] or np.inf)
    fig, axes = plt.subplots(max(1, len(picks)), 1, figsize=(10, 0.6 + 2.9 * max(1, len(picks))), squeeze=False)
    H = ev.actual.shape[1]
    ahead = np.arange(1, H + 1)
    for ax, (row, why) in zip(axes[:, 0], picks):
        s = int(ev.series[row])
        before = np.arange(max(int(tr.first_sale[s]), origin - HISTORY_SHOWN + 1), origin + 1)
        q = product.daily[row]
        ax.plot(before - origin, tr.units[s, before], color="black", linewidth=1, label="sold before the origin")
        ax.fill_between(ahead, q[:, 0], q[:, 2], color="tab:blue", alpha=0.25, step="mid", label="P10-P90 (transformer)")
        ax.plot(ahead, q[:, 1], color="tab:blue", drawstyle="steps-mid", label="P50 (transformer)")
        ax.plot(ahead, best.daily[row][:, 1], color="tab:orange", linestyle="--", drawstyle="steps-mid",
                label=f"P50 ({best.name})")
        ax.plot(ahead, ev.actual[row], "ko", markersize=3, label="sold (held out)")
        market = tr.series[s].split("/", 1)[1]
        for h in ahead:
            if tr.first_day + origin + h in holiday_days.get(market, set()):
                ax.axvspan(h - 0.5, h + 0.5, color="tab:red", alpha=0.12, linewidth=0)
        inside = int(((q[:, 0] <= ev.actual[row]) & (ev.actual[row] <= q[:, 2])).sum())
        ax.set_title(f"{tr.series[s]} ({why}): {inside} of {H} days inside P10-P90", fontsize=9)
        ax.set_ylabel("units per day")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(f"days from the origin (close of {day_date(tr.first_day + origin)}); red: holidays in the calendar")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"{data.name}: live forecasts against what sold", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, 1 - 0.28 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _by_horizon(path: Path, data: Dataset, ev: Evaluation) -> Path:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    H = ev.actual.shape[1]
    days = np.arange(1, H + 1)
    left.axhspan(NOMINAL - 0.05, NOMINAL + 0.05, color="grey", alpha=0.15)
    left.axhline(NOMINAL, color="grey", linestyle="--", linewidth=1)
    dashes = iter(["--", ":", "-."] * 3)
    for s in ev.scored:
        # the live scorers solid and thick; baselines dashed, so one that overlays another shows
        style = dict(linewidth=2.2, linestyle="-") if s.by_model is not None else dict(linewidth=1.2, linestyle=next(dashes))
        cov = [np.nan if d["coverage"] is None else d["coverage"] for d in s.per_day]
        wape = [np.nan if d["wape"] is None else d["wape"] for d in s.per_day]
        left.plot(days, cov, label=s.name, **style)
        right.plot(days, wape, label=s.name, **style)
    left.set(xlabel="day ahead", ylabel="share of days inside P10-P90", ylim=(0, 1), title="P10-P90 coverage by horizon")
    right.set(xlabel="day ahead", ylabel="WAPE of P50", title="WAPE by horizon")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{data.name}: held-out {data.heldout_start} to {data.heldout_end}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
