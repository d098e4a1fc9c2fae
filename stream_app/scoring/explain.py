"""Why an alert fired, in terms an auditor can check.

Model decisions: integrated gradients (Sundararajan et al. 2017) of the failure probability (mean
of the heads' sigmoids at the last step) over the machine's buffered readings, run from the
checkpointed LSTM state at the start of the buffer. Baseline: the training-mean reading, i.e.
scaled sensor values 0 with missing flags 0, machine type and mode kept as they are (they are
not something the machine "did"). Attributions sum to f(input) - f(baseline) up to the path
integral's quadrature error; that gap is checked, the grid refined while it is too large (16
steps to start, up to 512 for a saturated model), and logged if it stays large. A counterfactual
re-runs the buffer with one sensor held at its training mean.

Rule decisions: every limit checked, the ones that fired, and the limit a value had to stay on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional, Sequence

import numpy as np
import torch

from schemas.outputs import Contribution, Counterfactual, Explanation, TimeStepContribution, digest
from stream_app.features.maintenance import MaintenanceFeatures
from stream_app.models.maintenance_lstm import MaintenanceLSTM, State
from stream_app.scoring.rules import RuleSet

log = logging.getLogger(__name__)

IG_STEPS = 16
IG_MAX_STEPS = 512
_PATH_CHUNK = 128
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
    """inputs (B, T, F) from a single machine's state (L, 1, H) -> failure probability (B,) at
    the last step: the mean of the heads' sigmoids, as live scoring reports it."""
    b = inputs.shape[0]
    h0, c0 = (s.expand(-1, b, -1).contiguous() for s in state)
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
    """Gradients (A, T, F) of the probability at x0 + alpha (x - x0), and the probabilities (A,).
    Chunked so that memory stays bounded whatever the number of points."""
    grads, probs = [], []
    for chunk in alphas.split(_PATH_CHUNK):
        path = (x0 + chunk.view(-1, 1, 1) * (x - x0)).requires_grad_(True)
        p = sequence_probability(model, path, state)
        (g,) = torch.autograd.grad(p.sum(), path)
        grads.append(g)
        probs.append(p.detach())
    return torch.cat(grads), torch.cat(probs)


def integrated_gradients(
    model: MaintenanceLSTM,
    inputs: np.ndarray,
    baseline: np.ndarray,
    state: State,
    steps: int = IG_STEPS,
    max_steps: int = IG_MAX_STEPS,
) -> Attribution:
    """inputs, baseline (T, F) -> attributions (T, F) along the straight path (trapezoid rule).

    Starts with `steps` intervals; a saturated model can switch sharply somewhere on the path,
    so while the completeness gap exceeds the tolerance the grid is refined by halving the
    intervals (reusing every gradient already computed), up to `max_steps`."""
    model.eval()
    x = torch.as_tensor(inputs, dtype=torch.float32)
    x0 = torch.as_tensor(baseline, dtype=torch.float32)
    # Outside inference mode, on copies, so autograd may record even if the caller disabled it.
    with torch.inference_mode(False), torch.enable_grad():
        state = (state[0].detach().clone(), state[1].detach().clone())
        n = steps
        grads, probs = _path_gradients(model, x, x0, state, torch.linspace(0.0, 1.0, n + 1))
        f_baseline, f_input = float(probs[0]), float(probs[-1])
        weighted = grads[1:-1].sum(dim=0) + 0.5 * (grads[0] + grads[-1])
        while True:
            values = ((x - x0) * weighted / n).detach().numpy()
            result = Attribution(values=values, f_input=f_input, f_baseline=f_baseline, steps=n)
            tolerance = max(COMPLETENESS_TOLERANCE * abs(f_input - f_baseline), 1e-3)
            if abs(result.gap) <= tolerance or 2 * n > max_steps:
                break
            midpoints = (torch.arange(n, dtype=torch.float32) + 0.5) / n
            weighted = weighted + _path_gradients(model, x, x0, state, midpoints)[0].sum(dim=0)
            n *= 2
    if abs(result.gap) > tolerance:
        log.debug("integrated gradients: completeness gap %.4f for an output difference of %.4f after %d steps",
                  result.gap, f_input - f_baseline, n)
    return result


def replaced_probabilities(
    model: MaintenanceLSTM, inputs: np.ndarray, baseline: np.ndarray, state: State, groups: Sequence[Sequence[int]]
) -> np.ndarray:
    """For each group of input columns, the probability with those columns taken from the
    baseline over the whole buffer (one batched forward)."""
    variants = np.repeat(inputs[None], len(groups), axis=0)
    for g, cols in enumerate(groups):
        variants[g][:, list(cols)] = baseline[:, list(cols)]
    with torch.no_grad():
        return sequence_probability(model, torch.as_tensor(variants, dtype=torch.float32), state).numpy()


def mean_baseline(inputs: np.ndarray, n_sensors: int) -> np.ndarray:
    """Training-mean reading: scaled sensors and missing flags 0, categories as observed."""
    baseline = inputs.copy()
    baseline[:, : 2 * n_sensors] = 0.0
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
    """inputs (T, F): the buffered encoded readings ending with the alerting one; state: the
    LSTM state before the first of them; event_ids / event_ts (epoch s): one per row."""
    s = features.n_sensors
    baseline = mean_baseline(inputs, s)
    attr = integrated_gradients(model, inputs, baseline, state)
    per_sensor = attr.values[:, :s].sum(axis=0) + attr.values[:, s : 2 * s].sum(axis=0)
    per_step = attr.values.sum(axis=1)
    t_len = len(inputs)

    order = np.argsort(-np.abs(per_sensor))[:TOP_SENSORS]
    contributions = [
        Contribution(
            name=features.sensors[j], value=features.unscale(j, float(inputs[-1, j])), contribution=float(per_sensor[j])
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

    # Counterfactuals for the sensors that pushed the probability up most (a runner-up only when
    # it did a fair share of the pushing: otherwise its counterfactual just repeats p).
    pushers = [int(j) for j in np.argsort(-per_sensor) if per_sensor[j] > 0][:COUNTERFACTUAL_SENSORS]
    pushers = [j for j in pushers if per_sensor[j] >= RUNNER_UP_SHARE * per_sensor[pushers[0]]]
    alt_probs = replaced_probabilities(model, inputs, baseline, state, [(j, s + j) for j in pushers])
    counterfactuals = []
    for j, alt in zip(pushers, alt_probs):
        name, actual, typical = features.sensors[j], features.unscale(j, float(inputs[-1, j])), features.unscale(j, 0.0)
        counterfactuals.append(Counterfactual(
            feature=name, actual=actual, alternative=typical, score_actual=attr.f_input, score_alternative=float(alt),
            text=(f"if {name} were {typical:.3g} (typical) instead of {actual:.3g} over the last {t_len} readings, "
                  f"failure probability would be {alt:.2f} instead of {attr.f_input:.2f}"),
        ))

    summary = f"Failure within {horizon_hours:g} h likely (p={ctx.probability:.2f}, confidence {ctx.confidence:.2f})"
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


def explain_rule_alert(ctx: AlertContext, rules: RuleSet, values: np.ndarray, why_rules: str) -> Explanation:
    """values (R,): the raw values the rules saw (the last observed one for a missing sensor)."""
    violations = rules.violations(values)
    fired = "; ".join(v.describe() for v in violations) or "no limit"
    worst = violations[0] if violations else None
    counterfactuals = []
    if worst is not None:
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
        "Physical limits are engineering limits; trained limits are the edge of the healthy range in the training data.",
        *(f"Counterfactual: {c.text}." for c in counterfactuals),
    ]
    return Explanation(
        alert_id=ctx.alert_id, kind=ALERT_KIND, entity_id=ctx.machine_id, model_name=MODEL_NAME,
        model_version=ctx.model_version, decision_source="rule", method="physical_limits",
        summary=summary, text="\n".join(lines), counterfactuals=counterfactuals, rules=rules.checks(values),
        inputs_sha256=_canonical_digest({"machine_id": ctx.machine_id, "event_id": ctx.event_id, "values": observed}),
        created_at=ctx.created_at,
    )
