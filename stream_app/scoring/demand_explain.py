"""Why a demand forecast is what it is, from the transformer's own interpretable parts.

time steps       the attention weights of the horizon days over the past days, averaged over
                 the horizon (and the heads, which share their values, so the average is the
                 weight of each day in the output): the past days that drove the forecast
inputs           the variable-selection weights, averaged over time: how much each input (recent
                 units, price, promo, calendar kinds, weekday, season) counted, past and future
calendar         for each calendar kind present in the window, the forecast re-run with that
                 kind removed: the change in the 30-day P50 total, in units (signed). The
                 largest is also given as a counterfactual ("without the campaign in the
                 calendar, ...")

Rule (fallback) forecasts are explained by their method and the figures it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

import numpy as np

from schemas.outputs import Contribution, Counterfactual, TimeStepContribution, digest
from stream_app.features.demand import (
    CALENDAR_CHANNELS,
    CALENDAR_KINDS,
    FUTURE_VARIABLES,
    PAST_VARIABLES,
    ModelInputs,
    day_date,
)
from stream_app.scoring.demand_model import LoadedDemandModel

TOP_DAYS = 5
TOP_INPUTS = 4
_KIND_CHANNELS = {kind: [i for i, c in enumerate(CALENDAR_CHANNELS) if c.startswith(kind)] for kind in CALENDAR_KINDS}


@dataclass
class ForecastReasons:
    """An explanation's body; the scorer wraps it into an Explanation for each alert."""

    method: str
    text: list[str]
    features: list[Contribution] = field(default_factory=list)
    time_steps: list[TimeStepContribution] = field(default_factory=list)
    counterfactuals: list[Counterfactual] = field(default_factory=list)
    inputs_sha256: str = ""


def _day_start(day: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=int(day))


def explain_model(
    loaded: LoadedDemandModel, inputs: ModelInputs, attention: np.ndarray, past_weights: np.ndarray,
    future_weights: np.ndarray, day: int, p50_30: float,
) -> ForecastReasons:
    """One series: inputs (1 row), attention (H, L + H), past_weights (L, P + K),
    future_weights (H, K) of its forecast at the close of `day`; p50_30 its 30-day P50 total."""
    L = loaded.features.history_days
    past_attention = attention.mean(axis=0)[:L]
    units = inputs.observed[0, :, 0] * inputs.scale[0]
    top = np.argsort(-past_attention)[:TOP_DAYS]
    steps = [
        TimeStepContribution(event_ts=_day_start(day - (L - 1 - i)), steps_ago=int(L - 1 - i), contribution=round(float(past_attention[i]), 4))
        for i in sorted(top, key=lambda i: -past_attention[i])
    ]
    past_imp = past_weights.mean(axis=0)
    future_imp = future_weights.mean(axis=0)
    features: list[Contribution] = []
    text: list[str] = []
    counterfactuals: list[Counterfactual] = []
    effects = _calendar_effects(loaded, inputs, p50_30)
    for kind, (intensity, without) in effects.items():
        features.append(Contribution(name=f"calendar.{kind}", value=round(intensity, 3), contribution=round(p50_30 - without, 2)))
    if effects:
        kind, (intensity, without) = max(effects.items(), key=lambda kv: abs(p50_30 - kv[1][1]))
        counterfactuals.append(Counterfactual(
            feature=f"calendar.{kind}", actual=round(intensity, 3), alternative=0.0,
            score_actual=round(p50_30, 2), score_alternative=round(without, 2),
            text=f"without the {kind} entries in the calendar, the 30-day P50 total would be {without:.1f} units instead of {p50_30:.1f}",
        ))
    order = np.argsort(-past_imp)[:TOP_INPUTS]
    features += [Contribution(name=f"past.{PAST_VARIABLES[i]}", value=None, contribution=round(float(past_imp[i]), 4)) for i in order]
    f_order = np.argsort(-future_imp)[:TOP_INPUTS]
    features += [Contribution(name=f"future.{FUTURE_VARIABLES[i]}", value=None, contribution=round(float(future_imp[i]), 4)) for i in f_order]

    days_text = ", ".join(f"{day_date(day - s.steps_ago).isoformat()} ({units[L - 1 - s.steps_ago]:.0f} units, weight {s.contribution:.2f})" for s in steps)
    text.append(f"Past days the forecast attended to most: {days_text}.")
    text.append("Inputs that counted most: past " + ", ".join(f"{PAST_VARIABLES[i]} {past_imp[i]:.2f}" for i in order)
                + "; horizon " + ", ".join(f"{FUTURE_VARIABLES[i]} {future_imp[i]:.2f}" for i in f_order) + " (variable-selection weights, each side sums to 1).")
    if effects:
        text.append("Calendar effect on the 30-day P50 total: " + ", ".join(
            f"{k} {p50_30 - w:+.1f} units" for k, (_, w) in effects.items()) + ".")
        text.append(counterfactuals[0].text[0].upper() + counterfactuals[0].text[1:] + ".")
    else:
        text.append("No calendar entry (holiday, campaign, launch, media) covers this series' window.")
    payload = b"".join(np.ascontiguousarray(a).tobytes() for a in (inputs.observed, inputs.known, inputs.static, inputs.market))
    return ForecastReasons("tft_attention_and_variable_selection", text, features, steps, counterfactuals, digest(payload))


def _calendar_effects(loaded: LoadedDemandModel, inputs: ModelInputs, p50_30: float) -> dict[str, tuple[float, float]]:
    """kind -> (mean intensity over the horizon, 30-day P50 total without the kind)."""
    L = loaded.features.history_days
    present = [k for k, cols in _KIND_CHANNELS.items() if np.abs(inputs.known[0, :, cols]).sum() > 0]
    if not present:
        return {}
    variants = []
    for kind in present:
        known = inputs.known.copy()
        known[0, :, _KIND_CHANNELS[kind]] = 0.0
        variants.append(known[0])
    batch = ModelInputs(inputs.observed.repeat(len(present), 0), np.stack(variants), inputs.market.repeat(len(present)),
                        inputs.static.repeat(len(present), 0), inputs.scale.repeat(len(present)), inputs.history_days.repeat(len(present)))
    totals = loaded.forecast(batch).totals[:, 1, 1]
    kind_col = {k: _KIND_CHANNELS[k][0] for k in present}
    return {k: (float(inputs.known[0, L:, kind_col[k]].mean()), float(t)) for k, t in zip(present, totals)}


def explain_rule(method: str, units: np.ndarray, active: np.ndarray, point: Optional[float], why: str) -> ForecastReasons:
    """A fallback forecast: units, active (L,) the history it used; point its daily P50."""
    recent = units[-28:][active[-28:]]
    text = [f"Rule forecast ({method.replace('_', ' ')}): {why}."]
    if method == "moving_average":
        text.append(f"Mean of the last {len(recent)} days with history: {recent.mean() if len(recent) else 0.0:.2f} units a day.")
    else:
        text.append("Each horizon day repeats the units of the last same weekday: " + ", ".join(f"{u:.0f}" for u in units[-7:]) + " (last 7 days).")
    if point is not None:
        text.append(f"Next day's P50: {point:.2f} units; intervals from the spread of the last 28 days and residual quantiles fitted in training.")
    return ForecastReasons(method, text, inputs_sha256=digest(np.ascontiguousarray(units).tobytes()))
