"""Why an alert fired, in terms an auditor can check.

Model decisions: integrated gradients (Sundararajan et al. 2017) of the failure probability (mean
of the heads' sigmoids at the last step) over the machine's buffered readings, run from the
checkpointed LSTM state at the start of the buffer. Baseline: the training-mean reading, i.e.
scaled sensor values, missing flags and trend columns 0, machine type and mode kept as they are
(they are not something the machine "did"). A sensor's contribution sums all of its columns
(value, missing flag, trends). Attributions sum to f(input) - f(baseline) up to the path
integral's quadrature error; that gap is checked, the grid refined while it is too large (16
steps to start, up to 512 for a saturated model), and logged if it stays large. A counterfactual
re-runs the buffer with one sensor held at its training mean. A batch's alerts are explained
together: one forward and backward pass for all of them (per call, not per number, is what a
small LSTM costs on a CPU: load_tests/hot_path.py compares it with explaining one by one).

Rule decisions: every limit checked, the ones that fired, and the limit a value had to stay on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Sequence, Union

import numpy as np
import torch

from schemas.outputs import Contribution, Counterfactual, Explanation, TimeStepContribution, digest
from stream_app.features.maintenance import MaintenanceFeatures
from stream_app.models.maintenance_lstm import MaintenanceLSTM, State
from stream_app.scoring.rules import RuleSet

log = logging.getLogger(__name__)

IG_STEPS = 16
IG_MAX_STEPS = 512
_PATH_ROWS = 1024  # sequences x path points per forward/backward (memory stays bounded)
# Relative completeness gap above which the quadrature is too coarse to trust blindly.
COMPLETENESS_TOLERANCE = 0.03
TOP_SENSORS = 5
TOP_STEPS = 5
COUNTERFACTUAL_SENSORS = 2
RUNNER_UP_SHARE = 0.25
ALERT_KIND = "maintenance.failure_risk"
MODEL_NAME = "maintenance"


# --- numerics ---------------------------------------------------------------------------------
def sequence_probability(model: MaintenanceLSTM, inputs: torch.Tensor, state: State) -> torch.Tensor:
    """inputs (B, T, F) from states (L, B, H), or all from one state (L, 1, H) -> failure
    probability (B,) at the last step: the mean of the heads' sigmoids, as live scoring reports it."""
    b = inputs.shape[0]
    h0, c0 = (s.expand(-1, b, -1).contiguous() for s in state) if state[0].shape[1] == 1 else state
    logits, _, _ = model(inputs, (h0, c0))
    return torch.sigmoid(logits[:, -1, :]).mean(dim=-1)


@dataclass(frozen=True)
class Attribution:
    values: np.ndarray  # (T, F), in probability units
    f_input: float
    f_baseline: float
    steps: int  # path intervals the integral finally used

    @property
    def gap(self) -> float:
        """Completeness error: sum of attributions minus the output difference it explains."""
        return float(self.values.sum()) - (self.f_input - self.f_baseline)


def _path_gradients(
    model: MaintenanceLSTM, x: torch.Tensor, x0: torch.Tensor, state: State, alphas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For N sequences x, x0 (N, T, F) from states (L, N, H): gradients (A, N, T, F) of the
    probability at x0 + alpha (x - x0), and the probabilities (A, N). One forward and backward
    for all sequences and points (chunked, so that memory stays bounded): per-call overhead,
    not arithmetic, is most of what a small LSTM costs on a CPU."""
    n = x.shape[0]
    grads, probs = [], []
    for chunk in alphas.split(max(1, _PATH_ROWS // n)):
        a = chunk.shape[0]
        path = (x0 + chunk.view(-1, 1, 1, 1) * (x - x0)).reshape(a * n, *x.shape[1:]).requires_grad_(True)
        p = sequence_probability(model, path, (state[0].repeat(1, a, 1), state[1].repeat(1, a, 1)))
        (g,) = torch.autograd.grad(p.sum(), path)
        grads.append(g.view(a, n, *x.shape[1:]))
        probs.append(p.detach().view(a, n))
    return torch.cat(grads), torch.cat(probs)


def integrated_gradients(model: MaintenanceLSTM, inputs: np.ndarray, baseline: np.ndarray, state: State) -> Attribution:
    """inputs, baseline (T, F) from state (L, 1, H) -> attributions (T, F); see integrated_gradients_many."""
    return integrated_gradients_many(model, inputs[None], baseline[None], state)[0]


def integrated_gradients_many(
    model: MaintenanceLSTM,
    inputs: np.ndarray,
    baseline: np.ndarray,
    state: State,
    steps: int = IG_STEPS,
    max_steps: int = IG_MAX_STEPS,
) -> list[Attribution]:
    """inputs, baselines (N, T, F) from states (L, N, H) -> attributions (T, F) of each, along
    the straight path (trapezoid rule).

    Starts with `steps` intervals; a saturated model can switch sharply somewhere on the path,
    so while a sequence's completeness gap exceeds the tolerance its grid is refined by halving
    the intervals (reusing every gradient already computed), up to `max_steps`."""
    model.eval()
    x = torch.as_tensor(inputs, dtype=torch.float32)
    x0 = torch.as_tensor(baseline, dtype=torch.float32)
    results: list[Optional[Attribution]] = [None] * len(x)
    # Outside inference mode, on copies, so autograd may record even if the caller disabled it.
    with torch.inference_mode(False), torch.enable_grad():
        state = (state[0].detach().clone(), state[1].detach().clone())
        n = steps
        grads, probs = _path_gradients(model, x, x0, state, torch.linspace(0.0, 1.0, n + 1))
        f_baseline, f_input = probs[0].tolist(), probs[-1].tolist()
        weighted = grads[1:-1].sum(dim=0) + 0.5 * (grads[0] + grads[-1])
        active = list(range(len(x)))  # sequences still refining, all at n intervals
        while active:
            values = ((x[active] - x0[active]) * weighted[active] / n).detach().numpy()
            refine = []
            for k, j in enumerate(active):
                result = results[j] = Attribution(values=values[k], f_input=f_input[j], f_baseline=f_baseline[j], steps=n)
                tolerance = max(COMPLETENESS_TOLERANCE * abs(f_input[j] - f_baseline[j]), 1e-3)
                if abs(result.gap) > tolerance:
                    if 2 * n > max_steps:
                        log.debug("integrated gradients: completeness gap %.4f for an output difference of %.4f "
                                  "after %d steps", result.gap, f_input[j] - f_baseline[j], n)
                    else:
                        refine.append(j)
            if refine:
                index = torch.tensor(refine)
                midpoints = (torch.arange(n, dtype=torch.float32) + 0.5) / n
                sub = (state[0].index_select(1, index), state[1].index_select(1, index))
                weighted = weighted.clone()
                weighted[index] += _path_gradients(model, x[index], x0[index], sub, midpoints)[0].sum(dim=0)
                n *= 2
            active = refine
    return [r for r in results if r is not None]


def replaced_probabilities(
    model: MaintenanceLSTM, inputs: np.ndarray, baseline: np.ndarray, state: State,
    groups: Sequence[Sequence[Sequence[int]]],
) -> list[np.ndarray]:
    """For N sequences (inputs, baselines (N, T, F) from states (L, N, H)) and each sequence's
    groups of input columns: the probability with the group's columns taken from the baseline
    over the whole buffer. One batched forward for all of them."""
    owner = [j for j, gs in enumerate(groups) for _ in gs]
    if not owner:
        return [np.empty(0) for _ in groups]
    variants = inputs[owner]  # a copy (fancy indexing)
    cols = [list(c) for gs in groups for c in gs]
    for v, (j, c) in enumerate(zip(owner, cols)):
        variants[v][:, c] = baseline[j][:, c]
    index = torch.tensor(owner)
    with torch.no_grad():
        probs = sequence_probability(model, torch.as_tensor(variants, dtype=torch.float32),
                                     (state[0].index_select(1, index), state[1].index_select(1, index))).numpy()
    return np.split(probs, np.cumsum([len(gs) for gs in groups])[:-1])


def mean_baseline(inputs: np.ndarray, features: Union[MaintenanceFeatures, int]) -> np.ndarray:
    """Training-mean reading: scaled sensors, missing flags and trends 0, categories as observed
    (`features` an int: a spec of that many sensors without trend columns)."""
    baseline = inputs.copy()
    columns = features.activity_columns() if isinstance(features, MaintenanceFeatures) else slice(0, 2 * features)
    baseline[:, columns] = 0.0
    return baseline


# --- explanation messages ---------------------------------------------------------------------
@dataclass(frozen=True)
class AlertContext:
    """What the decision was; the explanation says why."""

    alert_id: str
    machine_id: str
    event_id: str
    event_ts: datetime
    model_version: Optional[str]
    probability: float
    confidence: float
    decision: str  # e.g. "p=0.91 >= 0.50 at confidence 0.93 >= 0.85"
    created_at: datetime


def _canonical_digest(payload: dict) -> str:
    return digest(json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())


def _hours(event_ts: np.ndarray) -> float:
    return float(event_ts[-1] - event_ts[0]) / 3600.0 if len(event_ts) > 1 else 0.0


def _trend(inputs: np.ndarray, sensor: int, event_ts: np.ndarray) -> str:
    """A few words on what the sensor did over the buffer, in its own scale (std units)."""
    change = float(inputs[-1, sensor] - inputs[0, sensor])
    span = f"{_hours(event_ts):.0f} h" if _hours(event_ts) >= 1 else f"{len(inputs)} readings"
    if change > 0.5:
        return f"rising over the last {span}"
    if change < -0.5:
        return f"falling over the last {span}"
    level = float(inputs[-1, sensor])
    return "high" if level > 1 else "low" if level < -1 else "near its typical level"


@dataclass(frozen=True)
class ReplayedAlert:
    """A model alert and what its explanation replays. inputs (T, F): the buffered encoded
    readings ending with the alerting one; state (L, 1, H): the LSTM state before the first of
    them; event_ids / event_ts (epoch s): one per row."""

    ctx: AlertContext
    inputs: np.ndarray
    state: State
    event_ids: Sequence[str]
    event_ts: np.ndarray


def explain_model_alert(
    ctx: AlertContext,
    model: MaintenanceLSTM,
    features: MaintenanceFeatures,
    horizon_hours: float,
    inputs: np.ndarray,
    state: State,
    event_ids: Sequence[str],
    event_ts: np.ndarray,
) -> Explanation:
    alert = ReplayedAlert(ctx, inputs, state, event_ids, event_ts)
    return explain_model_alerts(model, features, horizon_hours, [alert])[0]


def explain_model_alerts(
    model: MaintenanceLSTM, features: MaintenanceFeatures, horizon_hours: float, alerts: Sequence[ReplayedAlert]
) -> list[Explanation]:
    """The explanations of a batch's model alerts, in order: alerts that replay as many readings
    share one integrated-gradients pass and one counterfactual forward."""
    by_length: dict[int, list[int]] = {}
    for k, alert in enumerate(alerts):
        by_length.setdefault(len(alert.inputs), []).append(k)
    explanations: dict[int, Explanation] = {}
    for group in by_length.values():
        inputs = np.stack([alerts[k].inputs for k in group])
        baselines = np.stack([mean_baseline(alerts[k].inputs, features) for k in group])
        states = (torch.cat([alerts[k].state[0] for k in group], dim=1), torch.cat([alerts[k].state[1] for k in group], dim=1))
        attrs = integrated_gradients_many(model, inputs, baselines, states)
        pushers = [_pushers(_per_sensor(attr, features)) for attr in attrs]
        held = [[features.sensor_columns(j) for j in p] for p in pushers]  # a sensor's value, flag and trends
        alternatives = replaced_probabilities(model, inputs, baselines, states, held)
        for k, attr, push, alt in zip(group, attrs, pushers, alternatives):
            explanations[k] = _model_explanation(alerts[k], attr, push, alt, features, horizon_hours)
    return [explanations[k] for k in range(len(alerts))]


def _per_sensor(attr: Attribution, features: MaintenanceFeatures) -> np.ndarray:
    """A sensor's contribution: its value's, its missing flag's and its trends'."""
    per_column = attr.values.sum(axis=0)
    return np.array([per_column[features.sensor_columns(j)].sum() for j in range(features.n_sensors)])


def _pushers(per_sensor: np.ndarray) -> list[int]:
    """The sensors that pushed the probability up most (a runner-up only when it did a fair
    share of the pushing: otherwise its counterfactual just repeats p)."""
    pushers = [int(j) for j in np.argsort(-per_sensor) if per_sensor[j] > 0][:COUNTERFACTUAL_SENSORS]
    return [j for j in pushers if per_sensor[j] >= RUNNER_UP_SHARE * per_sensor[pushers[0]]]


def _model_explanation(
    alert: ReplayedAlert, attr: Attribution, pushers: list[int], alt_probs: np.ndarray,
    features: MaintenanceFeatures, horizon_hours: float,
) -> Explanation:
    ctx, inputs, event_ids, event_ts = alert.ctx, alert.inputs, alert.event_ids, alert.event_ts
    per_sensor = _per_sensor(attr, features)
    per_step = attr.values.sum(axis=1)
    t_len = len(inputs)
    mode = features.mode_of(inputs[-1])  # the scaling of the reading's operating mode, where the spec has one

    order = np.argsort(-np.abs(per_sensor))[:TOP_SENSORS]
    contributions = [
        Contribution(
            name=features.sensors[j], value=features.unscale(j, float(inputs[-1, j]), mode),
            contribution=float(per_sensor[j]),
        )
        for j in order
    ]
    steps = [
        TimeStepContribution(
            event_id=event_ids[t],
            event_ts=datetime.fromtimestamp(float(event_ts[t]), tz=timezone.utc),
            steps_ago=t_len - 1 - int(t),
            contribution=float(per_step[t]),
        )
        for t in np.argsort(-np.abs(per_step))[:TOP_STEPS]
    ]

    # Counterfactuals: the pushers held at their training mean.
    counterfactuals = []
    for j, alt in zip(pushers, alt_probs):
        name = features.sensors[j]
        actual, typical = features.unscale(j, float(inputs[-1, j]), mode), features.unscale(j, 0.0, mode)
        counterfactuals.append(Counterfactual(
            feature=name, actual=actual, alternative=typical, score_actual=attr.f_input, score_alternative=float(alt),
            text=(f"if {name} were {typical:.3g} (typical) instead of {actual:.3g} over the last {t_len} readings, "
                  f"failure probability would be {alt:.2f} instead of {attr.f_input:.2f}"),
        ))

    # An alert fires above a threshold chosen for a false-alert budget, often well below 0.5:
    # the words must not claim more than the probability says.
    likelihood = "likely" if ctx.probability >= 0.5 else "possible"
    summary = f"Failure within {horizon_hours:g} h {likelihood} (p={ctx.probability:.2f}, confidence {ctx.confidence:.2f})"
    if pushers:
        top = pushers[0]
        summary += f": {features.sensors[top]} {_trend(inputs, top, event_ts)}"
        cf = counterfactuals[0]
        summary += f"; if {cf.feature} were {cf.alternative:.3g} (typical), p would be {cf.score_alternative:.2f}"

    top_text = ", ".join(f"{c.name} {c.contribution:+.3f} (now {c.value:.4g})" for c in contributions)
    step_text = ", ".join(f"{t.event_id} ({t.steps_ago} readings ago) {t.contribution:+.3f}" for t in steps)
    lines = [
        f"Machine {ctx.machine_id}, reading {ctx.event_id} at {ctx.event_ts.isoformat()}: failure within "
        f"{horizon_hours:g} h predicted with probability {ctx.probability:.2f}, confidence {ctx.confidence:.2f}.",
        f"Decided by model {MODEL_NAME} {ctx.model_version}: alert because {ctx.decision}.",
        f"Method: integrated gradients ({attr.steps} path steps) over the last {t_len} readings "
        f"({_hours(event_ts):.1f} h) from the checkpointed state; baseline = training-mean readings "
        f"(p={attr.f_baseline:.2f}); attributions sum to {attr.values.sum():+.3f} "
        f"vs p(input)-p(baseline) = {attr.f_input - attr.f_baseline:+.3f}.",
        f"Inputs that moved the probability most: {top_text}.",
        f"Readings that moved it most: {step_text}.",
        *(f"Counterfactual: {c.text}." for c in counterfactuals),
    ]
    return Explanation(
        alert_id=ctx.alert_id, kind=ALERT_KIND, entity_id=ctx.machine_id, model_name=MODEL_NAME,
        model_version=ctx.model_version, decision_source="model", method="integrated_gradients",
        summary=summary, text="\n".join(lines), features=contributions, time_steps=steps,
        counterfactuals=counterfactuals,
        inputs_sha256=_canonical_digest({
            "machine_id": ctx.machine_id, "event_ids": list(event_ids), "inputs": inputs.tolist(),
            "model_version": ctx.model_version,
        }),
        created_at=ctx.created_at,
    )


def explain_rule_alert(
    ctx: AlertContext, rules: RuleSet, values: np.ndarray, why_rules: str,
    previous: Optional[np.ndarray] = None, hours: Optional[float] = None,
) -> Explanation:
    """values (R,): the raw values the rules saw (the last observed one for a missing sensor);
    previous (R,) / hours: the machine's previous reading's values and how long before, for the
    rate-of-change limits."""
    violations = rules.violations(values, previous, hours)
    fired = "; ".join(v.describe() for v in violations) or "no limit"
    worst = violations[0] if violations else None
    counterfactuals = []
    if worst is not None and worst.side == "rate":
        counterfactuals.append(Counterfactual(
            feature=worst.sensor, actual=worst.value, alternative=worst.limit, score_actual=worst.exceedance,
            score_alternative=0.0,
            text=f"if {worst.sensor} had changed by at most {worst.limit:g} per hour instead of {worst.value:.4g}, "
                 "this rule would not have fired",
        ))
    elif worst is not None:
        stay = "at or below" if worst.side == "high" else "at or above"
        others = f" ({len(violations) - 1} other limit(s) also breached)" if len(violations) > 1 else ""
        counterfactuals.append(Counterfactual(
            feature=worst.sensor, actual=worst.value, alternative=worst.limit, score_actual=worst.exceedance,
            score_alternative=0.0,
            text=f"if {worst.sensor} had stayed {stay} its {worst.side} limit {worst.limit:g} instead of "
                 f"{worst.value:.4g}, this rule would not have fired{others}",
        ))
    summary = f"Limit exceeded: {fired}; decided by rules ({why_rules})"
    observed = {name: (None if np.isnan(v) else float(v)) for name, v in zip(rules.sensors, values)}
    lines = [
        f"Machine {ctx.machine_id}, reading {ctx.event_id} at {ctx.event_ts.isoformat()}: "
        f"limit(s) breached: {fired}.",
        f"Decided by rules, not the model, because {why_rules}.",
        "Rule values are this reading's raw values, or the last observed value for a sensor it lacked: "
        + ", ".join(f"{k}={'n/a' if v is None else f'{v:.4g}'}" for k, v in observed.items()) + ".",
        "A breached limit is an observation, not an estimate: confidence 1.0; score = fraction past the limit. "
        "Physical limits are engineering limits; trained limits are the edge of the healthy range in the training data "
        "(rate-of-change limits: the fastest healthy change between consecutive readings there).",
        *(f"Counterfactual: {c.text}." for c in counterfactuals),
    ]
    return Explanation(
        alert_id=ctx.alert_id, kind=ALERT_KIND, entity_id=ctx.machine_id, model_name=MODEL_NAME,
        model_version=ctx.model_version, decision_source="rule", method="physical_limits",
        summary=summary, text="\n".join(lines), counterfactuals=counterfactuals, rules=rules.checks(values, previous, hours),
        inputs_sha256=_canonical_digest({"machine_id": ctx.machine_id, "event_id": ctx.event_id, "values": observed}),
        created_at=ctx.created_at,
    )
