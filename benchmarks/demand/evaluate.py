"""The live scorers' forecasts and the baselines' against what sold, on the same pairs.

Pairs: every series the served scorer forecast at every origin from the close of the day before
the held-out days to the origin whose 30-day horizon ends on the last held-out day (a series is
forecast from its first sale on). Figures are the product's own (stream_app.training.
demand_metrics): WAPE of P50, pinball loss of P10/P50/P90 per realised unit, P10-P90 coverage,
by horizon bucket and for the 7- and 30-day totals; and the WAPE over the horizon days that the
series' market calendar marks as holidays (shops shut on many of them: little sells, so the
figure is large for every method and says most by comparison between rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Optional

import numpy as np

from benchmarks.demand import baselines
from benchmarks.demand.dataset import Dataset, Event
from benchmarks.demand.live import Streamed
from stream_app.features.demand import day_index

BUCKETS = ((1, 7), (8, 14), (15, 30))
ON_PAR = 0.01  # pinball within 1 % of the best baseline's: neither better nor worse
SERVED = "served (product)"
TRANSFORMER = "transformer"
NO_CALENDAR = "transformer, no calendar"


@dataclass
class Truth:
    """Daily units per series over the training and held-out days."""

    series: list[str]  # "sku/market", sorted
    first_day: int  # days since the epoch of column 0
    units: np.ndarray  # (S, T)
    first_sale: np.ndarray  # (S,) column of each series' first sale

    def column(self, day: date) -> int:
        return day_index(day) - self.first_day


def truth(data: Dataset) -> Truth:
    events: list[Event] = data.sales + data.heldout
    series = sorted({f"{e['sku']}/{e['market']}" for e in events})
    index = {s: i for i, s in enumerate(series)}
    days = np.array([day_index(date.fromisoformat(e["ts"][:10])) for e in events])
    first = int(days.min())
    units = np.zeros((len(series), int(days.max()) - first + 1))
    rows = np.array([index[f"{e['sku']}/{e['market']}"] for e in events])
    np.add.at(units, (rows, days - first), np.array([e["units"] for e in events]))
    first_sale = np.full(len(series), units.shape[1], dtype=np.int64)
    np.minimum.at(first_sale, rows, days - first)
    return Truth(series, first, units, first_sale)


@dataclass
class Scored:
    """One model's or baseline's forecasts of the pairs and their figures."""

    name: str
    daily: np.ndarray  # (N, H, 3)
    totals: np.ndarray  # (N, 2, 3)
    scores: dict[str, Any]  # horizon_scores, plus "holidays": the horizon days the calendar marks
    per_day: list[dict[str, Any]]  # per horizon day
    by_model: Optional[np.ndarray] = None  # (N,) a live scorer's: the model decided (else its rules)


@dataclass
class Evaluation:
    series: np.ndarray  # (N,) truth row of each pair
    origin: np.ndarray  # (N,) truth column of each pair's origin
    actual: np.ndarray  # (N, H)
    scored: list[Scored]  # the served product first


def evaluate(data: Dataset, tr: Truth, live: dict[str, Streamed], holiday_days: dict[str, set[int]]) -> Evaluation:
    """`live`: the live scorers' forecasts by row name, the served one first (its pairs, its
    version's rule fallback)."""
    from stream_app.training.demand_metrics import horizon_scores, quantile_scores

    served = next(iter(live.values()))
    H = served.daily.shape[1]
    first_origin = tr.column(data.heldout_start - timedelta(days=1))
    last_origin = tr.column(data.heldout_end) - H
    index = {s: i for i, s in enumerate(tr.series)}
    origin = served.origin - tr.first_day
    keep = np.flatnonzero((origin >= first_origin) & (origin <= last_origin))
    series = np.array([index[served.series[k]] for k in keep], dtype=np.int64)
    origin = origin[keep]
    history, actual = baselines.windows(tr.units, tr.first_sale, series, origin, served.history_days, H)
    totals_y = np.stack([actual[:, :w].sum(axis=1) for w in baselines.TOTALS], axis=1)
    forecasts: dict[str, tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]] = {}
    for name, streamed in live.items():
        rows = _align(streamed, [served.series[k] for k in keep], served.origin[keep])
        forecasts[name] = (streamed.daily[rows], streamed.totals[rows], streamed.by_model[rows])
    for method in baselines.METHODS:
        errors = baselines.fit(method, tr.units, tr.first_sale, first_origin, H)
        forecasts[method] = (*baselines.forecast(method, history, series, errors, H), None)
    rule = f"product rule fallback ({served.fallback_method.replace('_', ' ')})"
    forecasts[rule] = (*baselines.product_fallback(served.fallback_method, served.residuals, history, H), None)
    holiday = _holiday_mask(tr, series, origin, H, holiday_days)
    scored = []
    for name, (daily, totals, by_model) in forecasts.items():
        scores = horizon_scores(actual, daily, totals_y, totals, buckets=BUCKETS, windows=baselines.TOTALS)
        scores["holidays"] = quantile_scores(actual[holiday], daily[holiday])
        per_day = [quantile_scores(actual[:, h], daily[:, h]) for h in range(H)]
        scored.append(Scored(name, daily, totals, scores, per_day, by_model))
    return Evaluation(series, origin, actual, scored)


def _align(streamed: Streamed, series: list[str], origin: np.ndarray) -> np.ndarray:
    """Rows of `streamed` holding the pairs (series[i], origin[i])."""
    at = {(s, int(o)): i for i, (s, o) in enumerate(zip(streamed.series, streamed.origin.tolist()))}
    missing = [(s, int(o)) for s, o in zip(series, origin.tolist()) if (s, int(o)) not in at]
    if missing:
        raise RuntimeError(f"{len(missing)} pairs were not forecast by every live scorer, e.g. {missing[0]}")
    return np.array([at[(s, int(o))] for s, o in zip(series, origin.tolist())], dtype=np.int64)


def _holiday_mask(tr: Truth, series: np.ndarray, origin: np.ndarray, H: int,
                  holiday_days: dict[str, set[int]]) -> np.ndarray:
    """(N, H): the horizon day is a holiday in the series' market's calendar."""
    markets = [s.split("/", 1)[1] for s in tr.series]
    days = tr.first_day + origin[:, None] + 1 + np.arange(H)[None, :]
    out = np.zeros(days.shape, dtype=bool)
    for market, marked in holiday_days.items():
        rows = np.array([markets[s] == market for s in series])
        if rows.any() and marked:
            out[rows] = np.isin(days[rows], np.fromiter(marked, dtype=np.int64))
    return out


def row_metrics(ev: Evaluation, s: Scored, heldout_days: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "WAPE (P50)": s.scores["1-30"]["wape"],
        "pinball": s.scores["1-30"]["pinball"],
        "P10-P90 coverage": s.scores["1-30"]["coverage"],
        "30-day total coverage": s.scores["total_30"]["coverage"],
    }
    out.update({f"WAPE {lo}-{hi} d": s.scores[f"{lo}-{hi}"]["wape"] for lo, hi in BUCKETS})
    out["WAPE on holidays"] = s.scores["holidays"]["wape"]
    out.update({"series": int(len(np.unique(ev.series))), "held-out days": heldout_days,
                "origins": int(len(np.unique(ev.origin)))})
    out["model-decided share"] = None if s.by_model is None else float(s.by_model.mean())
    return out


def judgement(name: str, ev: Evaluation, rules_serve: Optional[str]) -> str:
    """One line: what serves, and the served forecasts and the transformer against the best
    baseline (by pinball loss, then WAPE). `rules_serve`: why the version serves its rule."""
    by_name = {s.name: s for s in ev.scored}
    baselines_ = [s for s in ev.scored if s.by_model is None]
    best = min(baselines_, key=lambda s: (_num(s.scores["1-30"]["pinball"]), _num(s.scores["1-30"]["wape"])))
    b = best.scores["1-30"]
    if b["pinball"] is None:
        return f"{name}: no units sold in the held-out horizons, nothing to judge"
    serves = f"the rule fallback serves ({rules_serve})" if rules_serve else "the transformer serves"
    parts = [f"{name}: {serves}; best baseline {best.name}"]
    compared = (("served", SERVED), ("transformer", TRANSFORMER)) if rules_serve else (("served", SERVED),)
    for label, key in compared:
        p = by_name[key].scores["1-30"]
        ratio = _num(p["pinball"]) / b["pinball"] if b["pinball"] else float("inf")
        verdict = "better" if ratio < 1 - ON_PAR else "worse" if ratio > 1 + ON_PAR else "on par"
        parts.append(f"{label} {verdict}: pinball {p['pinball']:.3f} vs {b['pinball']:.3f} "
                     f"({_change(p['pinball'], b['pinball'])}), WAPE {p['wape']:.3f} vs {b['wape']:.3f} "
                     f"({_change(p['wape'], b['wape'])}), P10-P90 coverage {p['coverage']:.2f} vs {b['coverage']:.2f}")
    return "; ".join(parts)


def _num(value: Any) -> float:
    return float("inf") if value is None else float(value)


def _change(value: float, base: float) -> str:
    return f"{100 * (value / base - 1):+.0f} %" if base else "n/a"
