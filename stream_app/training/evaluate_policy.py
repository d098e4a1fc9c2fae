"""The decision policy users actually get, evaluated on the test period.

The per-reading metrics of the training report judge the model's probability. Users get
something else: the live scorer's alerts, where the model decides at its stored alert
threshold whenever it is in its depth (competence clears the gate), the physical-limit rules
decide otherwise, and a cooldown keeps one alert per machine per few hours. This module
measures that, with the real scorer:

* the version just written is loaded by `MaintenanceScorer.from_version` (the same loading,
  calibration, operating point, confidence and decisions as a worker), with settings as live:
  the false-alert budget, min_confidence and the cooldown;
* every life that reaches into the test period is streamed through `score_batch` from its first
  reading, in global event-time order, in batches of `batch_size` readings; failure/repair
  outcomes call `reset_machine(machine, outcome time)` between batches as the outcomes agent
  does (readings at or before an outcome's time are scored before it);
* model explanations are skipped (explain=False): they cost most of the scoring time and do
  not change decisions.

Readings at or after the cutoff are then scored against the labels. For comparison, on the same
readings: the model alone (alert whenever the calibrated probability reaches the served
threshold, no gate, same cooldown), the rules alone (the same scorer with no model: what the
product does when the model is unavailable), and each baseline (its calibrated probability at
its own threshold, chosen for the same budget on the same validation slice).

Metrics (alerts are the ones emitted, after the cooldown):
  failures caught   failures in the test period (with a test reading within the horizon before
                    them) that had an alert within the horizon before them; lead time from the
                    first such alert. The alert may precede the cutoff: a failure a few hours
                    after it was often warned about just before it, and the cooldown then
                    (rightly) keeps the test readings silent; not counting that warning would
                    count a warned failure as missed.
  false alerts      alerts on readings with no failure within the horizon after them (known
                    label), per machine-day of test readings.
  alert precision   alerts followed by a failure within the horizon / alerts whose label is known
                    (alerts near the end of a censored life cannot be judged).
  rule-decided      share of test readings whose decision the rules took.
  reliability       per confidence band, how often the model's own decision (p >= threshold or
                    not) was right, whether or not it was the one used.
  for the figures   per failure, each policy's lead time (or a miss); the per-reading decisions
                    of the product and of the rules as points of the ROC and precision-recall
                    planes (the rules have no score to sweep).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

import numpy as np

from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.registry import ModelVersion
from stream_app.scoring.maintenance import MaintenanceScorer, ScoredReading
from stream_app.settings import MaintenanceSettings
from stream_app.training.alert_threshold import with_cooldown

# Confidence bands of the reliability table: [lo, hi), the last one closed.
CONFIDENCE_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.85), (0.85, 0.95), (0.95, 1.0))
POLICIES = ("product", "model_only", "rules_only", "baseline", "trees")


@dataclass
class LifeView:
    """What the evaluation needs of one life: its readings (indices, epoch seconds), how it ends,
    and its full labels (y, y_mask)."""

    machine_id: str
    rows: np.ndarray
    t: np.ndarray
    end: str
    end_t: float
    y: np.ndarray
    y_mask: np.ndarray


@dataclass
class Streamed:
    """Per streamed life, aligned with its readings."""

    p: list[np.ndarray]
    confidence: list[np.ndarray]
    by_model: list[np.ndarray]
    want: list[np.ndarray]  # the decision was to alert (before the cooldown)
    alert: list[np.ndarray]  # emitted alerts
    seconds: float = 0.0


def stream(
    scorer: MaintenanceScorer,
    readings: Sequence[SensorReading],
    outcomes: Sequence[MaintenanceOutcome],
    lives: Sequence[LifeView],
    batch_size: int = 400,
) -> Streamed:
    """Stream the lives' readings through the scorer in (event time, event id) order, resetting
    machines on outcomes between batches; return the predictions per life."""
    started = time.perf_counter()
    life_of = np.concatenate([np.full(len(l.rows), k) for k, l in enumerate(lives)]) if lives else np.zeros(0, int)
    pos_of = np.concatenate([np.arange(len(l.rows)) for l in lives]) if lives else np.zeros(0, int)
    rows = np.concatenate([l.rows for l in lives]) if lives else np.zeros(0, int)
    times = np.concatenate([l.t for l in lives]) if lives else np.zeros(0)
    order = sorted(range(len(rows)), key=lambda k: (times[k], readings[rows[k]].event_id))
    events = sorted(outcomes, key=lambda o: (o.ts, o.event_id))
    event_t = [o.ts.timestamp() for o in events]

    n = [len(l.rows) for l in lives]
    out = Streamed(
        p=[np.zeros(k) for k in n], confidence=[np.zeros(k) for k in n], by_model=[np.zeros(k, bool) for k in n],
        want=[np.zeros(k, bool) for k in n], alert=[np.zeros(k, bool) for k in n],
    )
    batch: list[int] = []

    def flush() -> None:
        if not batch:
            return
        results: list[ScoredReading] = scorer.score_batch([readings[rows[k]] for k in batch])
        for k, r in zip(batch, results):
            li, pos = life_of[k], pos_of[k]
            pred = r.prediction
            out.p[li][pos] = pred.failure_probability
            out.confidence[li][pos] = pred.confidence
            out.by_model[li][pos] = pred.decision_source == "model"
            out.alert[li][pos] = pred.alert
            out.want[li][pos] = pred.alert or r.suppressed
        batch.clear()

    j = 0
    for k in order:
        while j < len(events) and event_t[j] < times[k]:
            flush()
            scorer.reset_machine(events[j].machine_id, events[j].ts)
            j += 1
        batch.append(k)
        if len(batch) >= batch_size:
            flush()
    flush()
    out.seconds = time.perf_counter() - started
    return out


def alert_metrics(
    alerts: Sequence[np.ndarray],
    lives: Sequence[LifeView],
    cutoff: float,
    horizon_hours: float,
    interval_minutes: float,
    rule_decided: Optional[Sequence[np.ndarray]] = None,
    decisions: Optional[Sequence[np.ndarray]] = None,
) -> dict[str, Any]:
    """Failures caught, lead time, false alerts per machine-day, alert precision (and the
    rule-decided share, and the share of per-reading decisions, before the cooldown, that match
    the label) over the readings at or after `cutoff`."""
    by_failure = failure_leads(alerts, lives, cutoff, horizon_hours)
    failures = len(by_failure)
    leads = [lead for _, lead in by_failure if lead is not None]
    caught = len(leads)
    fired = true = false = unknown = test_readings = ruled = 0
    for life, alert in zip(lives, alerts):
        test = life.t >= cutoff
        test_readings += int(test.sum())
        fired_here = test & alert
        fired += int(fired_here.sum())
        known = life.y_mask & fired_here
        true += int((known & (life.y > 0.5)).sum())
        false += int((known & (life.y <= 0.5)).sum())
        unknown += int((fired_here & ~life.y_mask).sum())
    if rule_decided is not None:
        ruled = sum(int((r & (l.t >= cutoff)).sum()) for r, l in zip(rule_decided, lives))
    right = judged = 0
    if decisions is not None:
        for d, life in zip(decisions, lives):
            keep = (life.t >= cutoff) & life.y_mask
            judged += int(keep.sum())
            right += int((d[keep] == (life.y[keep] > 0.5)).sum())
    machine_days = test_readings * interval_minutes / 1440.0
    return {
        "failures": failures,
        "failures_caught": caught,
        "failure_recall": caught / failures if failures else None,
        "median_lead_hours": float(np.median(leads)) if leads else None,
        "alerts": fired,
        "true_alerts": true,
        "false_alerts": false,
        "unverifiable_alerts": unknown,
        "alert_precision": true / (true + false) if true + false else None,
        "machine_days": machine_days,
        "false_alerts_per_machine_day": false / machine_days if machine_days else None,
        "rule_decided_share": (ruled / test_readings if test_readings else None) if rule_decided is not None else None,
        "decisions_right": right / judged if judged else None,
    }


def failure_leads(
    alerts: Sequence[np.ndarray], lives: Sequence[LifeView], cutoff: float, horizon_hours: float
) -> list[tuple[int, Optional[float]]]:
    """Per test-period failure (one with a test reading within the horizon before it): the index
    of its life and the hours from the first alert within the horizon to the failure, None when
    there was none (the alert may precede the cutoff: see the module docstring)."""
    horizon = horizon_hours * 3600
    out: list[tuple[int, Optional[float]]] = []
    for k, (life, alert) in enumerate(zip(lives, alerts)):
        if life.end != "failure" or life.end_t < cutoff:
            continue
        window = (life.t >= life.end_t - horizon) & (life.t <= life.end_t)
        if not (window & (life.t >= cutoff)).any():
            continue
        hits = np.flatnonzero(window & alert)
        out.append((k, (life.end_t - life.t[hits[0]]) / 3600.0 if len(hits) else None))
    return out


def decision_point(decisions: Sequence[np.ndarray], lives: Sequence[LifeView], cutoff: float) -> dict[str, Optional[float]]:
    """Per-reading decisions (before the cooldown) on test readings with a known label, as a
    point of the ROC and precision-recall planes: true- and false-positive rate, precision."""
    tp = fp = pos = neg = 0
    for d, life in zip(decisions, lives):
        keep = (life.t >= cutoff) & life.y_mask
        y, want = life.y[keep] > 0.5, np.asarray(d)[keep].astype(bool)
        tp, fp = tp + int((want & y).sum()), fp + int((want & ~y).sum())
        pos, neg = pos + int(y.sum()), neg + int((~y).sum())
    return {"true_positive_rate": tp / pos if pos else None, "false_positive_rate": fp / neg if neg else None,
            "precision": tp / (tp + fp) if tp + fp else None}


def _failures(
    views: Sequence[LifeView], alerts: dict[str, Sequence[np.ndarray]], cutoff: float, horizon_hours: float
) -> list[dict[str, Any]]:
    """Per test-period failure, each policy's lead time (None: missed), for the report's figure."""
    leads = {name: dict(failure_leads(a, views, cutoff, horizon_hours)) for name, a in alerts.items()}
    first = next(iter(leads.values()), {})
    return [{"machine_id": views[k].machine_id,
             "failed_at": datetime.fromtimestamp(views[k].end_t, tz=timezone.utc).isoformat(),
             "lead_hours": {name: by_life[k] for name, by_life in leads.items()}} for k in first]


def reliability(
    streamed: Streamed, lives: Sequence[LifeView], cutoff: float, threshold: float,
    bands: Sequence[tuple[float, float]] = CONFIDENCE_BANDS,
) -> list[dict[str, Any]]:
    """Per confidence band, over test readings with a known label: how often the model's own
    decision was right, and (where the rules decided) how often the rules' decision was."""
    conf, model_right, by_model, rule_right = [], [], [], []
    for life, p, c, m, w in zip(lives, streamed.p, streamed.confidence, streamed.by_model, streamed.want):
        keep = (life.t >= cutoff) & life.y_mask
        y = life.y[keep] > 0.5
        conf.append(c[keep])
        model_right.append((p[keep] >= threshold) == y)
        by_model.append(m[keep])
        rule_right.append(w[keep] == y)
    c, mr, bm, rr = (np.concatenate(a) if a else np.zeros(0) for a in (conf, model_right, by_model, rule_right))
    mr, bm, rr = mr.astype(bool), bm.astype(bool), rr.astype(bool)
    rows = []
    for k, (lo, hi) in enumerate(bands):
        last = k == len(bands) - 1
        sel = (c >= lo) & ((c <= hi) if last else (c < hi))
        n = int(sel.sum())
        ruled = sel & ~bm
        rows.append({
            "band": f"[{lo:g}, {hi:g}{']' if last else ')'}",
            "low": lo,
            "high": hi,
            "readings": n,
            "decided_by_model": int((sel & bm).sum()),
            "mean_confidence": float(c[sel].mean()) if n else None,
            "model_decision_right": float(mr[sel].mean()) if n else None,
            "model_decision_right_where_model_decided": float(mr[sel & bm].mean()) if (sel & bm).any() else None,
            "rules_decision_right_where_rules_decided": float(rr[ruled].mean()) if ruled.any() else None,
        })
    return rows


def evaluate_policy(
    version: ModelVersion,
    settings: MaintenanceSettings,
    readings: Sequence[SensorReading],
    outcomes: Sequence[MaintenanceOutcome],
    lives: Sequence[LifeView],
    baselines: dict[str, tuple[Sequence[np.ndarray], float]],
    cutoff: float,
    horizon_hours: float,
    interval_minutes: float,
    batch_size: int = 400,
) -> dict[str, Any]:
    """Everything above for `lives` (all lives; those ending before the cutoff are skipped);
    `baselines`: name -> (calibrated probability per life, aligned with `lives`; its threshold)."""
    started = time.perf_counter()
    chosen = [k for k, l in enumerate(lives) if len(l.t) and l.t[-1] >= cutoff]
    views = [lives[k] for k in chosen]

    served = MaintenanceScorer.from_version(version, settings, explain=False)
    product = stream(served, readings, outcomes, views, batch_size)
    rules = stream(
        MaintenanceScorer(settings, None, MaintenanceScorer._manifest_rules(version), "rules-only evaluation", explain=False),
        readings, outcomes, views, batch_size,
    )
    thr, cool = served.threshold, settings.alert_cooldown_s
    model_want = [p >= thr for p in product.p]
    model_only = [with_cooldown(l.t, w, cool) for l, w in zip(views, model_want)]
    args = (cutoff, horizon_hours, interval_minutes)
    never = [np.zeros(len(l.t), bool) for l in views]
    metrics = {
        "product": alert_metrics(product.alert, views, *args, [~m for m in product.by_model], product.want),
        "model_only": alert_metrics(model_only, views, *args, never, model_want),
        "rules_only": alert_metrics(rules.alert, views, *args, [~n for n in never], rules.want),
    }
    thresholds = {"model_only": thr}
    for name, (probability, base_thr) in baselines.items():
        want = [np.asarray(probability[k]) >= base_thr for k in chosen]
        alerts = [with_cooldown(l.t, w, cool) for l, w in zip(views, want)]
        metrics[name] = alert_metrics(alerts, views, *args, never, want)
        thresholds[name] = base_thr
    test = [l.t >= cutoff for l in views]
    by_source = {
        "model": int(sum((a & m & s).sum() for a, m, s in zip(product.alert, product.by_model, test))),
        "rule": int(sum((a & ~m & s).sum() for a, m, s in zip(product.alert, product.by_model, test))),
    }
    return {
        "model_version": version.version,
        "settings": {
            "alert_threshold": thr,
            "false_alert_budget": settings.false_alert_budget,
            "min_confidence": settings.min_confidence,
            "alert_cooldown_hours": cool / 3600.0,
            "policy": "operating point" if served._policy is not None else "confidence gate",
        },
        "thresholds": thresholds,
        "batch_size": batch_size,
        "streamed_lives": len(views),
        "streamed_readings": int(sum(len(l.t) for l in views)),
        "test_readings": int(sum(int(s.sum()) for s in test)),
        "cutoff": datetime.fromtimestamp(cutoff, tz=timezone.utc).isoformat(),
        "policies": metrics,
        "product_alerts_by_source": by_source,
        "reliability": reliability(product, views, cutoff, thr),
        "failures": _failures(views, {"product": product.alert, "model_only": model_only, "rules_only": rules.alert},
                              cutoff, horizon_hours),
        "decision_points": {"product": decision_point(product.want, views, cutoff),
                            "rules_only": decision_point(rules.want, views, cutoff)},
        "scoring_seconds": {"product": round(product.seconds, 2), "rules_only": round(rules.seconds, 2)},
        "seconds": round(time.perf_counter() - started, 2),
    }

