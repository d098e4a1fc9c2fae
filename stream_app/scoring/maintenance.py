"""Maintenance scorer: sensor readings -> failure predictions, alerts and (for alerts) explanations.

Each reading costs one stateful LSTM step. All machines' LSTM states live in preallocated
tensors indexed by a slot per machine; a batch gathers its machines' states, runs one (B, 1, F)
step and scatters the new states back. Several readings of one machine in a batch are processed
in rounds (one reading per machine per round, in arrival order), one batched step per round.

Decisions. A version with a stored operating point (stream_app.scoring.operating_point) decides
whenever it is in its depth, i.e. its competence (agreement x data quality x warm-up x
familiarity, stream_app.scoring.confidence) >= min_confidence, and alerts when the calibrated
probability p reaches the threshold its validation curve gives for the settings' false-alert
budget; otherwise (warm-up, poor data, an unseen regime, heads far apart) the physical-limit
rules decide (alert when a limit is breached). A version without one (older) keeps the older
policy: the model decides when its confidence, decisiveness included, >= min_confidence, and
alerts at p >= alert_probability. A prediction always carries the model's own probability and
confidence when there is a model, so dashboards see what the model thought even when the rules
decided; without a model its probability is 1 (confidence 1) when a limit is breached, else 0
(confidence 0: no evidence either way), with horizon 0 h (a breach is a present condition) and
no time to failure.

Per-machine choices worth knowing:
* Repair: a reading whose `cycle` is below the machine's last one means the machine was repaired
  or replaced; its state (LSTM, last values, warm-up, history, cooldown) starts afresh, as it
  does on reset_machine() (for failure/repair outcomes, where training also starts a new life).
* Late readings (event time older than the machine's newest seen): scored from the machine's
  current state, as if they were next, but they change nothing (state, last values, warm-up,
  history, cycle). Replaying them into the recurrence would need the readings after them; their
  prediction is still useful and the reason says it was late. They can still alert (cooldown is
  measured as |event time - last alert time|).
* Cooldown: at most one alert per machine per alert_cooldown_s of event time; a suppressed
  prediction says alert=False and why.
* Explanations replay the machine's last settings.explain_window readings (fewer early in a life)
  from a float16 checkpoint of the LSTM state before them (see MachineStates): the window and
  the checkpoint shape explanations only, never predictions.
* State is bounded (stream_app/state_budget.py): ~2.3 KB a machine with the trained model and
  the default window (state_bytes()), for at most settings.max_machines machines, least
  recently seen forgotten first, and none silent for settings.machine_idle_s of event time. A
  forgotten machine that reports again warms up as a new one.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch

from schemas.common import OUTPUT_SCHEMA_VERSION
from schemas.outputs import Alert, Explanation, MaintenancePrediction, deterministic_id
from schemas.sensor import MaintenanceOutcome, SensorReading
from stream_app.features.maintenance import MaintenanceFeatures
from stream_app.models.maintenance_lstm import MaintenanceLSTM
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.state_budget import EntityBudget
from stream_app.scoring.confidence import EPS, Calibration, Confidence, confidence
from stream_app.scoring.operating_point import OperatingPoint
from stream_app.scoring.explain import (
    ALERT_KIND, MODEL_NAME, AlertContext, ReplayedAlert, explain_model_alerts, explain_rule_alert,
)
from stream_app.scoring.rules import LARGE_EXCEEDANCE, RuleSet
from stream_app.settings import MaintenanceSettings

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.pt"
DEFAULT_WARMUP_STEPS = 12
_NO_NAMES: list[str] = []


@dataclass(slots=True)
class ScoredReading:
    # The prediction's fields (MaintenancePrediction's, in its order, schema_version included),
    # published as they are (stream_app/encoded.py): no model object per reading on the hot path.
    fields: dict[str, Any]
    alert: Optional[Alert]
    explanation: Optional[Explanation]
    # The decision was to alert, but the machine's cooldown suppressed it (prediction.alert False).
    suppressed: bool = False
    # The candidate version's result for the same reading, when one scores in shadow.
    shadow: Optional["ScoredReading"] = None

    @property
    def prediction(self) -> MaintenancePrediction:
        """The validated message (built on each call: for tests and offline evaluation)."""
        return MaintenancePrediction(**self.fields)


# --- model artifact ---------------------------------------------------------------------------
def _positive(manifest: dict[str, Any], key: str, default: Optional[float] = None) -> float:
    value = manifest.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"manifest {key!r} must be a positive number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: MaintenanceLSTM
    features: MaintenanceFeatures
    horizon_hours: float
    ttf_cap_hours: float
    interval_minutes: float
    warmup_steps: int
    calibration: Calibration = Calibration()
    # the manifest's confidence.spread_reference; None (older models): the old agreement formula
    spread_reference: Optional[float] = None
    # the manifest's "decision"; None (older models): the older decision policy
    operating_point: Optional[OperatingPoint] = None

    @classmethod
    def from_version(cls, version: ModelVersion) -> "LoadedModel":
        """Raises (KeyError, ValueError, RuntimeError, OSError, ...) on any inconsistency."""
        manifest = version.manifest
        features = MaintenanceFeatures.from_dict(manifest["features"])
        model = MaintenanceLSTM(**manifest["hyperparameters"])
        if model.n_inputs != features.n_inputs:
            raise ValueError(f"model takes {model.n_inputs} inputs but the feature spec makes {features.n_inputs}")
        weights = version.file(WEIGHTS_FILE)
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing")
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        warmup = manifest.get("warmup_steps", DEFAULT_WARMUP_STEPS)
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"manifest 'warmup_steps' must be a non-negative integer, not {warmup!r}")
        calibration = Calibration.from_manifest(manifest.get("calibration"))
        conf = manifest.get("confidence")
        if conf is not None and not isinstance(conf, dict):
            raise ValueError(f"manifest 'confidence' must be an object, not {conf!r}")
        reference = _positive(conf, "spread_reference") if conf and "spread_reference" in conf else None
        decision = manifest.get("decision")
        return cls(
            version=version.version,
            model=model,
            features=features,
            horizon_hours=_positive(manifest, "horizon_hours"),
            ttf_cap_hours=_positive(manifest, "ttf_cap_hours"),
            interval_minutes=_positive(manifest, "interval_minutes", 1.0),
            warmup_steps=warmup,
            calibration=calibration,
            spread_reference=reference,
            operating_point=OperatingPoint.from_manifest(decision) if decision is not None else None,
        )


class CalibratedModel(torch.nn.Module):
    """The model as explanations see it: every head's failure logit replaced by the calibrated
    ensemble logit a * logit(mean of the heads' sigmoids) + b, so that 'mean of the heads'
    sigmoids' (what explain.py attributes) is the calibrated probability a prediction reports.
    TTF outputs and state pass through."""

    def __init__(self, model: MaintenanceLSTM, calibration: Calibration) -> None:
        super().__init__()
        self.inner = model
        self.a, self.b = calibration.a, calibration.b

    def forward(self, x: torch.Tensor, state: Optional[tuple[torch.Tensor, torch.Tensor]] = None):  # type: ignore[override]
        logits, ttf, new_state = self.inner(x, state)
        p = torch.sigmoid(logits).mean(dim=-1, keepdim=True).clamp(EPS, 1.0 - EPS)
        z = self.a * (torch.log(p) - torch.log1p(-p)) + self.b
        return z.expand_as(logits), ttf, new_state


# --- per-machine state ------------------------------------------------------------------------
# Event ids are kept as UTF-8 bytes: at most 4 per character of the longest id the schema allows.
_MAX_ID_BYTES = 4 * next(m.max_length for m in SensorReading.model_fields["event_id"].metadata
                         if getattr(m, "max_length", None))
_MAX_AGE_MS = np.iinfo(np.uint32).max  # ~49.7 days: older readings in a ring show that age


class MachineStates:
    """Everything kept per machine, in arrays indexed by a slot per machine (grown by doubling).
    Axis 0 of every numpy array and axis 1 of every tensor (L, slots, H) is the slot.

    With a model, what an explanation replays: a ring of the machine's last `window` readings
    (encoded inputs in the features' compact form, UTF-8 event ids, event times as ms before
    newest_ts) holding min(steps, window) of them, the next going to position steps % window;
    and the LSTM state before the oldest of them (float16 checkpoint), stepped over each
    reading the ring evicts. The live state (h, c) stays float32 and is never read back from
    the checkpoint, so neither the window nor the checkpoint's precision changes predictions."""

    def __init__(self, capacity: int, n_rule: int, model: Optional[LoadedModel], window: int) -> None:
        self.slots: dict[str, int] = {}
        self._free: list[int] = []  # slots of dropped machines, reused before new ones
        self._next = 0
        self.capacity = max(1, capacity)
        self.window = window
        # name -> (per-slot shape, dtype, fill)
        self._spec: dict[str, tuple[tuple[int, ...], Any, Any]] = {
            "rule_last": ((n_rule,), np.float64, np.nan),  # raw, unclipped: what rules check
            "rule_fresh": ((n_rule,), np.bool_, False),  # observed in the machine's last reading (rates)
            "steps": ((), np.int64, 0),
            "cycle": ((), np.int64, -1),
            "newest_ts": ((), np.float64, -np.inf),
            "last_alert_ts": ((), np.float64, -np.inf),
            # A failure or repair reported before all its machine's earlier readings were scored
            # (outcomes travel on their own topic): the new life starts at the first reading after it.
            "renew_after_ts": ((), np.float64, np.inf),
        }
        self._tensors: dict[str, torch.dtype] = {}
        self._features: Optional[MaintenanceFeatures] = None
        self._lstm: Optional[MaintenanceLSTM] = None
        self._inputs: dict[str, str] = {}  # compact input field -> its ring array
        if model is not None:
            self._features, self._lstm = model.features, model.model
            layout = model.features.input_layout()
            self._inputs = {name: f"hist_{name}" for name in layout}
            self._spec |= {
                # encode_step's memory: last clipped values (forward fill), then any trend memory
                "last": ((model.features.memory_width,), np.float32, np.nan),
                **{self._inputs[name]: ((window, *shape), dtype, 0) for name, (shape, dtype) in layout.items()},
                "hist_age_ms": ((window,), np.uint32, 0),
                "hist_ids": ((window,), np.dtype("S1"), b""),  # widened to the longest id seen (_widen_ids)
            }
            # live state; the checkpoint before the ring's oldest reading
            self._tensors = {"h": torch.float32, "c": torch.float32, "ckpt_h": torch.float16, "ckpt_c": torch.float16}
            self._layers, self._hidden = model.model.layers, model.model.hidden
        for name, (shape, dtype, fill) in self._spec.items():
            setattr(self, name, np.full((self.capacity, *shape), fill, dtype=dtype))
        for name, kind in self._tensors.items():
            setattr(self, name, torch.zeros(self._layers, self.capacity, self._hidden, dtype=kind))

    def add(self, machine_id: str) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot, self._next = self._next, self._next + 1
            if slot == self.capacity:
                self._grow()
        self.slots[machine_id] = slot
        return slot

    def drop(self, machine_ids: Iterable[str]) -> None:
        """Forget machines (their partition moved to another worker); their slots are reused."""
        slots = [self.slots.pop(m) for m in machine_ids if m in self.slots]
        if slots:
            index = np.array(slots, dtype=np.int64)
            self.reset(index)
            self.newest_ts[index] = -np.inf
            self._free.extend(slots)

    def export(self, slot: int) -> dict[str, np.ndarray]:
        """One machine's state as arrays (copies)."""
        out = {name: np.array(getattr(self, name)[slot]) for name in self._spec}
        for name in self._tensors:
            out[name] = getattr(self, name)[:, slot].numpy().copy()
        return out

    def restore(self, machine_id: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Load what export() gave, into the machine's slot (added if new). Raises ValueError,
        leaving the machine as it was, when the arrays do not fit this state's layout (another
        model, window or state version)."""
        if "renew_after_ts" not in arrays:  # a snapshot from before outcomes could be pending
            arrays = {**arrays, "renew_after_ts": np.array(np.inf)}
        expected = set(self._spec) | set(self._tensors)
        if set(arrays) != expected:
            raise ValueError(f"state fields {sorted(set(arrays) ^ expected)} do not match this model")
        for name, (shape, dtype, _) in self._spec.items():
            if arrays[name].shape != shape or arrays[name].dtype.kind != np.dtype(dtype).kind:
                raise ValueError(f"state field {name} is {arrays[name].dtype}{arrays[name].shape}, "
                                 f"expected {np.dtype(dtype).kind}{shape}")
        for name in self._tensors:
            if arrays[name].shape != (self._layers, self._hidden):
                raise ValueError(f"state field {name} has shape {arrays[name].shape}")
        if "hist_ids" in arrays:
            width = arrays["hist_ids"].dtype.itemsize
            if width > _MAX_ID_BYTES:
                raise ValueError(f"state field hist_ids is {width} bytes wide, at most {_MAX_ID_BYTES} expected")
            if width > self.hist_ids.itemsize:
                self._widen_ids(width)
        slot = self.slots.get(machine_id)
        if slot is None:
            slot = self.add(machine_id)
        for name in self._spec:
            getattr(self, name)[slot] = arrays[name]
        for name in self._tensors:
            getattr(self, name)[:, slot] = torch.from_numpy(arrays[name])

    def _grow(self) -> None:
        old, self.capacity = self.capacity, 2 * self.capacity
        for name, (shape, dtype, fill) in self._spec.items():
            grown = np.full((self.capacity, *shape), fill, dtype=dtype)
            grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        for name, kind in self._tensors.items():
            grown_t = torch.zeros(self._layers, self.capacity, self._hidden, dtype=kind)
            grown_t[:, :old] = getattr(self, name)
            setattr(self, name, grown_t)

    def _widen_ids(self, width: int) -> None:
        shape, _, fill = self._spec["hist_ids"]
        self._spec["hist_ids"] = (shape, np.dtype(f"S{width}"), fill)
        self.hist_ids = self.hist_ids.astype(self._spec["hist_ids"][1])

    def reset(self, slots: np.ndarray) -> None:
        """A new life: everything but the newest event time (late readings stay late)."""
        for name, (_, _, fill) in self._spec.items():
            if name != "newest_ts":
                getattr(self, name)[slots] = fill
        index = torch.from_numpy(slots)
        for name in self._tensors:
            getattr(self, name).index_fill_(1, index, 0.0)

    def push_history(self, slots: np.ndarray, x: np.ndarray, ids: np.ndarray, ts: np.ndarray) -> None:
        """Put each machine's newest reading (encoded inputs x (n, F), event ids, epoch s) in its
        ring. Call before steps and newest_ts count these readings: they say where the ring is."""
        assert self._features is not None
        n, steps = len(slots), self.steps[slots]
        pos = steps % self.window
        full = np.flatnonzero(steps >= self.window)
        if full.size:
            self._advance_checkpoint(slots[full], pos[full])
        for name, values in self._features.compact_inputs(x).items():
            getattr(self, self._inputs[name])[slots, pos] = values
        # Ages count from newest_ts, which moves on to these readings: whole ms, so that moving
        # them is exact (a machine's first reading has no newest_ts: its ring is empty anyway).
        previous = self.newest_ts[slots]
        shift = np.rint(ts * 1000) - np.rint(np.where(np.isfinite(previous), previous, ts) * 1000)
        ages = self.hist_age_ms[slots] + shift.astype(np.int64)[:, None]
        ages[np.arange(n), pos] = 0
        self.hist_age_ms[slots] = np.minimum(ages, _MAX_AGE_MS)
        encoded = [i.encode() for i in ids]
        longest = max(map(len, encoded), default=0)
        if longest > self.hist_ids.itemsize:
            self._widen_ids(min(longest, _MAX_ID_BYTES))
        self.hist_ids[slots, pos] = encoded

    def _advance_checkpoint(self, slots: np.ndarray, pos: np.ndarray) -> None:
        """Step the machines' checkpoints over the inputs at `pos` of their rings (about to be
        evicted): one batched LSTM step, in float32, stored back as float16."""
        assert self._lstm is not None
        evicted = self._ring_inputs(slots, pos)
        index = torch.from_numpy(slots)
        state = (self.ckpt_h.index_select(1, index).float(), self.ckpt_c.index_select(1, index).float())
        _, _, (h, c) = self._lstm(torch.from_numpy(evicted).unsqueeze(1), state)
        self.ckpt_h.index_copy_(1, index, h.half())
        self.ckpt_c.index_copy_(1, index, c.half())

    def _ring_inputs(self, slots: int | np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Encoded inputs (..., F) float32 at ring positions `pos` of `slots`."""
        assert self._features is not None
        return self._features.expand_inputs({name: getattr(self, ring)[slots, pos]
                                             for name, ring in self._inputs.items()})

    def history(self, slot: int) -> tuple[np.ndarray, list[str], np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
        """The ring's readings, oldest first: (inputs (T, F) float32, event ids, event times
        (epoch s, whole ms), LSTM state (L, 1, H) float32 before the first input)."""
        steps = int(self.steps[slot])
        order = np.arange(max(steps - self.window, 0), steps) % self.window
        inputs = self._ring_inputs(slot, order)
        ids = [i.decode("utf-8", "replace") for i in self.hist_ids[slot, order].tolist()]
        times = (np.rint(self.newest_ts[slot] * 1000) - self.hist_age_ms[slot, order]) / 1000
        state = (self.ckpt_h[:, slot : slot + 1].float(), self.ckpt_c[:, slot : slot + 1].float())
        return inputs, ids, times, state

    def nbytes(self) -> int:
        """Bytes held for all slots (arrays and tensors at their allocated capacity), plus the
        slot dict with its machine-id strings and the free-slot list."""
        total = sum(getattr(self, name).nbytes for name in self._spec)
        total += sum(getattr(self, name).numel() * getattr(self, name).element_size() for name in self._tensors)
        return total + sys.getsizeof(self.slots) + sum(map(sys.getsizeof, self.slots)) + sys.getsizeof(self._free)


# --- per-batch working arrays -----------------------------------------------------------------
class _Batch:
    def __init__(self, readings: Sequence[SensorReading], n_cols: int, n_sensors: int, n_rule: int) -> None:
        n = len(readings)
        self.readings = readings
        self.slots = np.empty(n, dtype=np.int64)
        self.round = np.empty(n, dtype=np.int64)
        self.ts = np.empty(n, dtype=np.float64)
        self.cycles = np.full(n, -1, dtype=np.int64)
        self.raw = np.full((n, n_cols), np.nan, dtype=np.float64)
        self.event_ids = np.empty(n, dtype=object)
        self.unknown: list[list[str]] = [_NO_NAMES] * n
        self.types: list[Optional[str]] = [None] * n
        self.modes: list[Optional[str]] = [None] * n
        # results
        self.late = np.zeros(n, dtype=bool)
        self.steps = np.zeros(n, dtype=np.int64)
        self.p = np.zeros(n, dtype=np.float64)
        self.conf = np.zeros(n, dtype=np.float64)
        self.agreement = np.ones(n)
        self.decisiveness = np.ones(n)
        self.spread_ratio = np.full(n, np.nan)
        self.quality = np.ones(n)
        self.warm_up = np.ones(n)
        self.spread = np.zeros(n)
        self.ttf = np.full((n, 3), np.nan)  # mean, low, high (hours)
        self.imputed = np.zeros((n, n_sensors), dtype=bool)
        self.clipped = np.zeros((n, n_sensors), dtype=bool)
        self.rule_values = np.full((n, n_rule), np.nan)
        self.rule_previous = np.full((n, n_rule), np.nan)  # the previous reading's values, for rates
        self.rule_hours = np.full(n, np.nan)  # hours since the machine's previous reading
        self.competence = np.zeros(n)
        self.familiarity = np.ones(n)
        self.exceedance = np.zeros(n)
        self.model_decides = np.zeros(n, dtype=bool)
        self.alert = np.zeros(n, dtype=bool)
        self.suppressed = np.zeros(n, dtype=bool)
        self.prior_alert_ts = np.full(n, -np.inf)
        self.explanations: dict[int, Explanation] = {}
        self.replays: dict[int, ReplayedAlert] = {}  # model alerts to explain, by reading
        self.explain = True


class MaintenanceScorer:
    def __init__(
        self,
        settings: MaintenanceSettings,
        model: Optional[LoadedModel],
        rules: Optional[RuleSet] = None,
        unavailable_reason: str = "model unavailable",
        initial_capacity: int = 1024,
        explain: bool = True,
    ) -> None:
        """explain=False skips the explanations of model alerts (integrated gradients: most of the
        scoring time when alerts are frequent); decisions are the same. For offline evaluation:
        a model alert then says its explanation was not computed."""
        self.settings = settings
        self._model = model
        self._explain = explain
        self._explained_model: Optional[torch.nn.Module] = None
        if model is not None:
            cal = model.calibration
            self._explained_model = model.model if cal.identity else CalibratedModel(model.model, cal).eval()
        self.rules = rules if rules is not None else RuleSet.with_overrides(None)
        self.model_version: Optional[str] = model.version if model else None
        # The operating point the served version was trained with (None: the older policy) and
        # the threshold it gives for these settings.
        self._policy: Optional[OperatingPoint] = model.operating_point if model else None
        self.threshold = self._policy.threshold_for(settings) if self._policy else settings.alert_probability
        self._unavailable = unavailable_reason
        self._lock = threading.Lock()
        # Reading columns: the model's sensors first, then rule-only sensors.
        model_sensors = model.features.sensors if model else []
        self._n_sensors = len(model_sensors)
        names = list(model_sensors) + [s for s in self.rules.sensors if s not in set(model_sensors)]
        self._columns = {name: j for j, name in enumerate(names)}
        self._rule_cols = np.array([self._columns[s] for s in self.rules.sensors], dtype=np.int64)
        # Which columns count as known for `unknown_sensors`: the model's, or without a model the rules'.
        self._known_cols = self._n_sensors if model else len(names)
        self._sensor_names = np.array(model_sensors, dtype=object)
        self._state = MachineStates(initial_capacity, len(self.rules.sensors), model, settings.explain_window)
        self.budget = EntityBudget("maintenance", settings.max_machines, settings.machine_idle_s)

    # --- loading ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, registry: ModelRegistry, settings: MaintenanceSettings, initial_capacity: int = 1024
    ) -> "MaintenanceScorer":
        """The registry's current maintenance model; rules only (with a warning) if there is
        none or it cannot be used. Never raises for a model problem."""
        where = registry.root / MODEL_NAME
        try:
            version = registry.current(MODEL_NAME)
        except Exception as exc:  # bad JSON, CURRENT naming a missing version, unreadable files
            return cls._rules_only(settings, None, f"model unavailable: cannot read {where}: {exc}", initial_capacity)
        if version is None:
            reason = f"model unavailable: no trained model in {registry.root}"
            return cls._rules_only(settings, None, reason, initial_capacity)
        rules = cls._manifest_rules(version)
        try:
            loaded = LoadedModel.from_version(version)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            reason = f"model unavailable: {MODEL_NAME} {version.version} cannot be used ({why})"
            return cls._rules_only(settings, rules, reason, initial_capacity)
        log.info("maintenance scorer serves %s %s from %s", MODEL_NAME, loaded.version, version.path)
        return cls(settings, loaded, rules, initial_capacity=initial_capacity)

    @classmethod
    def from_version(
        cls, version: ModelVersion, settings: MaintenanceSettings, initial_capacity: int = 1024, explain: bool = True
    ) -> "MaintenanceScorer":
        """A given registry version (e.g. one just trained, not yet promoted). Unlike load(), a
        model that cannot be used raises: whoever names a version wants that model."""
        rules = cls._manifest_rules(version)
        loaded = LoadedModel.from_version(version)
        return cls(settings, loaded, rules, initial_capacity=initial_capacity, explain=explain)

    def successor(self, version: ModelVersion) -> "MaintenanceScorer":
        """The scorer that takes over from this one with `version` (a promotion, a rollback):
        a fresh one, since machine states are the model's own (a taken-over shadow keeps its).
        Raises when the version cannot be used."""
        return type(self).from_version(version, self.settings, max(self._state.capacity, 1))

    def beside_version(self, version: ModelVersion) -> "MaintenanceScorer":
        """A candidate `version` to score beside this one, with machine states of its own."""
        return type(self).from_version(version, self.settings, max(self._state.capacity, 1))

    @classmethod
    def _rules_only(
        cls, settings: MaintenanceSettings, rules: Optional[RuleSet], reason: str, capacity: int
    ) -> "MaintenanceScorer":
        log.warning("maintenance scorer runs on physical-limit rules only: %s", reason)
        return cls(settings, None, rules, unavailable_reason=reason, initial_capacity=capacity)

    def rules_only(self, reason: str) -> "MaintenanceScorer":
        """A scorer on this one's rules without the model: what a stream falls back to when the
        model fails at inference. `reason` is said on every prediction it makes."""
        return self._rules_only(self.settings, self.rules, reason, max(self._state.capacity, 1))

    @staticmethod
    def _manifest_rules(version: ModelVersion) -> RuleSet:
        manifest = version.manifest
        try:
            return RuleSet.with_overrides(manifest.get("rule_limits"), manifest.get("rule_rates"),
                                          manifest.get("rule_rate_max_gap_hours"))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring rule_limits of %s %s (%s); using the default limits",
                        MODEL_NAME, version.version, exc)
            return RuleSet.with_overrides(None)

    # --- public -------------------------------------------------------------------------------
    def state_bytes(self) -> int:
        return self._state.nbytes()

    @property
    def machines(self) -> int:
        return len(self._state.slots)

    def alert_lead_hours(self, machine_id: str, at: datetime) -> Optional[float]:
        """Hours from the machine's last alert in this life to `at` (a failure's time), or None
        when it had no alert: the live-accuracy join of outcomes back to alerts."""
        with self._lock:
            slot = self._state.slots.get(machine_id)
            if slot is None or not np.isfinite(self._state.last_alert_ts[slot]):
                return None
            return (at.timestamp() - float(self._state.last_alert_ts[slot])) / 3600.0

    @property
    def horizon_hours(self) -> float:
        return self._model.horizon_hours if self._model else 24.0

    def reset_machine(self, machine_id: str, as_of: Optional[datetime] = None) -> bool:
        """Start a machine's new life (call on a failure or repair outcome; training starts one
        there too): LSTM state, last values, warm-up, history and cooldown.

        With `as_of` (the outcome's time) the new life starts at the machine's first reading
        after that time, so readings from before the failure that arrive after its report are
        still scored in the life they belong to. Nothing happens when the machine already has
        readings after it: the outcome arrived late, and the new life began already (its `cycle`
        restart reset it). Of two outcomes pending at once, the earlier starts the new life.
        Returns whether the machine was (or will be) reset."""
        with self._lock:
            st = self._state
            slot = st.slots.get(machine_id)
            if slot is None:
                return False
            if as_of is None:
                st.reset(np.array([slot], dtype=np.int64))
                return True
            at = as_of.timestamp()
            if st.newest_ts[slot] > at:
                return False
            st.renew_after_ts[slot] = min(float(st.renew_after_ts[slot]), at)
            return True

    # --- state hand-over between workers -------------------------------------------------------
    def export_machines(self, machine_ids: Iterable[str]) -> dict[str, dict[str, np.ndarray]]:
        """The state of these machines (unknown ones skipped), for a snapshot."""
        with self._lock:
            slots = self._state.slots
            return {m: self._state.export(slots[m]) for m in machine_ids if m in slots}

    def import_machines(self, states: Mapping[str, Mapping[str, np.ndarray]]) -> int:
        """Load snapshot states (taken with this model version); returns how many loaded. A
        state that does not fit is skipped with a warning: that machine warms up again."""
        loaded = 0
        with self._lock:
            st = self._state
            # oldest first, so that the budget keeps the most recently seen
            for machine_id, arrays in sorted(states.items(), key=lambda kv: float(np.asarray(kv[1].get("newest_ts", -np.inf)))):
                try:
                    st.restore(machine_id, arrays)
                    loaded += 1
                except (ValueError, KeyError) as exc:
                    log.warning("maintenance state of %s not restored: %s", machine_id, exc)
                    continue
                self.budget.touch(machine_id, float(st.newest_ts[st.slots[machine_id]]))
            self._evict()
        return loaded

    def forget(self, machine_ids: Iterable[str]) -> int:
        """Drop these machines' state (their partition moved to another worker, or the budget
        evicted them); returns how many were known. One that reports again warms up anew."""
        with self._lock:
            return self._forget(list(machine_ids))

    def _forget(self, machine_ids: list[str]) -> int:
        known = sum(1 for m in machine_ids if m in self._state.slots)
        self._state.drop(machine_ids)
        self.budget.discard(machine_ids)
        return known

    def _evict(self) -> None:
        """Hold the state budget: forget the least recently seen and the idle machines."""
        due = self.budget.due()
        if due:
            self._state.drop(due)

    @property
    def entities(self) -> int:
        return len(self._state.slots)

    def knows(self, machine_id: str) -> bool:
        return machine_id in self._state.slots

    def entity_of(self, reading: SensorReading) -> str:
        return reading.machine_id

    def learn(self, outcomes: Sequence[MaintenanceOutcome]) -> list[Optional[str]]:
        """Ground truth: a failure is joined to the machine's last alert ('alerted' when one
        came within the horizon before it, else 'missed', also for a machine this scorer has no
        state of); a failure or repair then starts the machine's new life. A repair gives
        'reset', or None when the machine is unknown here or its new life began already."""
        out: list[Optional[str]] = []
        for o in outcomes:
            joined: Optional[str] = None
            if o.outcome == "failure":
                lead = self.alert_lead_hours(o.machine_id, o.ts)
                joined = "alerted" if lead is not None and 0.0 <= lead <= self.horizon_hours else "missed"
            if self.reset_machine(o.machine_id, o.ts) and joined is None:
                joined = "reset"
            out.append(joined)
        return out

    def score_batch(self, readings: Sequence[SensorReading], explain: bool = True) -> list[ScoredReading]:
        """One result per reading, in input order. `explain=False` (replaying readings whose
        outputs were published before) advances state without building explanations."""
        if not readings:
            return []
        with self._lock, torch.no_grad():
            batch = self._prepare(readings)
            batch.explain = explain and self._explain
            n_rounds = int(batch.round.max()) + 1
            for k in range(n_rounds):
                self._round(batch, np.flatnonzero(batch.round == k) if n_rounds > 1 else np.arange(len(readings)))
            self._explain_models(batch)
            results = self._results(batch)
            self._evict()
            return results

    # --- batch steps --------------------------------------------------------------------------
    def _prepare(self, readings: Sequence[SensorReading]) -> _Batch:
        """The only per-reading Python work before the model: slots, rounds, raw value rows."""
        b = _Batch(readings, len(self._columns), self._n_sensors, len(self.rules.sensors))
        state, columns, known = self._state, self._columns, self._known_cols
        slot_of, seen, touch = state.slots.get, {}, self.budget.touch
        raw = b.raw
        for i, r in enumerate(readings):
            slot = slot_of(r.machine_id)
            if slot is None:
                slot = state.add(r.machine_id)
            k = seen.get(slot, 0)
            seen[slot] = k + 1
            b.round[i] = k
            b.slots[i] = slot
            b.ts[i] = ts = r.ts.timestamp()
            touch(r.machine_id, ts)  # the budget's recency; evictions wait until the batch is scored
            b.event_ids[i] = r.event_id
            if r.cycle is not None:
                b.cycles[i] = r.cycle
            b.types[i], b.modes[i] = r.machine_type, r.operating_mode
            unknown = None
            for name, value in r.sensors.items():
                j = columns.get(name)
                if j is None or j >= known:
                    unknown = [name] if unknown is None else unknown + [name]
                if j is not None and value is not None:
                    raw[i, j] = value
            if unknown:
                b.unknown[i] = unknown
        return b

    def _round(self, b: _Batch, idx: np.ndarray) -> None:
        """Score readings `idx` (at most one per machine) and advance their machines' state."""
        st = self._state
        slots, ts, cycles = b.slots[idx], b.ts[idx], b.cycles[idx]
        late = ts < st.newest_ts[slots]
        commit = ~late
        repaired = commit & (cycles >= 0) & (st.cycle[slots] >= 0) & (cycles < st.cycle[slots])
        renewed = repaired | (commit & (ts > st.renew_after_ts[slots]))
        if renewed.any():
            st.reset(slots[renewed])  # clears renew_after_ts too
        raw = b.raw[idx]
        rule_raw = raw[:, self._rule_cols]
        observed = ~np.isnan(rule_raw)
        rule_values = np.where(observed, rule_raw, st.rule_last[slots])
        steps = st.steps[slots] + 1
        b.late[idx], b.steps[idx], b.rule_values[idx] = late, steps, rule_values
        if self.rules.has_rates:  # a rate needs the sensor in this reading and the one before
            # (a repaired machine's rule_fresh was reset above: no rate across lives)
            b.rule_previous[idx] = np.where(st.rule_fresh[slots] & observed, st.rule_last[slots], np.nan)
            b.rule_hours[idx] = (ts - st.newest_ts[slots]) / 3600.0

        x = self._model_step(b, idx, slots, raw, commit) if self._model else None

        cs = slots[commit]
        st.rule_last[cs] = rule_values[commit]
        st.rule_fresh[cs] = observed[commit]
        st.steps[cs] = steps[commit]
        st.cycle[cs] = np.where(cycles[commit] >= 0, cycles[commit], st.cycle[cs])
        st.newest_ts[cs] = ts[commit]
        self._decide(b, idx, slots, ts, x)

    def _model_step(
        self, b: _Batch, idx: np.ndarray, slots: np.ndarray, raw: np.ndarray, commit: np.ndarray
    ) -> np.ndarray:
        """One batched LSTM step; fills probabilities, TTF and confidence; returns inputs (n, F)."""
        m, st = self._model, self._state
        assert m is not None
        names_t, names_m = [b.types[i] for i in idx], [b.modes[i] for i in idx]
        types, modes = m.features.category_indices(names_t, names_m)
        x, new_last, imputed, clipped = m.features.encode_step(raw[:, : self._n_sensors], st.last[slots], types, modes)
        slot_t = torch.from_numpy(slots)
        state = (st.h.index_select(1, slot_t), st.c.index_select(1, slot_t))
        logits, ttf, (h1, c1) = m.model(torch.from_numpy(x).unsqueeze(1), state)

        if not commit.all():
            keep = torch.from_numpy(np.flatnonzero(commit))
            slot_t, h1, c1 = slot_t.index_select(0, keep), h1.index_select(1, keep), c1.index_select(1, keep)
        st.h.index_copy_(1, slot_t, h1)
        st.c.index_copy_(1, slot_t, c1)
        st.last[slots[commit]] = new_last[commit]
        st.push_history(slots[commit], x[commit], b.event_ids[idx][commit], b.ts[idx][commit])

        raw_heads = torch.sigmoid(logits[:, 0]).numpy().astype(np.float64)
        frac = ttf[:, 0].numpy().astype(np.float64)
        mean, spread = frac.mean(axis=1), frac.std(axis=1)
        cap = m.ttf_cap_hours
        b.ttf[idx] = np.stack([mean, np.clip(mean - 2 * spread, 0, 1), np.clip(mean + 2 * spread, 0, 1)], axis=1) * cap
        cal = m.calibration
        p = cal.ensemble(raw_heads)
        b.p[idx] = p
        b.imputed[idx], b.clipped[idx] = imputed, clipped
        unseen = m.features.unseen_categories(names_t, names_m) if self._policy else None
        parts: Confidence = confidence(
            cal.heads(raw_heads), imputed, clipped, b.steps[idx], m.warmup_steps,
            probability=p, threshold=self.threshold, spread_reference=m.spread_reference, unseen=unseen,
        )
        b.conf[idx] = parts.total
        b.competence[idx] = parts.competence
        if parts.familiarity is not None:
            b.familiarity[idx] = parts.familiarity
        b.agreement[idx], b.quality[idx] = parts.agreement, parts.data_quality
        b.warm_up[idx], b.spread[idx] = parts.warm_up, parts.spread
        b.decisiveness[idx], b.spread_ratio[idx] = parts.decisiveness, parts.spread_ratio
        return x

    def _decide(self, b: _Batch, idx: np.ndarray, slots: np.ndarray, ts: np.ndarray, x: Optional[np.ndarray]) -> None:
        s, st = self.settings, self._state
        exceed = self.rules.exceedance(b.rule_values[idx], b.rule_previous[idx], b.rule_hours[idx])
        worst = exceed.max(axis=1) if exceed.shape[1] else np.zeros(len(idx))
        b.exceedance[idx] = worst
        breached = worst > 0
        if self._model:
            # The older policy gates on the whole confidence; a stored operating point on competence.
            gate = b.competence[idx] if self._policy else b.conf[idx]
            model_decides = gate >= s.min_confidence
            want = np.where(model_decides, b.p[idx] >= self.threshold, breached)
        else:
            model_decides = np.zeros(len(idx), dtype=bool)
            want = breached
            b.p[idx] = b.conf[idx] = breached.astype(np.float64)
        prior = st.last_alert_ts[slots]
        suppressed = want & (np.abs(ts - prior) < s.alert_cooldown_s)
        alert = want & ~suppressed
        st.last_alert_ts[slots[alert]] = np.maximum(prior[alert], ts[alert])
        b.model_decides[idx], b.alert[idx] = model_decides, alert
        b.suppressed[idx], b.prior_alert_ts[idx] = suppressed, prior
        # A model explanation replays the machine's history: taken now, before a later round
        # moves that history on; the batch's alerts are explained together after the rounds.
        for pos in np.flatnonzero(alert & model_decides) if b.explain else ():
            assert x is not None
            self._replay_for(b, int(idx[pos]), x[pos])

    # --- alerts and texts ---------------------------------------------------------------------
    def _alert_context(self, r: SensorReading, p: float, conf: float, competence: float, created: datetime) -> AlertContext:
        return AlertContext(
            alert_id=deterministic_id("maintenance-alert", r.machine_id, r.event_id, self.model_version),
            machine_id=r.machine_id, event_id=r.event_id, event_ts=r.ts, model_version=self.model_version,
            probability=p, confidence=conf, decision=self._model_decision(p, conf, competence), created_at=created,
        )

    def _replay_for(self, b: _Batch, i: int, x: np.ndarray) -> None:
        r = b.readings[i]
        inputs, ids, times, state = self._state.history(int(b.slots[i]))
        if b.late[i]:  # scored from the current state without being stored: replay it last
            inputs, ids, times = np.vstack([inputs, x[None]]), ids + [r.event_id], np.append(times, b.ts[i])
        ctx = self._alert_context(r, float(b.p[i]), float(b.conf[i]), float(b.competence[i]), datetime.now(timezone.utc))
        b.replays[i] = ReplayedAlert(ctx, inputs, state, ids, times)

    def _explain_models(self, b: _Batch) -> None:
        if not b.replays:
            return
        m, model = self._model, self._explained_model
        assert m is not None and model is not None
        explained = explain_model_alerts(model, m.features, m.horizon_hours, list(b.replays.values()))
        b.explanations.update(zip(b.replays, explained))

    def _alert(self, b: _Batch, c: "_Columns", i: int, reason: str, created: datetime) -> Alert:
        r = b.readings[i]
        by_model = c.model_decides[i]
        if by_model:
            explanation = b.explanations.get(i)
            p = score = c.p[i]
            conf, severity = c.conf[i], "critical" if p >= self.settings.critical_probability else "warning"
            if explanation is None:  # explain=False (offline evaluation)
                return Alert(
                    alert_id=deterministic_id("maintenance-alert", r.machine_id, r.event_id, self.model_version),
                    kind=ALERT_KIND, entity_id=r.machine_id, event_ids=[r.event_id], severity=severity, score=score,
                    confidence=conf, decision_source="model", reason=reason, model_name=MODEL_NAME,
                    model_version=self.model_version, created_at=created, event_ts=r.ts,
                    explanation="explanation not computed (scorer built with explain=False)",
                )
        else:
            ctx = self._alert_context(r, c.p[i], c.conf[i], c.competence[i], created)
            previous, hours = b.rule_previous[i], float(b.rule_hours[i])
            why = self._why_rules(b, c, i)
            explanation = b.explanations[i] = explain_rule_alert(ctx, self.rules, b.rule_values[i], why, previous, hours)
            score, severity = c.exceedance[i], "critical" if c.exceedance[i] >= LARGE_EXCEEDANCE else "warning"
            conf = 1.0  # a breached hard physical limit is a fact, not an estimate
        return Alert(
            alert_id=explanation.alert_id, kind=ALERT_KIND, entity_id=r.machine_id, event_ids=[r.event_id],
            severity=severity, score=score, confidence=conf, decision_source="model" if by_model else "rule",
            reason=reason, model_name=MODEL_NAME, model_version=self.model_version, created_at=created,
            event_ts=r.ts, explanation=explanation.summary,
        )

    def _model_decision(self, p: float, conf: float, competence: float) -> str:
        s, thr = self.settings, self.threshold
        op = ">=" if p >= thr else "<"
        if self._policy is None:
            return f"p={p:.2f} {op} {thr:.2f} at confidence {conf:.2f} >= {s.min_confidence:.2f}"
        return (f"p={p:.3g} {op} {thr:.3g} (the alert threshold for {s.false_alert_budget:g} false alerts per "
                f"machine-day) at competence {competence:.2f} >= {s.min_confidence:.2f}")

    def _why_rules(self, b: _Batch, c: "_Columns", i: int) -> str:
        if self._model is None:
            return self._unavailable
        factors = []
        if c.familiarity[i] < 1:
            factors.append((c.familiarity[i], f"unseen regime: machine type {b.types[i]!r}, operating mode "
                                              f"{b.modes[i]!r} (training had {self._known_regimes()})"))
        if c.decisiveness[i] < 1 and self._policy is None:
            thr = self.threshold
            factors.append((c.decisiveness[i], f"undecided: p={c.p[i]:.2f} {'>=' if c.p[i] >= thr else '<'} {thr:.2f} "
                                               f"is right with probability {c.decisiveness[i]:.2f}"))
        if c.warm_up[i] < 1:
            factors.append((c.warm_up[i], f"machine warming up: {c.steps[i]} of {self._model.warmup_steps} readings"))
        if c.agreement[i] < 1:
            ratio = c.spread_ratio[i]
            unusual = f", {ratio:.1f}x the validation 99th percentile" if ratio == ratio else ""  # NaN: no reference
            factors.append((c.agreement[i], f"heads disagree: spread {c.spread[i]:.3f}{unusual}"))
        if c.quality[i] < 1:
            names = [f"imputed {', '.join(self._sensor_names[b.imputed[i]])}"] if c.any_imputed[i] else []
            names += [f"clipped {', '.join(self._sensor_names[b.clipped[i]])}"] if c.any_clipped[i] else []
            factors.append((c.quality[i], "; ".join(names)))
        factors.sort(key=lambda f: f[0])
        shown = [text for value, text in factors if value < 0.99] or [text for _, text in factors[:1]]
        if self._policy is not None:
            return (f"model out of its depth: competence {c.competence[i]:.2f} < {self.settings.min_confidence:.2f} "
                    f"({'; '.join(shown)})")
        return f"confidence {c.conf[i]:.2f} < {self.settings.min_confidence:.2f} ({'; '.join(shown)})"

    def _known_regimes(self) -> str:
        assert self._model is not None
        f = self._model.features
        return f"types {', '.join(f.machine_types) or '-'}; modes {', '.join(f.operating_modes) or '-'}"

    def _reason(self, b: _Batch, c: "_Columns", i: int) -> str:
        if c.model_decides[i]:
            text = f"model decided: {self._model_decision(c.p[i], c.conf[i], c.competence[i])}"
        else:
            violations = (self.rules.violations(b.rule_values[i], b.rule_previous[i], float(b.rule_hours[i]))
                          if c.exceedance[i] > 0 else [])
            outcome = "; ".join(v.describe() for v in violations)
            outcome = f"limit breached: {outcome}" if violations else "no limit breached"
            text = f"rules decided ({self._why_rules(b, c, i)}); {outcome}"
        if c.suppressed[i]:
            hours = abs(c.ts[i] - c.prior_alert_ts[i]) / 3600
            text += (f"; alert suppressed: this machine alerted {hours:.1f} h of event time away, "
                     f"within the {self.settings.alert_cooldown_s / 3600:g} h cooldown")
        if c.late[i]:
            text += "; late reading (older than the machine's newest), scored without updating its state"
        return text

    def _results(self, b: _Batch) -> list[ScoredReading]:
        created = datetime.now(timezone.utc)
        version = self.model_version
        horizon = self._model.horizon_hours if self._model else 0.0
        # What validating each prediction refused before its fields were published as they are:
        # NaN from a broken model is a scoring failure (the stream falls back to its rules).
        if not (((b.p >= 0) & (b.p <= 1)).all() and ((b.conf >= 0) & (b.conf <= 1)).all()):
            raise ValueError("failure probability or confidence outside [0, 1] (NaN from the model?)")
        c = _Columns(b)
        ttf = b.ttf.tolist() if self._model else None
        names = self._sensor_names
        out = []
        for i, r in enumerate(b.readings):
            reason = self._reason(b, c, i)
            t = ttf[i] if ttf else (None, None, None)
            fields = {
                "schema_version": OUTPUT_SCHEMA_VERSION,
                "prediction_id": deterministic_id("maintenance-prediction", r.event_id, version),
                "event_id": r.event_id, "machine_id": r.machine_id, "event_ts": r.ts,
                "failure_probability": c.p[i], "horizon_hours": horizon,
                "time_to_failure_hours": t[0], "time_to_failure_low_hours": t[1], "time_to_failure_high_hours": t[2],
                "confidence": c.conf[i], "decision_source": "model" if c.model_decides[i] else "rule", "reason": reason,
                "alert": c.alert[i], "model_name": MODEL_NAME, "model_version": version,
                "imputed_sensors": names[b.imputed[i]].tolist() if c.any_imputed[i] else [],
                "clipped_sensors": names[b.clipped[i]].tolist() if c.any_clipped[i] else [],
                "unknown_sensors": b.unknown[i], "created_at": created, "shadow": False,
            }
            alert = self._alert(b, c, i, reason, created) if c.alert[i] else None
            out.append(ScoredReading(fields, alert, b.explanations.get(i), c.suppressed[i]))
        return out


class _Columns:
    """A batch's per-reading results as Python lists: cheap to index and format per reading."""

    p: list[float]
    conf: list[float]
    competence: list[float]
    familiarity: list[float]
    agreement: list[float]
    decisiveness: list[float]
    spread_ratio: list[float]
    quality: list[float]
    warm_up: list[float]
    spread: list[float]
    steps: list[int]
    exceedance: list[float]
    model_decides: list[bool]
    alert: list[bool]
    suppressed: list[bool]
    late: list[bool]
    ts: list[float]
    prior_alert_ts: list[float]

    def __init__(self, b: _Batch) -> None:
        for name in _Columns.__annotations__:
            setattr(self, name, getattr(b, name).tolist())
        self.any_imputed: list[bool] = b.imputed.any(axis=1).tolist()
        self.any_clipped: list[bool] = b.clipped.any(axis=1).tolist()
