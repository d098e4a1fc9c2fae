"""The held-out period as users get it: readings streamed through the live scorer in event-time
order, in batches, with failures resetting machines as the outcomes agent does; then what a
planner sees (failures alerted within the horizon, false alerts per machine-day, lead time) and
what the model predicted (ROC AUC, time-to-failure RMSE) against ground truth."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.training.alert_threshold import with_cooldown as life_with_cooldown
from stream_app.training.report import roc_auc, rmse

BATCH = 500  # readings per score_batch call: the worker's MAINTENANCE__BATCH_MAX


@dataclass
class Streamed:
    """Per held-out reading, in the order of `readings`."""

    p: np.ndarray
    ttf_hours: np.ndarray
    alert: np.ndarray
    by_model: np.ndarray
    seconds: float


def stream(scorer: MaintenanceScorer, readings: Sequence[SensorReading], outcomes: Sequence[MaintenanceOutcome],
           batch: int = BATCH) -> Streamed:
    """Every reading through score_batch in (event time, event id) order, `batch` at a time; an
    outcome resets its machine before the first reading after it (as the outcomes agent)."""
    import time

    started = time.perf_counter()
    order = sorted(range(len(readings)), key=lambda i: (readings[i].ts, readings[i].event_id))
    events = sorted(outcomes, key=lambda o: (o.ts, o.event_id))
    n = len(readings)
    out = Streamed(np.zeros(n), np.full(n, np.nan), np.zeros(n, bool), np.zeros(n, bool), 0.0)
    pending: list[int] = []

    def flush() -> None:
        for i, r in zip(pending, scorer.score_batch([readings[i] for i in pending], explain=False)):
            pred = r.prediction
            out.p[i] = pred.failure_probability
            out.ttf_hours[i] = math.nan if pred.time_to_failure_hours is None else pred.time_to_failure_hours
            out.alert[i] = pred.alert
            out.by_model[i] = pred.decision_source == "model"
        pending.clear()

    j = 0
    for i in order:
        while j < len(events) and events[j].ts < readings[i].ts:
            flush()
            scorer.reset_machine(events[j].machine_id, events[j].ts)
            j += 1
        pending.append(i)
        if len(pending) >= batch:
            flush()
    flush()
    out.seconds = time.perf_counter() - started
    return out


@dataclass
class Truth:
    """Ground truth per held-out reading: hours to the machine's next failure (NaN: none
    follows, so unknown), and the failures themselves."""

    machine: np.ndarray
    t: np.ndarray  # epoch s
    ttf_hours: np.ndarray
    failures: list[tuple[str, float]]  # (machine, epoch s)
    interval_minutes: float


def truth(readings: Sequence[SensorReading], outcomes: Sequence[MaintenanceOutcome]) -> Truth:
    failures = sorted((o.machine_id, o.ts.timestamp()) for o in outcomes if o.outcome == "failure")
    by_machine: dict[str, list[float]] = defaultdict(list)
    for m, t in failures:
        by_machine[m].append(t)
    machine = np.array([r.machine_id for r in readings], dtype=object)
    t = np.array([r.ts.timestamp() for r in readings])
    ttf = np.full(len(readings), np.nan)
    for m, times in by_machine.items():
        idx = np.flatnonzero(machine == m)
        f = np.asarray(times)
        nxt = np.searchsorted(f, t[idx], side="left")
        ok = nxt < len(f)
        ttf[idx[ok]] = (f[nxt[ok]] - t[idx[ok]]) / 3600.0
    gaps = []
    for m in set(machine.tolist()):
        ts = np.sort(t[machine == m])
        gaps.append(np.diff(ts))
    all_gaps = np.concatenate(gaps) if gaps else np.zeros(0)
    interval = float(np.median(all_gaps[all_gaps > 0]) / 60.0) if (all_gaps > 0).any() else 30.0
    return Truth(machine, t, ttf, failures, interval)


def with_cooldown(truth_: Truth, want: np.ndarray, cooldown_s: float) -> np.ndarray:
    """Alerts as the scorer emits them from per-reading decisions: one per machine per cooldown."""
    alert = np.zeros(len(want), dtype=bool)
    order = np.lexsort((truth_.t, truth_.machine.astype(str)))
    machines = truth_.machine[order].astype(str)
    starts = np.flatnonzero(np.r_[True, machines[1:] != machines[:-1], True])
    for lo, hi in zip(starts[:-1], starts[1:]):
        idx = order[lo:hi]
        alert[idx] = life_with_cooldown(truth_.t[idx], want[idx], cooldown_s)
    return alert


def metrics(tr: Truth, horizon_hours: float, cap_hours: float, alert: np.ndarray,
            p: Optional[np.ndarray] = None, ttf_hours: Optional[np.ndarray] = None) -> dict[str, Any]:
    """A planner's and a modeller's figures over the held-out period."""
    horizon = horizon_hours * 3600.0
    caught, leads = 0, []
    for m, f in tr.failures:
        window = (tr.machine == m) & (tr.t >= f - horizon) & (tr.t <= f)
        hits = np.flatnonzero(window & alert)
        if hits.size:
            caught += 1
            leads.append((f - tr.t[hits].min()) / 3600.0)
    known = np.isfinite(tr.ttf_hours)
    y = tr.ttf_hours <= horizon_hours
    false = int((alert & known & ~y).sum())
    machine_days = len(tr.t) * tr.interval_minutes / 1440.0
    n_fail = len(tr.failures)
    out: dict[str, Any] = {
        "failures": n_fail,
        "alerted": caught,
        "alerted_share": caught / n_fail if n_fail else None,
        "false_alerts_per_machine_day": false / machine_days if machine_days else None,
        "median_lead_h": float(np.median(leads)) if leads else None,
        "alerts": int(alert.sum()),
        "leads": leads,
    }
    if p is not None:
        out["roc_auc"] = roc_auc(y[known].astype(float), p[known])
    if ttf_hours is not None:
        exact = known & (tr.ttf_hours < cap_hours) & np.isfinite(ttf_hours)
        out["ttf_rmse_h"] = rmse(tr.ttf_hours[exact], ttf_hours[exact]) if exact.any() else None
    return out
