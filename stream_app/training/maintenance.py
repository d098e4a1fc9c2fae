"""Train the predictive-maintenance LSTM, evaluate it against linear baselines on a later time
period, and save a registry version the live scorer can load.

Lives
    Each machine's readings (time order) are split into lives. A life ends at a failure or
    repair outcome (readings at or before the outcome's time belong to the ending life) or where
    `cycle` decreases without an outcome (the end is then unknown: censored at the life's last
    reading). The last life of a machine with no outcome after it is censored at its last
    reading (data ends). Outcomes before a machine's first reading, for machines without
    readings, or a second outcome with no reading in between, attach to no life (counted).

Labels per reading at time t (horizon H, cap C)
    Failure life, failure at f:   TTF = f - t (hours); y = TTF <= H; TTF target = min(TTF, C)/C.
    Censored at o (repair, unknown end, data end): we only know no failure happened before o, so
    with r = o - t: y = 0 is known only when r > H, otherwise the label is masked; the TTF target
    is a lower bound min(r, C)/C, trained with a one-sided (hinge) squared loss that penalises
    only predictions below it (when r >= C the bound is the cap itself, i.e. exact).

Time-ordered split
    Cutoff = the first reading time after the (1 - test_fraction) quantile of all reading
    timestamps (readings before it: training; at or after it: test). Training uses readings
    before the cutoff with labels computed as if the data ended at the cutoff: a failure after
    the cutoff is not known yet, so its life is censored at the cutoff. This masks the leak
    (pre-cutoff readings within H of a post-cutoff failure) while keeping the negatives that
    are already certain then. The encoder, baselines, pos_weight and rule limits see training
    readings only. Evaluation runs every life from its first reading (state carried across the
    cutoff, as a live worker would) and scores post-cutoff readings with their full labels.
    Early stopping uses a second, earlier cutoff inside the training period in the same way:
    the model trains on labels known before it and is validated on the readings between it and
    the test cutoff. The baselines are fitted on the same readings and labels as the model.

Features
    Per-operating-mode scaling and a trend memory per machine (EWMAs at `trend_hours`, the
    life's baseline over its first `baseline_hours`): see stream_app.features.maintenance. The
    trend columns are scaled to unit spread on the training period.

Training
    Whole lives from a zero state (as live scoring starts), padded into batches of similar
    length and run by truncated BPTT in `chunk_len` steps (state carried, detached, between
    chunks). Plus `offset_copies` copies per life that start at a random reading with a zero
    state, re-encoded from there, so a worker that starts mid-life sees familiar states. Each
    head k weights each life by its own Poisson(1) bootstrap draw, so the heads' spread
    reflects sampling uncertainty. Loss = BCE(pos_weight) + ttf_weight * (MSE | hinge) on the
    TTF fraction; pos_weight defaults to sqrt(negatives/positives), a compromise: on the default
    simulated history the full ratio (~12) moved the 0.5 threshold on the raw probability to
    recall 0.95 / precision 0.72 / 0.37 false alerts per machine-day, the square root (~3.5) to
    0.92 / 0.79 / 0.24 (measured before the calibration below, which now moves the threshold).
    Adam with a cosine learning-rate decay; an exponential moving average of the weights is
    validated after each epoch and the best one is saved. Evaluation uses the mean of the heads'
    probabilities, calibrated (and of their TTF fractions, times the cap).

Calibration and confidence
    The BCE's pos_weight inflates the raw probabilities. After fitting, Platt scaling
    (p_cal = sigmoid(a * logit(mean head probability) + b)) is fitted on the validation slice
    (readings in [validation cutoff, test cutoff), labels as known at the test cutoff; never the
    test period) and stored as the manifest's "calibration"; the scorer reports p_cal and compares
    it with the version's alert threshold. The same slice gives the reference for the heads' spread (its
    `spread_quantile`, default the 99th percentile, of the calibrated heads' std), stored as
    "confidence": {"spread_reference": ..}: see stream_app.scoring.confidence. The baselines are
    calibrated on the same slice. The test-period metrics are those of the calibrated
    probabilities; the uncalibrated ones are kept next to them. Without a validation slice
    (val_fraction 0), or with too few positives or negatives in it, the calibration is the
    identity and the report says why.

Operating point
    Each model's alert threshold is chosen on the same validation slice for the user's operating
    point (`false_alert_budget` per machine-day, optionally `min_precision`): the whole
    threshold curve and the choice are stored as the manifest's "decision" (the baselines'
    under "baselines"), see stream_app.scoring.operating_point and
    stream_app.training.alert_threshold.

Baselines
    A linear model and gradient-boosted trees (LightGBM, where installed) on rolling-window
    features of the basic encoded inputs, the trend memory being the model's own
    (stream_app.training.baselines), stored with the version (stream_app.training.baseline_store)
    so the comparison can be repeated on later data.

Decision policy
    After the version is written (not yet promoted), `evaluate_policy` streams every life that
    reaches into the test period through the real scorer loaded from that version and reports
    what users get (model decisions + rule fallback + cooldown) next to the model alone, the
    rules alone and the baselines; the report is then rewritten with it and the version released
    (stream_app.training.release: through the promotion gate by default).

Comparison with the current version
    When a version is current, it is evaluated on this run's test period too (its own features,
    weights and calibration; this run's lives, labels and metric code: `evaluate_version`), and
    both sets of the gate's metrics go into the new manifest's "comparison".

Threads
    `threads` (default 1) is passed to torch.set_num_threads for the run and restored after.
    The LSTM's matrices are small (batch 16 x hidden 64): a second thread gains nothing, and
    when another process competes for the two cores, OpenMP's spinning threads made epochs
    10-200x slower (measured: 0.6 s -> 17-130 s per epoch); one thread is unaffected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.features.maintenance import MaintenanceFeatures
from stream_app.models.maintenance_lstm import MaintenanceLSTM
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.scoring.confidence import SPREAD_PENALTY, Calibration, decisiveness, logit, spread_reference_from
from stream_app.scoring.maintenance import LoadedModel
from stream_app.settings import MaintenanceSettings
from stream_app.scoring.operating_point import OperatingPoint
from stream_app.training import baseline_store
from stream_app.training import baselines as bl
from stream_app import progress as show
from stream_app.training.alert_threshold import ValidationLife, operating_point, sweep
from stream_app.training.baseline_store import StoredBaseline
from stream_app.training.evaluate_policy import LifeView, evaluate_policy
from stream_app.training.release import Release, comparison, gate_metrics
from stream_app.training.maintenance_plots import MaintenanceCurves
from stream_app.training.maintenance_report import build_report as _build_report
from stream_app.training.report import Report, binary_metrics, brier, jsonable, reliability_bins, rmse

MODEL_NAME = "maintenance"
TTF_NONE, TTF_EXACT, TTF_LOWER = 0, 1, 2


@dataclass
class TrainConfig:
    horizon_hours: float = 24.0
    ttf_cap_hours: float = 96.0
    # model
    hidden: int = 64
    # One layer: with the trend memory doing the long-range integration, a second layer measured
    # no better on the benchmark data sets, and a machine's state stays within its memory budget.
    layers: int = 1
    heads: int = 5
    dropout: float = 0.1
    # optimisation
    epochs: int = 20  # at most; early stopping usually ends sooner
    chunk_len: int = 64  # truncated-BPTT length (readings)
    batch_size: int = 16  # lives per batch
    lr: float = 3e-3
    weight_decay: float = 1e-5
    min_lr_ratio: float = 0.05  # cosine decay of the learning rate to lr * this
    ema_decay: float = 0.99  # per optimizer step; 0: use the raw weights
    grad_clip: float = 1.0
    # lambda of the TTF loss (on the TTF fraction, so its squares are small). 10 rather than 3: on
    # the benchmark data sets (benchmarks/maintenance) it cut the held-out TTF RMSE by ~12 % on the
    # product's simulator and 0-7 % on the pumps, same on the turbofans, at the same ROC AUC but on
    # the pumps (-0.02).
    ttf_weight: float = 10.0
    pos_weight: Optional[float] = None  # None: sqrt(negatives / positives) of the training labels
    offset_copies: int = 1  # extra copies per life starting mid-life from a zero state
    min_offset_steps: int = 24  # an offset copy keeps at least this many readings
    val_fraction: float = 0.15  # share of the training period used for early stopping (0: none)
    patience: int = 4  # epochs without a better validation loss before stopping
    seed: int = 0
    # features: per-operating-mode scaling and the trend memory (stream_app.features.maintenance)
    per_mode_scaling: bool = True
    trend_hours: tuple[float, ...] = (3.0, 24.0)  # EWMA time constants, fast first; () for none
    baseline_hours: float = 12.0  # the start of a life that makes the machine's own baseline; 0: none
    # split and evaluation
    test_fraction: float = 0.25
    # the operating point (stream_app.scoring.operating_point): the alert threshold is chosen on
    # the validation slice for this many false alerts per machine-day (and this precision)
    false_alert_budget: float = 0.1
    min_precision: Optional[float] = None
    alert_probability: float = 0.5  # without a validation slice, and for versions of the older policy
    alert_cooldown_hours: float = 6.0  # as the live alerting, for counting false alerts
    min_confidence: float = 0.85  # as the live gate (settings.maintenance), for the policy evaluation
    policy_batch_size: int = 400  # readings per score_batch call in the policy evaluation
    # calibration and confidence (validation slice)
    calibration_min_class: int = 5  # fewer validation positives or negatives: identity calibration
    spread_quantile: float = 0.99  # the validation spread quantile stored as the spread reference
    # manifest
    warmup_steps: int = 12
    min_sensor_coverage: float = 0.5
    rule_quantiles: tuple[float, float] = (0.0005, 0.9995)
    rule_margin: float = 0.1  # share of the healthy quantile range added on each side
    rule_min_values: int = 200  # fewer healthy values: no limit (null)
    rule_rate_quantile: float = 0.9999  # of healthy changes per hour between consecutive readings
    rule_rate_margin: float = 0.25  # share added to it
    # the user's own limits, {"sensor": {"low": x, "high": y}}: win over learned and default ones
    rule_overrides: dict[str, dict[str, Optional[float]]] = field(default_factory=dict)
    threads: int = 1  # see the module docstring: 2 threads gain nothing here and collapse under contention
    tree_baseline: bool = True  # gradient-boosted trees beside the linear baseline (needs lightgbm)

    @classmethod
    def quick(cls, **overrides: Any) -> "TrainConfig":
        """A small, fast configuration (demos, smoke tests): about 4 s of fitting on the default
        history (plus ~8 s of data preparation), a little weaker than the default."""
        base: dict[str, Any] = dict(hidden=32, layers=1, epochs=8, patience=3, offset_copies=0)
        base.update(overrides)
        return cls(**base)

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError("test_fraction must be in (0, 1)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        if self.horizon_hours <= 0 or self.ttf_cap_hours < self.horizon_hours:
            raise ValueError("need 0 < horizon_hours <= ttf_cap_hours")
        if self.epochs < 1 or self.chunk_len < 1 or self.batch_size < 1:
            raise ValueError("epochs, chunk_len and batch_size must be >= 1")
        self.rule_quantiles = tuple(self.rule_quantiles)  # type: ignore[assignment]
        self.trend_hours = tuple(float(h) for h in self.trend_hours)
        if any(h <= 0 for h in self.trend_hours) or self.baseline_hours < 0:
            raise ValueError("trend_hours must be positive and baseline_hours >= 0")
        if self.baseline_hours and not self.trend_hours:
            raise ValueError("baseline_hours needs trend_hours (the drift is the fast EWMA minus the baseline)")
        if self.false_alert_budget <= 0:
            raise ValueError("false_alert_budget must be positive")



# --- lives and labels --------------------------------------------------------------------------
def _epoch_s(ts: datetime) -> float:
    return ts.timestamp()


@dataclass
class Life:
    machine_id: str
    number: int  # 0-based life number within the machine
    rows: np.ndarray  # indices into the readings sequence, time order
    t: np.ndarray  # epoch seconds (float64)
    end: str  # "failure" | "repair" | "censored"
    end_t: float  # failure/repair time, or the last reading's time when censored
    failure_mode: Optional[str] = None

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class LifeStats:
    machines: int = 0
    lives: int = 0
    failures: int = 0
    repairs: int = 0
    censored: int = 0
    cycle_resets_without_outcome: int = 0
    unattached_outcomes: int = 0


def split_lives(
    readings: Sequence[SensorReading], outcomes: Sequence[MaintenanceOutcome]
) -> tuple[list[Life], LifeStats]:
    by_machine: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(readings):
        by_machine[r.machine_id].append(i)
    outs: dict[str, list[MaintenanceOutcome]] = defaultdict(list)
    for o in outcomes:
        outs[o.machine_id].append(o)
    stats = LifeStats(machines=len(by_machine))
    stats.unattached_outcomes += sum(len(v) for k, v in outs.items() if k not in by_machine)
    lives: list[Life] = []

    for machine in sorted(by_machine):
        idx = sorted(by_machine[machine], key=lambda i: (readings[i].ts, readings[i].event_id))
        events = sorted(outs.get(machine, []), key=lambda o: (o.ts, o.event_id))
        ev_t = [_epoch_s(o.ts) for o in events]
        j = 0
        current: list[int] = []
        number = 0

        def close(end: str, end_t: float, mode: Optional[str]) -> None:
            nonlocal current, number
            t = np.array([_epoch_s(readings[i].ts) for i in current], dtype=np.float64)
            lives.append(Life(machine, number, np.array(current, dtype=np.int64), t, end, end_t, mode))
            number += 1
            current = []

        prev_cycle: Optional[int] = None
        for i in idx:
            r = readings[i]
            t_i = _epoch_s(r.ts)
            while j < len(events) and ev_t[j] < t_i:
                if current:
                    o = events[j]
                    close(o.outcome, ev_t[j], o.failure_mode if o.outcome == "failure" else None)
                    prev_cycle = None
                else:
                    stats.unattached_outcomes += 1
                j += 1
            if current and prev_cycle is not None and r.cycle is not None and r.cycle < prev_cycle:
                stats.cycle_resets_without_outcome += 1
                close("censored", _epoch_s(readings[current[-1]].ts), None)
            current.append(i)
            if r.cycle is not None:
                prev_cycle = r.cycle
        if j < len(events):
            o = events[j]
            close(o.outcome, ev_t[j], o.failure_mode if o.outcome == "failure" else None)
            stats.unattached_outcomes += len(events) - j - 1
        else:
            close("censored", _epoch_s(readings[current[-1]].ts), None)

    for life in lives:
        if life.end == "failure":
            stats.failures += 1
        elif life.end == "repair":
            stats.repairs += 1
        else:
            stats.censored += 1
    stats.lives = len(lives)
    return lives, stats


@dataclass
class Labels:
    y: np.ndarray  # (T,) float32 0/1
    y_mask: np.ndarray  # (T,) bool: label known
    ttf: np.ndarray  # (T,) float32 target fraction of the cap (exact or lower bound)
    ttf_kind: np.ndarray  # (T,) int8: TTF_NONE / TTF_EXACT / TTF_LOWER
    ttf_hours: np.ndarray  # (T,) float64 exact (uncapped) hours to failure, NaN if unknown


def life_labels(
    t: np.ndarray,
    end: str,
    end_t: float,
    horizon_hours: float,
    ttf_cap_hours: float,
    known_until: Optional[float] = None,
) -> Labels:
    """Labels for one life's reading times `t` (epoch seconds). `known_until`: labels as they
    were knowable at that time (a training cutoff): later readings get no label and a later
    failure/repair counts as 'no failure yet' (censored at the cutoff)."""
    t = np.asarray(t, dtype=np.float64)
    n = len(t)
    failed = end == "failure" and (known_until is None or end_t < known_until)
    if failed:
        hours = (end_t - t) / 3600.0
        y = (hours <= horizon_hours).astype(np.float32)
        y_mask = np.ones(n, dtype=bool)
        kind = np.full(n, TTF_EXACT, dtype=np.int8)
        ttf_hours = hours.copy()
    else:
        observed = end_t if known_until is None else min(end_t, known_until)
        hours = (observed - t) / 3600.0
        y = np.zeros(n, dtype=np.float32)
        y_mask = hours > horizon_hours
        kind = np.full(n, TTF_LOWER, dtype=np.int8)
        ttf_hours = np.full(n, np.nan)
    ttf = (np.clip(hours, 0.0, ttf_cap_hours) / ttf_cap_hours).astype(np.float32)
    if known_until is not None:
        later = t >= known_until
        y_mask = y_mask & ~later
        kind = np.where(later, TTF_NONE, kind).astype(np.int8)
        ttf_hours = np.where(later, np.nan, ttf_hours)
    return Labels(y, y_mask, ttf, kind, ttf_hours)


def time_cutoff(times: np.ndarray, test_fraction: float) -> float:
    """The first reading time after the (1 - test_fraction) quantile of reading times: readings
    before it are training, readings at or after it test (a fleet's readings share timestamps,
    so a cutoff at a reading time would otherwise split one tick)."""
    t = np.unique(np.asarray(times, dtype=np.float64))
    q = float(np.quantile(np.asarray(times, dtype=np.float64), 1.0 - test_fraction, method="lower"))
    later = t[t > q]
    return float(later[0]) if len(later) else q + 1.0


# --- data preparation --------------------------------------------------------------------------
def select_sensors(readings: Sequence[SensorReading], min_coverage: float) -> tuple[list[str], dict[str, float]]:
    counts: dict[str, int] = defaultdict(int)
    for r in readings:
        for name, value in r.sensors.items():
            if value is not None:
                counts[name] += 1
    n = max(len(readings), 1)
    coverage = {name: c / n for name, c in sorted(counts.items())}
    chosen = [name for name, share in coverage.items() if share >= min_coverage]
    return chosen, coverage


def _raw_matrix(features: MaintenanceFeatures, readings: Sequence[SensorReading], rows: np.ndarray) -> np.ndarray:
    raw = np.full((len(rows), features.n_sensors), np.nan, dtype=np.float32)
    for k, i in enumerate(rows):
        raw[k], _ = features.raw_row(readings[i].sensors)
    return raw


def _raw_matrix_names(sensors: Sequence[str], readings: Sequence[SensorReading], rows: Iterable[int]) -> np.ndarray:
    rows = list(rows)
    raw = np.full((len(rows), len(sensors)), np.nan, dtype=np.float64)
    for k, i in enumerate(rows):
        values = readings[i].sensors
        for s, name in enumerate(sensors):
            v = values.get(name)
            if v is not None:
                raw[k, s] = v
    return raw


@dataclass
class Encoded:
    life: Life
    raw: np.ndarray  # (T, S)
    type_idx: np.ndarray
    mode_idx: np.ndarray
    x: np.ndarray  # (T, F) from zero state at the life's first reading


def encode_lives(features: MaintenanceFeatures, readings: Sequence[SensorReading], lives: Sequence[Life]) -> list[Encoded]:
    raws, types, modes = [], [], []
    for life in lives:
        raws.append(_raw_matrix(features, readings, life.rows))
        t_idx, m_idx = features.category_indices(
            [readings[i].machine_type for i in life.rows], [readings[i].operating_mode for i in life.rows]
        )
        types.append(t_idx)
        modes.append(m_idx)
    encoded = features.encode_sequences(raws, types, modes)
    return [Encoded(life, raw, t, m, x) for life, raw, t, m, (x, _, _) in zip(lives, raws, types, modes, encoded)]


def reencode(features: MaintenanceFeatures, encoded: Sequence[Encoded]) -> list[Encoded]:
    """The same lives encoded by another spec of the same sensors and categories."""
    xs = features.encode_sequences([e.raw for e in encoded], [e.type_idx for e in encoded], [e.mode_idx for e in encoded])
    return [Encoded(e.life, e.raw, e.type_idx, e.mode_idx, x) for e, (x, _, _) in zip(encoded, xs)]


def trend_parameters(config: "TrainConfig", interval_minutes: float) -> tuple[list[float], int]:
    """EWMA smoothing per reading for the configured time constants at this reading interval,
    and the readings that make a life's baseline."""
    step_h = interval_minutes / 60.0
    alphas = [float(-np.expm1(-step_h / h)) for h in config.trend_hours]
    baseline = int(max(1, round(config.baseline_hours / step_h))) if config.baseline_hours and alphas else 0
    return alphas, baseline


def data_fingerprint(readings: Sequence[SensorReading], outcomes: Sequence[MaintenanceOutcome]) -> dict[str, Any]:
    """sha256 over the readings sorted by event_id (id, ts, machine, sensor values), another
    over the outcomes, plus counts and the time range."""

    def reading_line(r: SensorReading) -> str:
        values = json.dumps({k: r.sensors[k] for k in sorted(r.sensors)}, separators=(",", ":"))
        return "\x1f".join([r.event_id, r.ts.isoformat(), r.machine_id, str(r.machine_type), str(r.operating_mode), str(r.cycle), values])

    def outcome_line(o: MaintenanceOutcome) -> str:
        return "\x1f".join([o.event_id, o.ts.isoformat(), o.machine_id, o.outcome, str(o.failure_mode)])

    h = hashlib.sha256()
    for line in sorted(reading_line(r) for r in readings):
        h.update(line.encode() + b"\n")
    ho = hashlib.sha256()
    for line in sorted(outcome_line(o) for o in outcomes):
        ho.update(line.encode() + b"\n")
    ts = [r.ts for r in readings]
    return {
        "sha256": h.hexdigest(),
        "outcomes_sha256": ho.hexdigest(),
        "readings": len(readings),
        "outcomes": len(outcomes),
        "failures": sum(1 for o in outcomes if o.outcome == "failure"),
        "machines": len({r.machine_id for r in readings}),
        "first_ts": min(ts).isoformat() if ts else None,
        "last_ts": max(ts).isoformat() if ts else None,
    }


def median_interval_minutes(lives: Sequence[Life]) -> float:
    gaps = [np.diff(l.t) for l in lives if len(l) > 1]
    gaps_all = np.concatenate(gaps) if gaps else np.array([])
    gaps_all = gaps_all[gaps_all > 0]
    return float(np.median(gaps_all) / 60.0) if len(gaps_all) else 30.0


def rule_limits(
    sensors: Sequence[str],
    healthy_raw: np.ndarray,
    quantiles: tuple[float, float],
    margin: float,
    min_values: int,
) -> dict[str, dict[str, Optional[float]]]:
    """Per sensor {"low", "high"} from healthy training readings: the low/high quantile widened
    by `margin` of their range; null where fewer than `min_values` healthy values exist."""
    limits: dict[str, dict[str, Optional[float]]] = {}
    for s, name in enumerate(sensors):
        col = healthy_raw[:, s]
        col = col[np.isfinite(col)]
        if len(col) < min_values:
            limits[name] = {"low": None, "high": None}
            continue
        q_lo, q_hi = np.quantile(col, quantiles)
        span = max(float(q_hi - q_lo), 1e-9)
        low, high = float(q_lo - margin * span), float(q_hi + margin * span)
        if low < 0.0 <= col.min():
            low = 0.0  # the margin must not invent negative values for a non-negative sensor
        limits[name] = {"low": _round_sig(low), "high": _round_sig(high)}
    return limits


def manifest_rule_limits(
    learned: dict[str, dict[str, Optional[float]]],
    overrides: Optional[dict[str, dict[str, Optional[float]]]] = None,
) -> tuple[dict[str, dict[str, Optional[float]]], list[str]]:
    """What goes into the manifest's `rule_limits`, per sensor and side:
    the user's override if given (a number, or null for "keep the default"); else null where the
    scorer has a physical default for that sensor and side (a number in the manifest would
    replace it, and a statistical limit from healthy data is no safety limit); else the learned
    limit. A learned side that would contradict a default on the other side (low >= high, e.g.
    other units) is dropped. Returns the limits and notes on what was dropped."""
    from stream_app.scoring.rules import DEFAULT_LIMITS, RuleSet

    overrides = overrides or {}
    out: dict[str, dict[str, Optional[float]]] = {}
    notes: list[str] = []
    for sensor in sorted(set(learned) | set(overrides)):
        sides: dict[str, Optional[float]] = {}
        for side in ("low", "high"):
            user = overrides.get(sensor, {})
            if side in user:
                sides[side] = user[side]
            elif DEFAULT_LIMITS.get(sensor, {}).get(side) is not None:
                sides[side] = None
            else:
                sides[side] = learned.get(sensor, {}).get(side)
        merged = {**DEFAULT_LIMITS.get(sensor, {"low": None, "high": None})}
        merged.update({k: v for k, v in sides.items() if v is not None})
        if merged.get("low") is not None and merged.get("high") is not None and merged["low"] >= merged["high"]:
            for side in ("low", "high"):
                if side not in overrides.get(sensor, {}) and sides[side] is not None:
                    notes.append(f"{sensor}: learned {side} limit {sides[side]:g} contradicts the physical default; dropped")
                    sides[side] = None
        out[sensor] = sides
    RuleSet.with_overrides(out)  # raises if the scorer could not use them
    return out, notes


def _round_sig(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}")


def rule_rates(
    sensors: Sequence[str],
    encoded: Sequence["Encoded"],
    healthy: Sequence[np.ndarray],
    max_gap_hours: float,
    quantile: float,
    margin: float,
    min_values: int,
) -> dict[str, Optional[float]]:
    """Per sensor, the largest change per hour a healthy machine shows between consecutive
    readings (both healthy, both observed, at most max_gap_hours apart): the `quantile` of those
    rates widened by `margin`; null with fewer than `min_values` of them or none nonzero."""
    per_sensor: list[list[np.ndarray]] = [[] for _ in sensors]
    for enc, ok in zip(encoded, healthy):
        if len(enc.life.t) < 2:
            continue
        hours = np.diff(enc.life.t) / 3600.0
        pair = ok[1:] & ok[:-1] & (hours > 0) & (hours <= max_gap_hours)
        change = np.abs(np.diff(enc.raw.astype(np.float64), axis=0))
        for j in range(len(sensors)):
            keep = pair & np.isfinite(change[:, j])
            per_sensor[j].append(change[keep, j] / hours[keep])
    out: dict[str, Optional[float]] = {}
    for j, name in enumerate(sensors):
        rates = np.concatenate(per_sensor[j]) if per_sensor[j] else np.zeros(0)
        limit = float(np.quantile(rates, quantile)) * (1.0 + margin) if len(rates) >= min_values else 0.0
        out[name] = _round_sig(limit) if limit > 0 else None
    return out


# --- model training ------------------------------------------------------------------------------
@dataclass
class _Seq:
    x: np.ndarray  # (T, F)
    y: np.ndarray
    y_mask: np.ndarray
    ttf: np.ndarray
    ttf_kind: np.ndarray
    weight: np.ndarray  # (K,) bootstrap weight per head
    t: np.ndarray  # (T,) reading times (for checks; not a model input)
    life: int  # index of the life it comes from


def _labels_slice(lab: Labels, start: int, stop: int) -> Labels:
    return Labels(lab.y[start:stop], lab.y_mask[start:stop], lab.ttf[start:stop], lab.ttf_kind[start:stop], lab.ttf_hours[start:stop])


def _to_seq(x: np.ndarray, lab: Labels, weight: np.ndarray, t: np.ndarray, life: int) -> _Seq:
    return _Seq(x, lab.y, lab.y_mask, lab.ttf, lab.ttf_kind, weight, t, life)


def build_sequences(
    encoded: Sequence[Encoded],
    features: MaintenanceFeatures,
    fit_cut: float,
    cutoff: float,
    val_cutoff: Optional[float],
    config: TrainConfig,
    rng: np.random.Generator,
) -> tuple[list[_Seq], list[_Seq]]:
    """Training sequences (readings before `fit_cut`, labels as known at `fit_cut`; whole lives
    plus mid-life starts) and validation sequences (readings before `cutoff`, labels as known at
    `cutoff`, scored only on readings in [val_cutoff, cutoff))."""
    H, cap = config.horizon_hours, config.ttf_cap_hours
    boot = rng.poisson(1.0, size=(len(encoded), config.heads)).astype(np.float32)
    train: list[_Seq] = []
    val: list[_Seq] = []
    offsets: list[tuple[int, int, int, Labels]] = []  # (life, start, stop, labels): encoded together below
    for k, enc in enumerate(encoded):
        life = enc.life
        lab = life_labels(life.t, life.end, life.end_t, H, cap, known_until=fit_cut)
        n_fit = int((life.t < fit_cut).sum())
        if n_fit >= 2 and (lab.y_mask[:n_fit].any() or (lab.ttf_kind[:n_fit] > 0).any()):
            train.append(_to_seq(enc.x[:n_fit], _labels_slice(lab, 0, n_fit), boot[k], life.t[:n_fit], k))
            for _ in range(config.offset_copies):
                if n_fit < 2 * config.min_offset_steps:
                    break
                start = int(rng.integers(1, n_fit - config.min_offset_steps))
                sl = _labels_slice(lab, start, n_fit)
                if sl.y_mask.any() or (sl.ttf_kind > 0).any():
                    offsets.append((k, start, n_fit, sl))
        if val_cutoff is None:
            continue
        vl = life_labels(life.t, life.end, life.end_t, H, cap, known_until=cutoff)
        n_cut = int((life.t < cutoff).sum())
        in_val = ((life.t >= val_cutoff) & (life.t < cutoff))[:n_cut]
        if in_val.any():
            masked = Labels(
                vl.y[:n_cut],
                vl.y_mask[:n_cut] & in_val,
                vl.ttf[:n_cut],
                np.where(in_val, vl.ttf_kind[:n_cut], TTF_NONE).astype(np.int8),
                vl.ttf_hours[:n_cut],
            )
            if masked.y_mask.any() or (masked.ttf_kind > 0).any():
                val.append(_to_seq(enc.x[:n_cut], masked, np.ones(config.heads, np.float32), life.t[:n_cut], k))
    # Mid-life starts from a zero state, re-encoded from there (memory and all), as a worker would.
    xs = features.encode_sequences([encoded[k].raw[a:b] for k, a, b, _ in offsets],
                                   [encoded[k].type_idx[a:b] for k, a, b, _ in offsets],
                                   [encoded[k].mode_idx[a:b] for k, a, b, _ in offsets])
    for (k, a, b, sl), (x_off, _, _) in zip(offsets, xs):
        train.append(_to_seq(x_off, sl, boot[k], encoded[k].life.t[a:b], k))
    return train, val


def _pad(seqs: Sequence[_Seq]) -> dict[str, torch.Tensor]:
    b = len(seqs)
    t_max = max(len(s.x) for s in seqs)
    f = seqs[0].x.shape[1]
    x = np.zeros((b, t_max, f), dtype=np.float32)
    y = np.zeros((b, t_max), dtype=np.float32)
    ym = np.zeros((b, t_max), dtype=bool)
    ttf = np.zeros((b, t_max), dtype=np.float32)
    kind = np.zeros((b, t_max), dtype=np.int64)
    for i, s in enumerate(seqs):
        n = len(s.x)
        x[i, :n], y[i, :n], ym[i, :n], ttf[i, :n], kind[i, :n] = s.x, s.y, s.y_mask, s.ttf, s.ttf_kind
    w = np.stack([s.weight for s in seqs]).astype(np.float32)
    return {
        "x": torch.from_numpy(x),
        "y": torch.from_numpy(y),
        "y_mask": torch.from_numpy(ym),
        "ttf": torch.from_numpy(ttf),
        "ttf_kind": torch.from_numpy(kind),
        "w": torch.from_numpy(w),
    }


def _loss_terms(
    logits: torch.Tensor,
    ttf_pred: torch.Tensor,
    batch: dict[str, torch.Tensor],
    sl: slice,
    pos_weight: torch.Tensor,
    weighted: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Sums (not means) of the classification and TTF losses over a time slice, averaged over
    heads; and the counts of labelled steps."""
    k = logits.shape[-1]
    y = batch["y"][:, sl].unsqueeze(-1).expand_as(logits)
    ym = batch["y_mask"][:, sl].unsqueeze(-1).float()
    w = batch["w"].unsqueeze(1) if weighted else torch.ones_like(batch["w"]).unsqueeze(1)  # (B,1,K)
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
    cls = (bce * ym * w).sum() / k
    kind = batch["ttf_kind"][:, sl].unsqueeze(-1)
    diff = ttf_pred - batch["ttf"][:, sl].unsqueeze(-1)
    sq = torch.where(kind == TTF_EXACT, diff * diff, torch.where(kind == TTF_LOWER, torch.relu(-diff) ** 2, torch.zeros_like(diff)))
    reg = (sq * w).sum() / k
    return cls, reg, int(batch["y_mask"][:, sl].sum()), int((batch["ttf_kind"][:, sl] > 0).sum())


def _chunk_loss(
    model: MaintenanceLSTM, batch: dict[str, torch.Tensor], sl: slice, state: Optional[tuple[torch.Tensor, torch.Tensor]],
    pos_weight: torch.Tensor, ttf_weight: float, weighted: bool = True,
) -> tuple[Optional[torch.Tensor], int, tuple[torch.Tensor, torch.Tensor]]:
    """The training loss (a mean over the labelled readings) of one time slice, its count of
    labelled readings, and the state after it; None when nothing in the slice is labelled."""
    logits, ttf, state = model(batch["x"][:, sl], state)
    cls, reg, n_cls, n_reg = _loss_terms(logits, ttf, batch, sl, pos_weight, weighted)
    if n_cls + n_reg == 0:
        return None, 0, state
    return cls / max(n_cls, 1) + ttf_weight * reg / max(n_reg, 1), n_cls + n_reg, state


def _batches(seqs: Sequence[_Seq], batch_size: int, rng: np.random.Generator) -> list[list[_Seq]]:
    """Shuffle, then sort by length inside pools of a few batches (little padding, random mix)."""
    order = rng.permutation(len(seqs))
    pool = batch_size * 4
    out = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: len(seqs[i].x))
        for b in range(0, len(chunk), batch_size):
            out.append([seqs[i] for i in chunk[b : b + batch_size]])
    rng.shuffle(out)  # type: ignore[arg-type]
    return out


@torch.no_grad()
def predict_sequences(model: MaintenanceLSTM, xs: Sequence[np.ndarray], batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each sequence from a zero state -> (failure probability per head (T, K), TTF fraction per
    head (T, K))."""
    model.eval()
    out: list[Optional[tuple[np.ndarray, np.ndarray]]] = [None] * len(xs)
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    for b in range(0, len(order), batch_size):
        ids = order[b : b + batch_size]
        t_max = max(len(xs[i]) for i in ids)
        x = np.zeros((len(ids), t_max, xs[ids[0]].shape[1]), dtype=np.float32)
        for r, i in enumerate(ids):
            x[r, : len(xs[i])] = xs[i]
        logits, ttf, _ = model(torch.from_numpy(x))
        prob = torch.sigmoid(logits).numpy()
        ttf_np = ttf.numpy()
        for r, i in enumerate(ids):
            n = len(xs[i])
            out[i] = (prob[r, :n], ttf_np[r, :n])
    return out  # type: ignore[return-value]


def _validation_loss(model: MaintenanceLSTM, val: Sequence[_Seq], pos_weight: torch.Tensor, ttf_weight: float) -> float:
    model.eval()
    cls_sum = reg_sum = 0.0
    n_cls = n_reg = 0
    with torch.no_grad():
        for b in range(0, len(val), 64):
            batch = _pad(val[b : b + 64])
            logits, ttf, _ = model(batch["x"])
            c, r, nc, nr = _loss_terms(logits, ttf, batch, slice(None), pos_weight, weighted=False)
            cls_sum += float(c)
            reg_sum += float(r)
            n_cls += nc
            n_reg += nr
    return cls_sum / max(n_cls, 1) + ttf_weight * reg_sum / max(n_reg, 1)


@dataclass
class FitResult:
    model: MaintenanceLSTM
    epochs_run: int
    best_epoch: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    sequences: int = 0
    steps: int = 0


def fit_lstm(
    n_inputs: int,
    train: Sequence[_Seq],
    val: Sequence[_Seq],
    config: TrainConfig,
    pos_weight: float,
    progress: bool = False,
) -> FitResult:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    model = MaintenanceLSTM(n_inputs, hidden=config.hidden, layers=config.layers, heads=config.heads, dropout=config.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # cosine decay over the epoch budget: late epochs take small steps, so the validation
    # loss settles instead of jumping with the last batches
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs, eta_min=config.lr * config.min_lr_ratio)
    # an exponential moving average of the weights is what gets validated and saved: with ~100
    # lives the per-step weights jump about (the validation loss of the raw weights is noisy)
    ema = (
        torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay))
        if config.ema_decay > 0
        else None
    )
    pw = torch.tensor(float(pos_weight))
    started = time.perf_counter()
    result = FitResult(model=model, epochs_run=0, best_epoch=0, sequences=len(train))
    best_val = math.inf
    best_state: Optional[dict[str, torch.Tensor]] = None
    stale = 0

    bar = show.bar("training maintenance LSTM", total=config.epochs, unit="epoch") if progress else None
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            total, count = 0.0, 0
            for group in _batches(train, config.batch_size, rng):
                batch = _pad(group)
                t_max = batch["x"].shape[1]
                state = None
                for s in range(0, t_max, config.chunk_len):
                    sl = slice(s, min(s + config.chunk_len, t_max))
                    loss, n, state = _chunk_loss(model, batch, sl, state, pw, config.ttf_weight)
                    state = (state[0].detach(), state[1].detach())
                    if loss is None:
                        continue
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    opt.step()
                    if ema is not None:
                        ema.update_parameters(model)
                    result.steps += 1
                    total += float(loss.detach()) * n
                    count += n
            sched.step()
            result.train_loss.append(total / max(count, 1))
            result.epochs_run = epoch
            current = ema.module if ema is not None else model
            if val:
                v = _validation_loss(current, val, pw, config.ttf_weight)
                result.val_loss.append(v)
                if v < best_val - 1e-4:
                    best_val, stale, result.best_epoch = v, 0, epoch
                    best_state = copy.deepcopy(current.state_dict())
                else:
                    stale += 1
            else:
                result.best_epoch = epoch
                best_state = current.state_dict()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{result.train_loss[-1]:.4f}", val=f"{result.val_loss[-1]:.4f}" if val else "-")
            if val and stale >= config.patience:
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


# --- calibration ---------------------------------------------------------------------------------
def fit_platt(
    raw_probability: np.ndarray, y: np.ndarray, min_class: int = 5, max_iter: int = 300
) -> tuple[Calibration, dict[str, Any]]:
    """Platt scaling on (raw ensemble probability, label) pairs: a, b maximising the likelihood of
    sigmoid(a * logit(p) + b), by L-BFGS (float64). Targets are Platt's smoothed ones,
    (N+ + 1) / (N+ + 2) for positives and 1 / (N- + 2) for negatives, so a slice the model
    separates perfectly still gives finite parameters. The identity, with the reason, when there
    are fewer than `min_class` positives or negatives or the fit is not increasing (a <= 0)."""
    p = np.asarray(raw_probability, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel() > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    info: dict[str, Any] = {"readings": int(len(y)), "positives": n_pos}
    if n_pos < min_class or n_neg < min_class:
        return Calibration(), {**info, "note": f"identity: fewer than {min_class} positives or negatives to fit on"}
    z = torch.from_numpy(logit(p))
    target = torch.from_numpy(np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0)))
    a = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(a * z + b, target)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    a_v, b_v = float(a.detach()), float(b.detach())
    if not (math.isfinite(a_v) and math.isfinite(b_v)) or a_v <= 0:
        return Calibration(), {**info, "note": f"identity: the fit gave a={a_v:.3g}, b={b_v:.3g} (not increasing)"}
    return Calibration(a_v, b_v, "platt"), info


def _concat(parts: Iterable[np.ndarray]) -> np.ndarray:
    parts = list(parts)
    return np.concatenate(parts) if parts else np.zeros(0)


# --- evaluation ----------------------------------------------------------------------------------
@dataclass
class Scored:
    """Per-life predictions aligned with the life's readings."""

    prob: list[np.ndarray]  # (T,)
    ttf_hours: list[np.ndarray]  # (T,)


def evaluate(
    scored: Scored,
    encoded: Sequence[Encoded],
    labels: Sequence[Labels],
    cutoff: float,
    config: TrainConfig,
    interval_minutes: float,
    threshold: Optional[float] = None,
) -> dict[str, Any]:
    """Metrics on readings at/after the cutoff: per reading, and per failure / machine-day, at
    `threshold` (default: config.alert_probability)."""
    thr = config.alert_probability if threshold is None else threshold
    ys, ps, truth_h, pred_h = [], [], [], []
    for enc, lab, p, q in zip(encoded, labels, scored.prob, scored.ttf_hours):
        test = enc.life.t >= cutoff
        m = test & lab.y_mask
        ys.append(lab.y[m])
        ps.append(p[m])
        exact = test & (lab.ttf_kind == TTF_EXACT) & (lab.ttf_hours < config.ttf_cap_hours)
        truth_h.append(lab.ttf_hours[exact])
        pred_h.append(q[exact])
    y = np.concatenate(ys) if ys else np.array([])
    p = np.concatenate(ps) if ps else np.array([])
    metrics: dict[str, Any] = binary_metrics(y, p, thr)
    th = np.concatenate(truth_h) if truth_h else np.array([])
    metrics["ttf_rmse_hours"] = rmse(th, np.concatenate(pred_h)) if len(th) else None
    metrics["ttf_n"] = int(len(th))

    # per failure: an alert (probability >= threshold) on a test reading within the horizon
    failures = caught = 0
    leads: list[float] = []
    for enc, p in zip(encoded, scored.prob):
        life = enc.life
        if life.end != "failure" or life.end_t < cutoff:
            continue
        window = (life.t >= cutoff) & (life.t >= life.end_t - config.horizon_hours * 3600) & (life.t <= life.end_t)
        if not window.any():
            continue
        failures += 1
        hits = np.flatnonzero(window & (p >= thr))
        if len(hits):
            caught += 1
            leads.append((life.end_t - life.t[hits[0]]) / 3600.0)
    metrics["failures"] = failures
    metrics["failures_caught"] = caught
    metrics["failure_recall"] = caught / failures if failures else None
    metrics["median_lead_hours"] = float(np.median(leads)) if leads else None

    # alerts as a planner sees them: per machine, at most one per cooldown of event time
    by_machine: dict[str, list[tuple[float, float, bool, bool]]] = defaultdict(list)
    test_readings = 0
    for enc, lab, p in zip(encoded, labels, scored.prob):
        test = enc.life.t >= cutoff
        test_readings += int(test.sum())
        for k in np.flatnonzero(test):
            by_machine[enc.life.machine_id].append((enc.life.t[k], p[k], bool(lab.y_mask[k]), bool(lab.y[k] > 0.5)))
    fired = false = unverifiable = 0
    cooldown = config.alert_cooldown_hours * 3600
    for rows in by_machine.values():
        rows.sort(key=lambda r: r[0])
        last = -math.inf
        for t, prob, known, positive in rows:
            if prob >= thr and t - last >= cooldown:
                last = t
                fired += 1
                if not known:
                    unverifiable += 1
                elif not positive:
                    false += 1
    machine_days = test_readings * interval_minutes / 1440.0
    metrics["alerts"] = fired
    metrics["false_alerts"] = false
    metrics["unverifiable_alerts"] = unverifiable
    metrics["machine_days"] = machine_days
    metrics["false_alerts_per_machine_day"] = false / machine_days if machine_days else None
    return metrics


def _mid_life_start(
    model: MaintenanceLSTM,
    features: MaintenanceFeatures,
    encoded: Sequence[Encoded],
    labels: Sequence[Labels],
    full: Scored,
    cutoff: float,
    config: TrainConfig,
    calibration: Calibration = Calibration(),
    threshold: Optional[float] = None,
) -> dict[str, Any]:
    """A worker that starts at the cutoff: every life running at the cutoff restarted there from
    a zero state (re-encoded, as the worker would), scored after `warmup_steps` readings, next to
    the state-carried scores of the same readings."""
    where = []
    for k, e in enumerate(encoded):
        test = np.flatnonzero(e.life.t >= cutoff)
        if len(test) and test[0] > 0:
            where.append((k, int(test[0])))
    xs = [x for x, _, _ in features.encode_sequences([encoded[k].raw[s:] for k, s in where],
                                                      [encoded[k].type_idx[s:] for k, s in where],
                                                      [encoded[k].mode_idx[s:] for k, s in where])]
    if not xs:
        return {"lives": 0}
    ys, cold, warm = [], [], []
    for (k, s), (p, _) in zip(where, predict_sequences(model, xs)):
        lab = labels[k]
        m = lab.y_mask[s:].copy()
        m[: config.warmup_steps] = False
        ys.append(lab.y[s:][m])
        cold.append(calibration.ensemble(p)[m])
        warm.append(full.prob[k][s:][m])
    y, pc, pw = np.concatenate(ys), np.concatenate(cold), np.concatenate(warm)
    thr = config.alert_probability if threshold is None else threshold
    cold_m, warm_m = binary_metrics(y, pc, thr), binary_metrics(y, pw, thr)
    keys = ("roc_auc", "average_precision", "precision", "recall", "false_positive_rate")
    return {
        "lives": len(xs),
        "n": cold_m["n"],
        "positives": cold_m["positives"],
        "zero_state": {k: cold_m[k] for k in keys},
        "carried_state": {k: warm_m[k] for k in keys},
    }


# --- operating points and baselines ------------------------------------------------------------------
def _validation_lives(
    encoded: Sequence[Encoded], lab_cut: Sequence[Labels], in_val: Sequence[np.ndarray], cutoff: float
) -> list[ValidationLife]:
    """The lives that reach into the validation slice, as the threshold sweep needs them."""
    out = []
    for e, lab, m in zip(encoded, lab_cut, in_val):
        failed = e.life.end == "failure" and e.life.end_t < cutoff
        out.append(ValidationLife(e.life.t, m, lab.y, lab.y_mask, e.life.end_t if failed else None))
    return out


def _operating_point(
    lives: Sequence[ValidationLife], probability: Sequence[np.ndarray], config: TrainConfig, interval: float
) -> OperatingPoint:
    keep = [k for k, l in enumerate(lives) if l.in_val.any()]
    curve = sweep([lives[k] for k in keep], [probability[k] for k in keep], config.horizon_hours, interval,
                  config.alert_cooldown_hours * 3600.0)
    return operating_point(curve, config.false_alert_budget, config.min_precision, config.alert_probability)


@dataclass
class _FittedBaseline:
    stored: StoredBaseline
    scored: Scored  # calibrated
    raw: Scored
    cal_fit: dict[str, Any]


def _fit_baselines(
    encoded: Sequence[Encoded],
    features: MaintenanceFeatures,
    lab_fit: Sequence[Labels],
    lab_cut: Sequence[Labels],
    in_val: Sequence[np.ndarray],
    fit_cut: float,
    val_y: np.ndarray,
    val_lives: Sequence[ValidationLife],
    pos_weight: float,
    config: TrainConfig,
    interval: float,
    model_cal_fit: dict[str, Any],
) -> list[_FittedBaseline]:
    """The linear baseline, and the trees where lightgbm is installed: fitted on the readings
    before `fit_cut` with the labels known then (the model's own training data), Platt-calibrated
    and given an operating point on the validation slice (the model's own)."""
    cap = config.ttf_cap_hours
    kinds: list[tuple[str, tuple[int, ...]]] = [("linear", (bl.WINDOW,))]
    if config.tree_baseline and bl.lightgbm_available():
        kinds.append(("trees", (bl.WINDOW, bl.long_window(config.horizon_hours, interval))))
    pre = [e.life.t < fit_cut for e in encoded]
    y = _concat(l.y[m] for l, m in zip(lab_fit, pre))
    y_mask = _concat(l.y_mask[m] for l, m in zip(lab_fit, pre)).astype(bool)
    ttf = _concat(l.ttf[m] for l, m in zip(lab_fit, pre)) * cap
    kind = _concat(l.ttf_kind[m] for l, m in zip(lab_fit, pre))
    known = (kind == TTF_EXACT) | ((kind == TTF_LOWER) & (ttf >= cap - 1e-6))
    out = []
    for name, windows in kinds:
        feats = [baseline_store.baseline_inputs(name, windows, e.x, features) for e in encoded]
        rows = np.concatenate([f[m] for f, m in zip(feats, pre)])
        if name == "linear":
            model: Any = bl.fit_baseline(rows, y, y_mask, ttf, known, cap, pos_weight=pos_weight)
        else:
            model = bl.fit_trees(rows, y, y_mask, ttf, known, cap, pos_weight=pos_weight)
        raw = Scored(prob=[], ttf_hours=[])
        for f in feats:
            p, q = model.predict(f)
            raw.prob.append(np.asarray(p, dtype=np.float64))
            raw.ttf_hours.append(np.asarray(q, dtype=np.float64))
        if val_lives and any(m.any() for m in in_val):
            cal, cal_fit = fit_platt(_concat(p[m & l.y_mask] for p, l, m in zip(raw.prob, lab_cut, in_val)), val_y,
                                     config.calibration_min_class)
        else:
            cal, cal_fit = Calibration(), dict(model_cal_fit)
        scored = Scored(prob=[cal.probability(p) for p in raw.prob], ttf_hours=raw.ttf_hours)
        point = _operating_point(val_lives, scored.prob, config, interval)
        out.append(_FittedBaseline(StoredBaseline(name, model, cal, point, windows), scored, raw, cal_fit))
    return out


# --- the entry point -----------------------------------------------------------------------------
def simulated_history(
    n_machines: int = 200, seed: int = 0, lives_per_machine: int = 2, **fleet: Any
) -> tuple[list[SensorReading], list[MaintenanceOutcome]]:
    """A fleet's history from the simulator, validated into the contract's models."""
    from stream_app.simulation.maintenance import FleetConfig, FleetSimulator

    history = FleetSimulator(FleetConfig(n_machines=n_machines, seed=seed, **fleet)).history(lives_per_machine=lives_per_machine)
    readings = [SensorReading.model_validate(r) for r in history.readings]
    outcomes = [MaintenanceOutcome.model_validate(o) for o in history.outcomes]
    return readings, outcomes


@dataclass
class _Prepared:
    lives: list[Life]
    stats: LifeStats
    features: MaintenanceFeatures
    coverage: dict[str, float]
    encoded: list[Encoded]
    cutoff: float
    val_cutoff: Optional[float]
    interval_minutes: float


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def train_maintenance(
    registry: ModelRegistry,
    readings: Sequence[SensorReading],
    outcomes: Sequence[MaintenanceOutcome],
    config: TrainConfig = TrainConfig(),
    progress: bool = False,
    *,
    promote: Union[bool, str, Release] = True,
    source: Optional[dict[str, Any]] = None,
) -> ModelVersion:
    """Train, evaluate against the baselines and the current version, and save a new
    `maintenance` version, released as `promote` says (stream_app.training.release; default:
    through the promotion gate, False: registered only). `source`: optional notes on where the
    data came from (file load summaries), copied into the report."""
    wall_start = time.perf_counter()
    if not readings:
        raise ValueError("no readings to train on")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(registry, list(readings), list(outcomes), config, progress, Release.of(promote), source, wall_start)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    registry: ModelRegistry,
    readings: list[SensorReading],
    outcomes: list[MaintenanceOutcome],
    config: TrainConfig,
    progress: bool,
    release: Release,
    source: Optional[dict[str, Any]],
    wall_start: float,
) -> ModelVersion:
    H, cap = config.horizon_hours, config.ttf_cap_hours
    rng = np.random.default_rng(config.seed)
    lives, stats = split_lives(readings, outcomes)
    all_t = np.concatenate([l.t for l in lives])
    cutoff = time_cutoff(all_t, config.test_fraction)
    train_rows = [i for l in lives for i, t in zip(l.rows, l.t) if t < cutoff]
    if not train_rows:
        raise ValueError("no readings before the test cutoff")
    train_readings = [readings[i] for i in train_rows]

    # features from the training period only
    sensors, coverage = select_sensors(train_readings, config.min_sensor_coverage)
    if not sensors:
        raise ValueError(f"no sensor reports in >= {config.min_sensor_coverage:.0%} of training readings")
    raw_train = _raw_matrix_names(sensors, readings, train_rows)
    interval = median_interval_minutes(lives)
    alphas, baseline_steps = trend_parameters(config, interval)
    features = MaintenanceFeatures.fit(
        raw_train,
        sensors,
        machine_types=sorted({r.machine_type for r in train_readings if r.machine_type}),
        operating_modes=sorted({r.operating_mode for r in train_readings if r.operating_mode}),
        modes=[r.operating_mode for r in train_readings] if config.per_mode_scaling else None,
        trend_alphas=alphas,
        baseline_steps=baseline_steps,
    )
    encoded = encode_lives(features, readings, lives)
    if features.n_derived_columns:  # trend columns scaled to unit spread on the training period
        features = features.with_trend_scale(np.concatenate(
            [e.x[e.life.t < cutoff, features.derived_offset :] for e in encoded]))
        encoded = reencode(features, encoded)

    if not (all_t >= cutoff).any():
        raise ValueError("no readings after the test cutoff to evaluate on (all readings share a few timestamps?)")
    train_t = all_t[all_t < cutoff]
    val_cutoff = time_cutoff(train_t, config.val_fraction) if config.val_fraction > 0 else None
    fit_cut = val_cutoff if val_cutoff is not None else cutoff

    # labels as known at the fit cutoff (training), at the test cutoff (baseline, rules) and in
    # full (evaluation)
    lab_fit = [life_labels(e.life.t, e.life.end, e.life.end_t, H, cap, known_until=fit_cut) for e in encoded]
    lab_cut = [life_labels(e.life.t, e.life.end, e.life.end_t, H, cap, known_until=cutoff) for e in encoded]
    lab_full = [life_labels(e.life.t, e.life.end, e.life.end_t, H, cap) for e in encoded]

    y_fit = np.concatenate([l.y[l.y_mask] for l in lab_fit])
    n_pos = int(y_fit.sum())
    if n_pos == 0:
        raise ValueError(
            "no failure within the horizon before the training cutoff: the model cannot learn failures "
            "(give the outcomes file, more history, or a smaller test/validation fraction)"
        )
    pos_weight = config.pos_weight if config.pos_weight is not None else math.sqrt((len(y_fit) - n_pos) / n_pos)
    train_seqs, val_seqs = build_sequences(encoded, features, fit_cut, cutoff, val_cutoff, config, rng)
    if not train_seqs:
        raise ValueError("no labelled training sequences")

    fit = fit_lstm(features.n_inputs, train_seqs, val_seqs, config, pos_weight, progress=progress)
    model = fit.model

    # evaluation: every life from its first reading; model = mean over heads, calibrated on the
    # validation slice (labels as known at the test cutoff)
    preds = predict_sequences(model, [e.x for e in encoded])
    raw_prob = [p.mean(axis=1).astype(np.float64) for p, _ in preds]
    ttf_hours = [q.mean(axis=1) * cap for _, q in preds]
    in_val = [
        (e.life.t >= val_cutoff) & (e.life.t < cutoff) if val_cutoff is not None else np.zeros(len(e.life), bool)
        for e in encoded
    ]
    val_y = _concat(l.y[m & l.y_mask] for l, m in zip(lab_cut, in_val))
    if val_cutoff is not None:
        calibration, cal_fit = fit_platt(
            _concat(p[m & l.y_mask] for p, l, m in zip(raw_prob, lab_cut, in_val)), val_y, config.calibration_min_class
        )
    else:
        calibration, cal_fit = Calibration(), {"readings": 0, "positives": 0, "note": "identity: no validation slice (val_fraction 0)"}
    model_scored = Scored(prob=[calibration.probability(p) for p in raw_prob], ttf_hours=ttf_hours)
    raw_scored = Scored(prob=raw_prob, ttf_hours=ttf_hours)
    cal_heads = [calibration.heads(p) for p, _ in preds]
    val_spread = _concat(h.std(axis=1)[m] for h, m in zip(cal_heads, in_val))
    spread_reference = spread_reference_from(val_spread, config.spread_quantile)
    head_spread = _concat(h.std(axis=1)[e.life.t >= cutoff] for h, e in zip(cal_heads, encoded))
    # the operating point: the alert threshold for the user's false-alert budget, on validation
    val_lives = _validation_lives(encoded, lab_cut, in_val, cutoff)
    model_point = _operating_point(val_lives, model_scored.prob, config, interval)
    threshold = model_point.threshold
    model_metrics = evaluate(model_scored, encoded, lab_full, cutoff, config, interval, threshold)
    raw_metrics = evaluate(raw_scored, encoded, lab_full, cutoff, config, interval)
    model_metrics["alert_threshold"] = threshold
    model_metrics["mean_head_spread"] = float(head_spread.mean()) if len(head_spread) else None
    model_metrics["max_head_spread"] = float(head_spread.max()) if len(head_spread) else None
    model_metrics["mid_life_start"] = _mid_life_start(
        model, features, encoded, lab_full, model_scored, cutoff, config, calibration, threshold
    )

    # baselines: same encoder, same fitting period and labels as the model; calibrated and given
    # an operating point on the validation slice as the model is
    baselines = _fit_baselines(encoded, features, lab_fit, lab_cut, in_val, fit_cut, val_y, val_lives, pos_weight,
                               config, interval, cal_fit)
    linear = baselines[0]
    base_scored = linear.scored
    baseline_metrics = evaluate(base_scored, encoded, lab_full, cutoff, config, interval, linear.stored.threshold)
    baseline_metrics["alert_threshold"] = linear.stored.threshold
    baseline_raw_metrics = evaluate(linear.raw, encoded, lab_full, cutoff, config, interval)
    extra_metrics: dict[str, Any] = {}
    for b in baselines[1:]:
        extra_metrics[b.stored.name] = evaluate(b.scored, encoded, lab_full, cutoff, config, interval, b.stored.threshold)
        extra_metrics[b.stored.name]["alert_threshold"] = b.stored.threshold
        extra_metrics[f"{b.stored.name}_uncalibrated"] = evaluate(b.raw, encoded, lab_full, cutoff, config, interval)
    fit_rows = [l.y_mask & (e.life.t < fit_cut) for l, e in zip(lab_fit, encoded)]
    prevalence = float(_concat(l.y[m] for l, m in zip(lab_fit, fit_rows)).mean()) if any(m.any() for m in fit_rows) else 0.0
    calibration_data = _calibration_data(
        calibration, cal_fit, linear.stored.calibration, linear.cal_fit, raw_prob, linear.raw.prob, encoded, lab_cut,
        lab_full, in_val, cutoff
    )
    calibration_data["spread_vs_accuracy"] = _spread_accuracy(
        model_scored.prob, cal_heads, encoded, lab_full, cutoff, spread_reference, threshold
    )

    # rule limits and rate-of-change limits from healthy training readings (far from a known
    # failure or the censoring end)
    healthy_rows, healthy_masks = [], []
    for enc, lab in zip(encoded, lab_cut):
        known_far = (lab.ttf * cap >= min(2 * H, cap) - 1e-6) & (lab.ttf_kind != TTF_NONE) & (enc.life.t < cutoff)
        healthy_rows.extend(enc.life.rows[known_far].tolist())
        healthy_masks.append(known_far)
    learned_limits = rule_limits(
        sensors, _raw_matrix_names(sensors, readings, healthy_rows), config.rule_quantiles, config.rule_margin, config.rule_min_values
    )
    limits, limit_notes = manifest_rule_limits(learned_limits, config.rule_overrides)
    rate_gap_hours = 2.0 * interval / 60.0
    rates = rule_rates(sensors, encoded, healthy_masks, rate_gap_hours, config.rule_rate_quantile,
                       config.rule_rate_margin, config.rule_min_values)

    # counts for the report
    fingerprint = data_fingerprint(readings, outcomes)
    n_test = int(sum((e.life.t >= cutoff).sum() for e in encoded))
    split = {
        "cutoff": _iso(cutoff),
        "validation_cutoff": _iso(val_cutoff) if val_cutoff is not None else None,
        "first_ts": _iso(float(all_t.min())),
        "last_ts": _iso(float(all_t.max())),
        "train_readings": len(train_rows),
        "fit_readings": int((all_t < fit_cut).sum()),
        "validation_readings": int(((all_t >= fit_cut) & (all_t < cutoff)).sum()) if val_cutoff is not None else 0,
        "test_readings": n_test,
        "train_labelled": int(len(y_fit)),
        "train_positives": n_pos,
        "test_labelled": model_metrics["n"],
        "test_positives": model_metrics["positives"],
        "test_failures": model_metrics["failures"],
        "training_sequences": len(train_seqs),
        "test_fraction": config.test_fraction,
        "val_fraction": config.val_fraction,
    }
    training = {
        "epochs_run": fit.epochs_run,
        "best_epoch": fit.best_epoch,
        "optimizer_steps": fit.steps,
        "fit_seconds": round(fit.seconds, 2),
        "pos_weight": pos_weight,
        "train_loss": [round(v, 5) for v in fit.train_loss],
        "val_loss": [round(v, 5) for v in fit.val_loss],
    }
    metrics = {
        "model": model_metrics,
        "baseline": baseline_metrics,
        "model_uncalibrated": raw_metrics,
        "baseline_uncalibrated": baseline_raw_metrics,
        **extra_metrics,
        "train_prevalence": prevalence,
    }
    run_id = uuid.uuid4().hex
    train_config = jsonable(asdict(config))
    manifest = {
        "kind": "maintenance_lstm",
        "run_id": run_id,
        "hyperparameters": model.hyperparameters(),
        "features": features.to_dict(),
        "horizon_hours": H,
        "ttf_cap_hours": cap,
        "interval_minutes": interval,
        "rule_limits": limits,
        "rule_limits_learned": learned_limits,
        "rule_limit_notes": limit_notes,
        "rule_rates": rates,
        "rule_rate_max_gap_hours": rate_gap_hours,
        "decision": model_point.to_manifest(),
        "baselines": baseline_store.manifest_entry([b.stored for b in baselines]),
        "warmup_steps": int(config.warmup_steps),
        "alert_probability": config.alert_probability,
        "ensemble": "failure probability = calibration applied to the mean of the heads' sigmoid outputs; "
        "TTF = mean head fraction x ttf_cap_hours",
        "calibration": calibration.to_manifest(),
        "state_reset": "zero LSTM state at a machine's first reading and at each new life (cycle decreases, or after a failure/repair outcome)",
        "metrics": jsonable(metrics),
        "data_fingerprint": fingerprint,
        "train_config": train_config,
        "split": split,
        "training": training,
        "life_stats": asdict(stats),
        "sensor_coverage": coverage,
    }

    if spread_reference is not None:
        manifest["confidence"] = {
            "spread_reference": spread_reference,
            "spread_quantile": config.spread_quantile,
            "spread_penalty": SPREAD_PENALTY,
            "spread_measured_on": "validation readings",
        }

    current = registry.current(MODEL_NAME)
    if current is not None:
        manifest["comparison"] = comparison(
            current,
            gate_metrics(MODEL_NAME, {"metrics": metrics, "calibration": calibration_data}),
            lambda version: evaluate_version(version, readings, lives, lab_full, cutoff, config, interval),
            f"the test period of this run's data, {split['cutoff']} to {split['last_ts']}: {n_test} readings, "
            f"{split['test_failures']} failures; labels for a {H:g} h horizon",
        )

    seconds_before_save = time.perf_counter() - wall_start
    # Written unpromoted, with the report so far; then the policy evaluation loads it as a worker
    # would, the report is completed, and only then is the version released.
    with registry.new_version(MODEL_NAME, jsonable(manifest), promote=False, actor=release.actor, reason=release.reason) as staging:
        torch.save(model.state_dict(), staging / "model.pt")
        baseline_store.write(staging, [b.stored for b in baselines])
        _build_report(manifest, source, seconds_before_save, calibration_data).write(staging)
    written = next((v for v in reversed(registry.versions(MODEL_NAME)) if v.manifest.get("run_id") == run_id), None)
    if written is None:
        raise RuntimeError("the new model version was written but cannot be found in the registry")

    settings = MaintenanceSettings(
        alert_probability=config.alert_probability,
        min_confidence=config.min_confidence,
        alert_cooldown_s=config.alert_cooldown_hours * 3600,
        false_alert_budget=config.false_alert_budget,
        min_precision=config.min_precision,
    )
    views = [
        LifeView(e.life.machine_id, e.life.rows, e.life.t, e.life.end, e.life.end_t, l.y, l.y_mask)
        for e, l in zip(encoded, lab_full)
    ]
    compared = {"baseline" if b.stored.name == "linear" else b.stored.name: (b.scored.prob, b.stored.threshold)
                for b in baselines}
    policy = evaluate_policy(
        written, settings, readings, outcomes, views, compared, cutoff, H, interval, config.policy_batch_size
    )
    curves = _report_curves(encoded, lab_full, cutoff, model_scored, raw_prob, baselines, cap)
    report = _build_report(
        manifest, source, seconds_before_save, calibration_data, policy, time.perf_counter() - wall_start, curves
    )
    _replace_report(report, written.path)
    release.apply(registry, MODEL_NAME, written.version)
    return written


def evaluate_version(
    version: ModelVersion,
    readings: Sequence[SensorReading],
    lives: Sequence[Life],
    labels: Sequence[Labels],
    cutoff: float,
    config: TrainConfig,
    interval_minutes: float,
) -> dict[str, float]:
    """The promotion gate's offline metrics of an existing version on a run's test period: the
    version's features, weights and calibration, loaded as a worker loads them, scoring every
    life from its first reading; the run's lives, labels and metric code (`evaluate`, Brier on
    the test readings with known labels), so the numbers compare with the new model's."""
    loaded = LoadedModel.from_version(version)
    encoded = encode_lives(loaded.features, readings, lives)
    preds = predict_sequences(loaded.model, [e.x for e in encoded])
    scored = Scored(
        prob=[loaded.calibration.ensemble(p) for p, _ in preds],
        ttf_hours=[q.mean(axis=1) * loaded.ttf_cap_hours for _, q in preds],
    )
    test = _test_masks(encoded, labels, cutoff)
    test_brier = brier(_concat(l.y[m] for l, m in zip(labels, test)), _concat(p[m] for p, m in zip(scored.prob, test)))
    # Shaped like the run's manifest metrics and report calibration: the gate's paths pick the values.
    return gate_metrics(MODEL_NAME, {
        "metrics": {"model": evaluate(scored, encoded, labels, cutoff, config, interval_minutes)},
        "calibration": {"brier": {"test": {"calibrated": test_brier}}},
    })


def _test_masks(encoded: Sequence[Encoded], labels: Sequence[Labels], cutoff: float) -> list[np.ndarray]:
    """Per life: the test-period readings whose label is known (what the test metrics count)."""
    return [(e.life.t >= cutoff) & l.y_mask for e, l in zip(encoded, labels)]


def _report_curves(
    encoded: Sequence[Encoded],
    labels: Sequence[Labels],
    cutoff: float,
    model: Scored,
    raw_prob: Sequence[np.ndarray],
    baselines: Sequence[_FittedBaseline],
    cap: float,
) -> MaintenanceCurves:
    """The test-period arrays the report's figures draw: the readings `evaluate` counts."""
    test = _test_masks(encoded, labels, cutoff)
    exact = [(e.life.t >= cutoff) & (l.ttf_kind == TTF_EXACT) & (l.ttf_hours < cap) for e, l in zip(encoded, labels)]
    names = {"linear": "Linear baseline", "trees": "Gradient-boosted trees (LightGBM)"}

    def on_test(per_life: Sequence[np.ndarray]) -> np.ndarray:
        return _concat(p[m] for p, m in zip(per_life, test))

    return MaintenanceCurves(
        y=_concat(l.y[m] for l, m in zip(labels, test)),
        probability={"LSTM": on_test(model.prob),
                     **{names.get(b.stored.name, b.stored.name): on_test(b.scored.prob) for b in baselines}},
        uncalibrated=on_test(raw_prob),
        ttf_true_hours=_concat(l.ttf_hours[m] for l, m in zip(labels, exact)),
        ttf_pred_hours=_concat(q[m] for q, m in zip(model.ttf_hours, exact)),
    )


def _replace_report(report: Report, directory: Path) -> None:
    """Rewrite report.md / report.json in place, each file replaced whole (never half-written)."""
    tmp_md, tmp_js = report.write(directory, stem=".report-new")
    os.replace(tmp_md, directory / "report.md")
    os.replace(tmp_js, directory / "report.json")


def _calibration_data(
    calibration: Calibration,
    fit: dict[str, Any],
    base_cal: Calibration,
    base_fit: dict[str, Any],
    raw_prob: Sequence[np.ndarray],
    base_prob: Sequence[np.ndarray],
    encoded: Sequence[Encoded],
    lab_cut: Sequence[Labels],
    lab_full: Sequence[Labels],
    in_val: Sequence[np.ndarray],
    cutoff: float,
) -> dict[str, Any]:
    """Brier scores (validation, test) and test reliability bins, before and after calibration."""
    test = _test_masks(encoded, lab_full, cutoff)
    val = [m & l.y_mask for m, l in zip(in_val, lab_cut)]
    yt = _concat(l.y[m] for l, m in zip(lab_full, test))
    yv = _concat(l.y[m] for l, m in zip(lab_cut, val))
    pt = _concat(p[m] for p, m in zip(raw_prob, test))
    pv = _concat(p[m] for p, m in zip(raw_prob, val))
    bt = _concat(p[m] for p, m in zip(base_prob, test))
    return {
        **calibration.to_manifest(),
        "fit": fit,
        "brier": {
            "validation": {"raw": brier(yv, pv), "calibrated": brier(yv, calibration.probability(pv))},
            "test": {"raw": brier(yt, pt), "calibrated": brier(yt, calibration.probability(pt))},
        },
        "reliability_test": {
            "raw": reliability_bins(yt, pt),
            "calibrated": reliability_bins(yt, calibration.probability(pt)),
        },
        "baseline": {
            **base_cal.to_manifest(),
            "fit": base_fit,
            "brier_test": {"raw": brier(yt, bt), "calibrated": brier(yt, base_cal.probability(bt))},
        },
    }


SPREAD_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, math.inf))


def _spread_accuracy(
    prob: Sequence[np.ndarray],
    cal_heads: Sequence[np.ndarray],
    encoded: Sequence[Encoded],
    lab_full: Sequence[Labels],
    cutoff: float,
    reference: Optional[float],
    threshold: float,
) -> list[dict[str, Any]]:
    """Test readings with known labels by spread / reference: how often the model's decision was
    right next to what its decisiveness promised (does unusual spread mean worse decisions?)."""
    if reference is None:
        return []
    sel = [(e.life.t >= cutoff) & l.y_mask for e, l in zip(encoded, lab_full)]
    ratio = _concat(h.std(axis=1)[m] for h, m in zip(cal_heads, sel)) / reference
    p = _concat(q[m] for q, m in zip(prob, sel))
    y = _concat(l.y[m] for l, m in zip(lab_full, sel)) > 0.5
    dec = decisiveness(p, threshold)
    right = (p >= threshold) == y
    rows = []
    for lo, hi in SPREAD_BANDS:
        m = (ratio >= lo) & (ratio < hi)
        n = int(m.sum())
        rows.append({
            "band": f"[{lo:g}, {hi:g})",
            "readings": n,
            "mean_decisiveness": float(dec[m].mean()) if n else None,
            "decision_right": float(right[m].mean()) if n else None,
            "mean_agreement": float(np.clip(1 - SPREAD_PENALTY * ratio[m], 0, 1).mean()) if n else None,
        })
    return rows
