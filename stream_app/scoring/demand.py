"""Demand scorer: sales events -> daily totals per SKU x market -> at each day's close a 30-day
forecast per series, interval and forecast-shift alerts with explanations, and the live accuracy
of earlier forecasts. No Kafka here: the agent (agents/demand.py) feeds it events, each with
the event-time clock it belongs to, and publishes what it returns.

Clocks
    Days close on evidence that they are over: when the newest event time of the sales that
    share a clock passes a day's end plus the allowed lateness, every series of that clock gets
    its forecast, whether it sold that day or not. The agent gives the input partition as the
    clock, because a partition is what Kafka keeps in order; the scorer knows only a number.

State (why not Faust windowed tables)
    Daily totals, the duplicate check, the watermark and the recent forecasts live here, per
    clock, in memory (stream_app.scoring.demand_aggregation), and are rebuilt on assignment by
    replaying the partition's retained sales (the input topic is the changelog;
    agents/demand.py). At most DEMAND__MAX_SERIES series are kept (least recently sold
    forgotten first, and any without a sale for DEMAND__SERIES_IDLE_S); a forgotten series that
    sells again starts with an empty history. The issue asked for Faust windowed tables; faust-streaming 0.15.3 makes
    them unsound for this:
    * windows expire against wall-clock time (`Collection._del_old_keys` compares window ends
      with time.time()), so event-time history older than the expiry, as replays, backfills and
      the simulator have, is deleted at the first cleanup, and `on_window_close` fires from that
      timer, outside the batch whose offsets are acknowledged: a crash between expiry (written
      to the changelog) and publishing loses the day's forecasts for good;
    * a table write takes its changelog partition from `current_event()`, one event per
      `take_events` batch, so a batch mixing partitions files state under the wrong partition
      (per-event iteration avoids it at ~3-4x the cost per event);
    * each update is a changelog write (one per sale, twice with a dedup table), and recovery
      on the embedded broker misses the tail of the last changelog batch (DESIGN.md section 4).
    Here a day's forecasts are published within the batch that closed it, before its offsets are
    acknowledged (at-least-once, deterministic ids), and the replay rebuilds the same state on
    Apache Kafka and on the embedded broker alike, as long as the topic retains the history
    window (history + correction days; set retention.ms on `sales-events` accordingly).

Decisions, per series and closed day
    With a usable model, enough history (>= min_history_days) and confidence >= min_confidence
    (stream_app.scoring.demand_model) the model's quantiles are published; otherwise the rule
    fallback (seasonal naive or moving average, whichever won on validation when trained; moving
    average without a model) forecasts, and the reason says which and why.

Markets
    A sale for a market that is neither the model's, nor in the calendar, nor in
    settings.demand.markets is rejected with code `unknown_market` (a typo must not start a
    phantom series; a real new market is added to DEMAND__MARKETS or the calendar). Without a
    model, a calendar or that list there is nothing to check against and every market is
    accepted. With DEMAND__ACCEPT_UNKNOWN_MARKETS=true all are accepted; a market the model has
    not seen is then forecast with the model's "unknown market" embedding at a lower confidence.

Alerts (kinds; at most one per series and kind per alert_cooldown_days of event time)
    demand.stockout_risk / demand.overstock_risk   the closed day's units (against the forecast
        made the day before) or the last 7 days' units (against the 7-day total forecast a week
        before) are above P90 / below P10 by more than alert_margin x the interval's width and
        by at least alert_min_units; critical beyond twice the width
    demand.forecast_shift   the P50 total of the next 29 days moved by more than shift_threshold
        of the previous day's forecast of the same days (and by shift_min_units); critical when
        it doubles or halves

Shadow (a candidate version; agents/demand.py follows the registry's CANDIDATE pointer)
    `beside(model)` makes a second scorer that holds no daily totals of its own: at every day
    this scorer closes, it forecasts the same series from the same histories and calendar,
    into its own forecast memory, and its forecasts ride on the event's result (`shadow`), to
    be published tagged, never as forecasts or alerts (the kinds it would have alerted are
    counted). When that day is realised, each version's forecasts of it are checked (`live`),
    on the points both versions forecast. `adopt` promotes it in place, warm.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Optional, Sequence

import numpy as np

from schemas.outputs import Alert, Explanation, RuleCheck, deterministic_id
from schemas.sales import CalendarEntry, DemandForecast, ForecastDay, ForecastTotal, SalesEvent
from stream_app.features.demand import HISTORY_DAYS, HORIZON_DAYS, CalendarIndex, day_date, encode
from stream_app.models.demand_transformer import TOTAL_WINDOWS
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.scoring import demand_fallback as fallback
from stream_app.state_budget import EntityBudget
from stream_app.scoring.demand_aggregation import DAY_S, ClosedDay, PartitionDays
from stream_app.scoring.demand_explain import ForecastReasons, explain_model, explain_rule
from stream_app.scoring.demand_model import LoadedDemandModel, confidence
from stream_app.settings import DemandSettings

log = logging.getLogger(__name__)

MODEL_NAME = "demand"
UNKNOWN_MARKET = "unknown_market"
TOO_OLD = "sales_event_too_old"
STOCKOUT, OVERSTOCK, SHIFT = "demand.stockout_risk", "demand.overstock_risk", "demand.forecast_shift"
ALERT_KINDS = (STOCKOUT, OVERSTOCK, SHIFT)
_MEMORY = 31  # forecasts kept per series: origins day-30 .. day


@dataclass(slots=True)
class Rejection:
    code: str
    message: str


@dataclass
class ForecastResult:
    forecast: DemandForecast
    alerts: list[Alert] = field(default_factory=list)
    explanations: list[Explanation] = field(default_factory=list)
    # A shadow's forecast: the alert kinds it would have raised (it never raises any).
    would_alert: list[str] = field(default_factory=list)


@dataclass
class Accuracy:
    """Earlier forecasts checked against one closed day, per horizon day (index h-1)."""

    forecasts: np.ndarray  # (H,) how many
    covered: np.ndarray  # (H,) P10 <= units <= P90
    abs_error: np.ndarray  # (H,) sum |units - P50|
    pinball: np.ndarray  # (H,) sum of the three quantiles' pinball losses
    units: np.ndarray  # (H,) realised units
    version: Optional[str] = None  # in `EventResult.live`: the version that made these forecasts


@dataclass
class EventResult:
    """One per input event, in input order; a day's forecasts ride on the event that closed it."""

    event_id: str
    outcome: str  # counted | corrected | duplicate | too_old | unknown_market
    rejection: Optional[Rejection] = None
    forecasts: list[ForecastResult] = field(default_factory=list)
    accuracy: list[Accuracy] = field(default_factory=list)
    failed_days: list[date] = field(default_factory=list)  # closed without forecasts: forecasting raised
    # Live accuracy per version, for the promotion gate: only the forecasts the version itself
    # made (not those of a version served before it), and, while a candidate runs, only the
    # points both versions forecast, so both are measured on the same (series, origin, horizon).
    live: list[Accuracy] = field(default_factory=list)
    # The candidate's forecasts of the same closed days, on the same histories (never published
    # as forecasts or alerts: the agent sends them to the shadow topic).
    shadow: Optional["EventResult"] = None


class ForecastMemory:
    """The last _MEMORY forecasts of every series of a partition (slot-indexed, grown with it)."""

    def __init__(self, horizon: int, capacity: int = 64) -> None:
        self.horizon = horizon
        self.capacity = 0
        self._spec = {
            "daily": ((_MEMORY, horizon, 3), np.float32, 0.0),
            "totals": ((_MEMORY, len(TOTAL_WINDOWS), 3), np.float32, 0.0),
            "origin": ((_MEMORY,), np.int64, -1),
            "conf": ((_MEMORY,), np.float32, 0.0),
            "by_model": ((_MEMORY,), bool, False),
            "generation": ((_MEMORY,), np.int64, -1),  # the scorer's model generation that made it
            "last_alert": ((len(ALERT_KINDS),), np.int64, -(10**9)),
        }
        self.ensure(capacity)

    def ensure(self, n: int) -> None:
        if n <= self.capacity:
            return
        new = max(n, 2 * self.capacity, 64)
        for name, (shape, dtype, fill) in self._spec.items():
            grown = np.full((new, *shape), fill, dtype=dtype)
            if self.capacity:
                grown[: self.capacity] = getattr(self, name)
            setattr(self, name, grown)
        self.capacity = new

    def clear(self, slots: Sequence[int]) -> None:
        """Forget what these slots held (their series were dropped; a new one will take them)."""
        index = np.asarray([i for i in slots if i < self.capacity], dtype=np.int64)
        for name, (_, _, fill) in self._spec.items():
            getattr(self, name)[index] = fill

    def store(self, slots: np.ndarray, day: int, daily: np.ndarray, totals: np.ndarray, conf: np.ndarray, by_model: np.ndarray,
              generation: int = 0) -> None:
        i = day % _MEMORY
        self.daily[slots, i], self.totals[slots, i], self.origin[slots, i] = daily, totals, day
        self.conf[slots, i], self.by_model[slots, i], self.generation[slots, i] = conf, by_model, generation

    def made(self, slots: np.ndarray, origin: int) -> np.ndarray:
        return self.origin[slots, origin % _MEMORY] == origin

    def checkable(self, slots: np.ndarray, day: int, generation: Optional[int] = None) -> np.ndarray:
        """(n, H): whether the forecast made h days before `day` (index h-1) is held (and, given
        a generation, was made by it)."""
        origins = day - np.arange(1, self.horizon + 1)
        idx = origins % _MEMORY
        held = self.origin[slots][:, idx] == origins[None, :]
        if generation is not None:
            held &= self.generation[slots][:, idx] == generation
        return held

    def accuracy(self, slots: np.ndarray, day: int, units: np.ndarray, mask: Optional[np.ndarray] = None) -> Accuracy:
        """The held forecasts of `day` checked against its realised units (only those in
        `mask` (n, H), when given)."""
        h = np.arange(1, self.horizon + 1)
        origins = day - h
        idx = origins % _MEMORY
        valid = self.origin[slots][:, idx] == origins[None, :]
        if mask is not None:
            valid &= mask
        q = self.daily[slots[:, None], idx[None, :], (h - 1)[None, :]].astype(np.float64)  # (n, H, 3)
        y = units[:, None]
        diff = y[..., None] - q
        loss = np.maximum(np.array([0.1, 0.5, 0.9]) * diff, (np.array([0.1, 0.5, 0.9]) - 1) * diff).sum(axis=-1)
        return Accuracy(
            forecasts=valid.sum(axis=0),
            covered=(valid & (q[..., 0] <= y) & (y <= q[..., 2])).sum(axis=0),
            abs_error=np.where(valid, np.abs(y - q[..., 1]), 0.0).sum(axis=0),
            pinball=np.where(valid, loss, 0.0).sum(axis=0),
            units=np.where(valid, y, 0.0).sum(axis=0),
        )


@dataclass
class _Partition:
    days: PartitionDays
    memory: ForecastMemory


@dataclass
class _Check:
    """One alert decision for a series of a closed day."""

    row: int  # index into the closed day's series
    kind: str
    basis: str
    value: float
    low: float
    high: float
    score: float
    first_day: int
    rule: RuleCheck
    text: str


class DemandScorer:
    def __init__(self, settings: DemandSettings, model: Optional[LoadedDemandModel] = None, unavailable_reason: str = "") -> None:
        self.settings = settings
        self._model = model
        self.unavailable_reason = unavailable_reason
        self.history_days = model.features.history_days if model else HISTORY_DAYS
        self.horizon = model.features.horizon_days if model else HORIZON_DAYS
        self.fallback_method = model.fallback_method if model else "moving_average"
        self.residuals = model.residuals if model else fallback.ResidualQuantiles.normal(self.horizon)
        self.calendar = CalendarIndex()
        self._parts: dict[int, _Partition] = {}
        self.budget = EntityBudget("demand", settings.max_series, settings.series_idle_s)
        self._extra_markets = set(settings.markets)
        self._known_markets: Optional[set[str]] = None
        self._lock = threading.RLock()
        self.model_failed = False  # the model raised at inference and was dropped
        # Bumped whenever another model takes over: forecasts in memory name the generation that
        # made them, so live accuracy is credited to the version that made each forecast.
        self.generation = 0
        # Shadow: a candidate scorer (see `beside`) that forecasts each closed day beside this
        # one, on this scorer's daily histories, into its own forecast memory.
        self.candidate: Optional["DemandScorer"] = None
        self.is_shadow = False
        self._shadow_memory: dict[int, ForecastMemory] = {}  # a shadow's, per input partition

    # --- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, registry: ModelRegistry, settings: DemandSettings) -> "DemandScorer":
        """The registry's current demand model; the rule fallback alone (with the reason) when
        there is none or it cannot be used. Never raises for a model problem."""
        where = registry.root / MODEL_NAME
        try:
            version = registry.current(MODEL_NAME)
        except Exception as exc:  # bad JSON, CURRENT naming a missing version, unreadable files
            return cls._rules_only(settings, f"model unavailable: cannot read {where}: {exc}")
        if version is None:
            return cls._rules_only(settings, f"model unavailable: no trained demand model in {registry.root}")
        try:
            loaded = LoadedDemandModel.from_version(version)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return cls._rules_only(settings, f"model unavailable: {MODEL_NAME} {version.version} cannot be used ({why})")
        log.info("demand scorer serves %s %s from %s", MODEL_NAME, loaded.version, version.path)
        return cls(settings, loaded)

    @classmethod
    def from_version(cls, version: ModelVersion, settings: DemandSettings) -> "DemandScorer":
        return cls(settings, LoadedDemandModel.from_version(version))

    @classmethod
    def _rules_only(cls, settings: DemandSettings, reason: str) -> "DemandScorer":
        log.warning("demand scorer forecasts with the rule fallback only: %s", reason)
        return cls(settings, None, reason)

    def rules_only(self, reason: str) -> "DemandScorer":
        """This scorer without its model: the rule fallback forecasts every series from the
        same daily histories, calendar and forecast memories (shared, not copied), saying
        `reason`. Model failures at inference are already caught inside a day's close (the
        model is dropped there and the day goes on); this is the contract's common verb."""
        with self._lock:
            twin = DemandScorer(self.settings, None, reason)
            twin.history_days, twin.horizon, twin.residuals = self.history_days, self.horizon, self.residuals
            twin.calendar, twin._parts, twin.budget = self.calendar, self._parts, self.budget
            twin._extra_markets = self._extra_markets
            twin.generation = self.generation + 1
            return twin

    def use_model(self, model: LoadedDemandModel) -> None:
        """Serve another version from the next batch on, keeping every partition's daily
        history (hot reload). Raises ValueError when that version needs another history length
        or horizon: those size the per-partition state, so it takes a worker restart."""
        with self._lock:
            wanted = (model.features.history_days, model.features.horizon_days)
            if wanted != (self.history_days, self.horizon):
                raise ValueError(f"{model.version} needs history/horizon {wanted}, this worker keeps "
                                 f"{(self.history_days, self.horizon)}: restart the worker to serve it")
            self._model, self.fallback_method, self.residuals = model, model.fallback_method, model.residuals
            self._known_markets = None
            self.model_failed, self.unavailable_reason = False, ""
            self.generation += 1

    def beside(self, model: LoadedDemandModel) -> "DemandScorer":
        """A shadow scorer of `model` to run beside this one: it forecasts every day this one
        closes, from this scorer's daily histories and calendar (shared, not copied), into its
        own forecast memory (its live accuracy, would-be alerts). It never ingests events
        itself. Raises ValueError when `model` needs another history length or horizon."""
        wanted = (model.features.history_days, model.features.horizon_days)
        if wanted != (self.history_days, self.horizon):
            raise ValueError(f"{model.version} needs history/horizon {wanted}, this worker keeps "
                             f"{(self.history_days, self.horizon)}: it cannot shadow here")
        shadow = DemandScorer(self.settings, model)
        shadow.calendar = self.calendar
        shadow.is_shadow = True
        return shadow

    def successor(self, version: ModelVersion) -> "DemandScorer":
        """Takes over itself with `version`: the daily histories stay, the model changes
        (use_model). Raises when the version cannot be used."""
        self.use_model(LoadedDemandModel.from_version(version))
        return self

    def beside_version(self, version: ModelVersion) -> "DemandScorer":
        """A candidate `version` forecasting beside this one, on the same daily histories (beside)."""
        return self.beside(LoadedDemandModel.from_version(version))

    def adopt(self, shadow: "DemandScorer") -> None:
        """Serve the shadow's model from the next batch on, warm: the daily histories stay (they
        were shared), and the shadow's forecast memory replaces this scorer's, so interval and
        shift alerts and live accuracy go on from the forecasts the promoted version made."""
        with self._lock:
            assert shadow.is_shadow and shadow._model is not None
            self.use_model(shadow._model)
            self.generation = shadow.generation
            for partition, part in self._parts.items():
                memory = shadow._shadow_memory.get(partition)
                part.memory = memory if memory is not None else ForecastMemory(self.horizon)
            self.candidate = None

    def _drop_model(self, exc: Exception) -> None:
        assert self._model is not None
        self.unavailable_reason = (f"model unavailable: {MODEL_NAME} {self._model.version} failed at inference "
                                   f"({type(exc).__name__}: {exc})")[:400]
        log.exception("demand model failed at inference; the rule fallback forecasts from now on")
        self._model = None
        self._known_markets = None
        self.model_failed = True
        self.generation += 1

    @property
    def model_version(self) -> Optional[str]:
        return self._model.version if self._model else None

    # --- calendar and partitions --------------------------------------------------------------
    def update_calendar(self, entries: Sequence[CalendarEntry]) -> int:
        with self._lock:
            self._known_markets = None
            return self.calendar.update(entries)

    def drop_clock(self, clock: int) -> bool:
        """Forget a clock's state and its series (their partition was revoked: another worker
        owns them now)."""
        with self._lock:
            if self.candidate is not None:
                self.candidate._shadow_memory.pop(clock, None)
            part = self._parts.pop(clock, None)
            if part is not None:
                self.budget.discard(list(part.days.slots))
            return part is not None

    # --- entities (series "sku/market") -------------------------------------------------------
    @property
    def entities(self) -> int:
        return self.series_count()

    def knows(self, series: str) -> bool:
        return any(series in p.days.slots for p in self._parts.values())

    @staticmethod
    def entity_of(event: SalesEvent) -> str:
        return f"{event.sku}/{event.market}"

    def forget(self, series: Iterable[str]) -> int:
        """Drop these series' daily histories and forecast memories; returns how many were
        kept. One that sells again starts with an empty history."""
        keys = list(series)
        with self._lock:
            self.budget.discard(keys)
            return self._drop_series(set(keys))

    def learn(self, truths: Sequence[object]) -> list[Optional[str]]:
        """Demand has no separate ground truth: the sales it counts are the truth its earlier
        forecasts are checked against, when their day closes (score_batch). Nothing to join."""
        return [None] * len(truths)

    def _drop_series(self, keys: set[str]) -> int:
        dropped = 0
        for partition, part in self._parts.items():
            freed = part.days.drop(keys)
            if freed:
                dropped += len(freed)
                part.memory.clear(freed)
                shadow = self.candidate._shadow_memory.get(partition) if self.candidate is not None else None
                if shadow is not None:
                    shadow.clear(freed)
        return dropped

    def _evict(self) -> None:
        due = self.budget.due()
        if due:
            self._drop_series(set(due))

    @property
    def clocks(self) -> set[int]:
        return set(self._parts)

    def series_count(self) -> int:
        return sum(len(p.days.slots) for p in self._parts.values())

    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            s = self.settings
            part = _Partition(PartitionDays(self.history_days, s.correction_days, s.allowed_lateness_s), ForecastMemory(self.horizon))
            self._parts[partition] = part
        return part

    def market_problem(self, market: str) -> Optional[str]:
        if self.settings.accept_unknown_markets:
            return None
        known = self._known_markets
        if known is None:  # cached: checked for every event, changed only by calendar or model
            known = set(self._model.features.markets) if self._model else set()
            known |= self._extra_markets | self.calendar.markets
            self._known_markets = known
        if not known or market in known:
            return None
        return (f"market {market!r} is not known (not in the model, the calendar or DEMAND__MARKETS; "
                f"known: {', '.join(sorted(known)[:30])}); add it there if it is new")

    # --- scoring ------------------------------------------------------------------------------
    def score_batch(self, events: Sequence[SalesEvent], clocks: Optional[Sequence[int]] = None) -> list[EventResult]:
        """Events in arrival order, each with its clock (all on clock 0 when None) -> one
        result per event."""
        with self._lock:
            results = [self._ingest(e, c, emit=True) for e, c in zip(events, clocks or _one_clock(events))]
            self._evict()
            return results

    def replay(self, events: Sequence[SalesEvent], clocks: Optional[Sequence[int]] = None) -> int:
        """Rebuild state from already processed events: days close without forecasts (those were
        published when the events first came). Returns the events counted."""
        with self._lock:
            counted = sum(self._ingest(e, c, emit=False).outcome in ("counted", "corrected")
                          for e, c in zip(events, clocks or _one_clock(events)))
            self._evict()
            return counted

    def _ingest(self, event: SalesEvent, partition: int, emit: bool) -> EventResult:
        problem = self.market_problem(event.market)
        if problem:
            return EventResult(event.event_id, UNKNOWN_MARKET, Rejection(UNKNOWN_MARKET, problem))
        part = self._part(partition)
        ts = event.ts.timestamp()
        result = EventResult(event.event_id, "counted")
        due = part.days.advance(ts)
        if due:
            self._close(part, partition, due, emit, result)
        result.outcome = part.days.add(event.event_id, event.sku, event.market, ts, event.units, event.unit_price, event.promo)
        if result.outcome in ("counted", "corrected"):
            self.budget.touch(self.entity_of(event), ts)
        if result.shadow is not None:
            result.shadow.outcome = result.outcome
        if result.outcome == "too_old":
            oldest = part.days.oldest_accepted_day()
            result.rejection = Rejection(TOO_OLD, (
                f"sale of {day_date(int(ts // DAY_S)).isoformat()} is older than the correction window: days before "
                f"{day_date(oldest).isoformat() if oldest is not None else '?'} are final "
                f"(DEMAND__CORRECTION_DAYS={self.settings.correction_days})"))
        return result

    def _close(self, part: _Partition, partition: int, due: list[int], emit: bool, result: EventResult) -> None:
        quiet = len(due) - self.settings.max_catch_up_days
        if emit and quiet > 0:
            log.info("demand: %d days closed without forecasts after a gap in the partition's events", quiet)
        candidate = self.candidate
        for i, day in enumerate(due):
            closed = part.days.closing(day)
            if emit and i >= quiet and len(closed.slots):
                shadow_part = None
                if candidate is not None:
                    if result.shadow is None:
                        result.shadow = EventResult(result.event_id, result.outcome)
                    shadow_part = _Partition(part.days, candidate._memory(partition))
                self._live_accuracy(part, shadow_part, closed, result)
                try:
                    forecasts, accuracy = self._forecast(part, closed)
                except Exception:
                    # A bug here would repeat for every later event if the day stayed open, and
                    # dead-letter the whole stream: the day closes without forecasts instead.
                    log.exception("demand: forecasting %s failed; the day closes without forecasts", day_date(day))
                    result.failed_days.append(day_date(day))
                else:
                    result.forecasts += forecasts
                    result.accuracy.append(accuracy)
                if candidate is not None and shadow_part is not None and result.shadow is not None:
                    candidate._shadow_forecast(shadow_part, closed, result.shadow)
            part.days.close(day)

    def _live_accuracy(self, part: _Partition, shadow_part: Optional[_Partition], closed: ClosedDay, result: EventResult) -> None:
        """Per version: the day checked against the forecasts each version made itself; with a
        candidate, only where both made one (same series, origins and horizons)."""
        n = part.days.size
        part.memory.ensure(n)
        mask = part.memory.checkable(closed.slots, closed.day, self.generation)
        if shadow_part is not None and self.candidate is not None:
            shadow_part.memory.ensure(n)
            mask &= shadow_part.memory.checkable(closed.slots, closed.day, self.candidate.generation)
            shadow_acc = shadow_part.memory.accuracy(closed.slots, closed.day, closed.units, mask)
            shadow_acc.version = self.candidate.model_version
            assert result.shadow is not None
            result.shadow.live.append(shadow_acc)
        acc = part.memory.accuracy(closed.slots, closed.day, closed.units, mask)
        acc.version = self.model_version
        result.live.append(acc)

    def _memory(self, partition: int) -> ForecastMemory:
        """A shadow's own forecast memory of a partition."""
        memory = self._shadow_memory.get(partition)
        if memory is None:
            memory = self._shadow_memory[partition] = ForecastMemory(self.horizon)
        return memory

    def _shadow_forecast(self, part: _Partition, closed: ClosedDay, result: EventResult) -> None:
        """A shadow's forecasts of a closed day into `result`; its failure is logged and never
        touches the served forecasts (the day closes all the same)."""
        try:
            forecasts, accuracy = self._forecast(part, closed)
        except Exception:
            log.exception("demand shadow %s %s: forecasting %s failed; the served forecasts are unaffected",
                          MODEL_NAME, self.model_version, day_date(closed.day))
            result.failed_days.append(day_date(closed.day))
        else:
            result.forecasts += forecasts
            result.accuracy.append(accuracy)

    def _forecast(self, part: _Partition, closed: ClosedDay) -> tuple[list[ForecastResult], Accuracy]:
        s, days, memory = self.settings, part.days, part.memory
        memory.ensure(days.size)
        slots, day, L, H = closed.slots, closed.day, self.history_days, self.horizon
        units, price, promo, active = days.window(slots, day)
        markets = [days.markets[i] for i in slots]
        skus = [days.skus[i] for i in slots]
        history = active.sum(axis=1)
        accuracy = memory.accuracy(slots, day, closed.units)

        fb_daily, fb_totals = fallback.forecast(self.fallback_method, np.where(active, units, np.nan), active, H, self.residuals)
        z = self._model.z_scale if self._model else 1.0
        fb_conf = confidence(fb_totals, history, np.ones(len(slots), dtype=bool), z)
        inputs, out, known_market = None, None, np.zeros(len(slots), dtype=bool)
        if self._model is not None and self._model.rules_serve is None:
            cal = self.calendar.matrix(markets, skus, day - L + 1, L + H)
            inputs = encode(self._model.features, units, price, promo, active, cal, np.full(len(slots), day), markets)
            try:
                out = self._model.forecast(inputs, keep_output=True)
                if not (np.isfinite(out.daily).all() and np.isfinite(out.totals).all()):
                    raise FloatingPointError("the model's quantiles are not finite")
            except Exception as exc:  # a model fault hands the stream to the rules, state kept
                if self.is_shadow:
                    raise  # a candidate that fails is not scored as rules under its name
                self._drop_model(exc)
        if self._model is not None and inputs is not None and out is not None:
            known_market = inputs.market > 0
            model_conf = confidence(out.totals, history, known_market, z)
            by_model = (history >= s.min_history_days) & (model_conf >= s.min_confidence)
            daily = np.where(by_model[:, None, None], out.daily, fb_daily)
            totals = np.where(by_model[:, None, None], out.totals, fb_totals)
            conf = np.where(by_model, model_conf, fb_conf)
        else:
            by_model = np.zeros(len(slots), dtype=bool)
            daily, totals, conf, model_conf = fb_daily, fb_totals, fb_conf, None

        checks = self._interval_checks(part, closed, slots) + self._shift_checks(memory, slots, day, daily, history)
        memory.store(slots, day, daily, totals, conf, by_model, self.generation)
        created = datetime.now(timezone.utc)
        by_row: dict[int, list[_Check]] = {}
        for c in checks:
            by_row.setdefault(c.row, []).append(c)

        dates = [day_date(day + h + 1) for h in range(H)]
        results = []
        for r, slot in enumerate(slots.tolist()):
            reason = self._reason(bool(by_model[r]), float(conf[r]), None if model_conf is None else float(model_conf[r]),
                                  int(history[r]), totals[r], bool(known_market[r]), markets[r], int(closed.late_events[r]))
            forecast = self._message(skus[r], markets[r], dates, closed, r, int(history[r]), daily[r], totals[r],
                                     float(conf[r]), bool(by_model[r]), reason, created)
            result = ForecastResult(forecast)
            if r in by_row and self.is_shadow:  # what it would have alerted: no message, no explanation
                result.would_alert = [c.kind for c in by_row[r] if self._cooled_down(memory, slot, day, c.kind)]
            elif r in by_row:
                reasons = (explain_model(self._model, inputs.take(np.array([r])), out.output.attention[r].numpy(),
                                         out.output.past_weights[r].numpy(), out.output.future_weights[r].numpy(), day,
                                         float(totals[r, 1, 1]))
                           if by_model[r] and self._model is not None and inputs is not None and out is not None and out.output is not None
                           else explain_rule(self.fallback_method, units[r], active[r], float(daily[r, 0, 1]), reason))
                for check in by_row[r]:
                    alert, explanation = self._alert(part, slot, forecast, check, reasons, created)
                    if alert is not None:
                        result.alerts.append(alert)
                        result.explanations.append(explanation)
            results.append(result)
        return results, accuracy

    def _reason(self, by_model: bool, conf: float, model_conf: Optional[float], history: int, totals: np.ndarray,
                known_market: bool, market: str, late: int) -> str:
        s = self.settings
        p10, p50, p90 = totals[0]
        if by_model:
            text = (f"model decided: confidence {conf:.2f} >= {s.min_confidence:.2f} ({history} days of history, "
                    f"7-day total {p50:.0f} units, P10-P90 {p10:.0f}-{p90:.0f})")
        else:
            method = self.fallback_method.replace("_", " ")
            if self._model is None:
                why = self.unavailable_reason
            elif self._model.rules_serve is not None:
                why = self._model.rules_serve
            elif history < s.min_history_days:
                why = f"model unsure: {history} days of history < {s.min_history_days}"
            else:
                why = f"model unsure: confidence {model_conf:.2f} < {s.min_confidence:.2f}"
            text = f"rule decided ({method}): {why}"
        if self._model is not None and self._model.rules_serve is None and not known_market:
            text += f"; market {market} was not in the model's training data"
        if late:
            text += f"; {late} late sales events corrected earlier days of this series since its last forecast"
        return text

    def _message(self, sku: str, market: str, dates: list[date], closed: ClosedDay, r: int, history: int,
                 daily: np.ndarray, totals: np.ndarray, conf: float, by_model: bool, reason: str, created: datetime) -> DemandForecast:
        d = np.round(daily.astype(np.float64), 3).tolist()
        t = np.round(totals.astype(np.float64), 3).tolist()
        closed_day = dates[0] - timedelta(days=1)
        return DemandForecast(
            forecast_id=deterministic_id("demand-forecast", sku, market, closed_day.isoformat(), self.model_version),
            series_id=f"{sku}/{market}", sku=sku, market=market, day=closed_day,
            units=float(closed.units[r]), events_counted=int(closed.events[r]), late_events=int(closed.late_events[r]),
            history_days=history,
            horizon=[ForecastDay(day=dates[h], horizon_days=h + 1, p10=q[0], p50=q[1], p90=q[2]) for h, q in enumerate(d)],
            total_7d=ForecastTotal(days=TOTAL_WINDOWS[0], p10=t[0][0], p50=t[0][1], p90=t[0][2]),
            total_30d=ForecastTotal(days=TOTAL_WINDOWS[1], p10=t[1][0], p50=t[1][1], p90=t[1][2]),
            confidence=round(conf, 4), decision_source="model" if by_model else "rule", reason=reason,
            model_name=MODEL_NAME, model_version=self.model_version, created_at=created,
        )

    # --- alerts -------------------------------------------------------------------------------
    def _cooled_down(self, memory: ForecastMemory, slot: int, day_n: int, kind: str) -> bool:
        """Whether the series may alert of `kind` on day `day_n` (then the cooldown restarts)."""
        k = ALERT_KINDS.index(kind)
        if day_n - memory.last_alert[slot, k] < self.settings.alert_cooldown_days:
            return False
        memory.last_alert[slot, k] = day_n
        return True

    def _interval_checks(self, part: _Partition, closed: ClosedDay, slots: np.ndarray) -> list[_Check]:
        s, memory, day = self.settings, part.memory, closed.day
        checks: list[_Check] = []
        week = part.days.units_between(slots, day - 6, day)
        for basis, origin, value, q, when in (
            ("day", day - 1, closed.units, memory.daily[slots, (day - 1) % _MEMORY, 0], f"on {day_date(day).isoformat()}"),
            ("7 days", day - 7, week, memory.totals[slots, (day - 7) % _MEMORY, 0], f"in the 7 days to {day_date(day).isoformat()}"),
        ):
            made = memory.made(slots, origin)
            low, high = q[:, 0].astype(np.float64), q[:, 2].astype(np.float64)
            width = np.maximum(high - low, 1.0)
            above, below = value - high, low - value
            for r in np.flatnonzero(made & (np.maximum(above, below) >= np.maximum(s.alert_margin * width, s.alert_min_units))):
                up = above[r] > 0
                gap = above[r] if up else below[r]
                limit = high[r] + s.alert_margin * width[r] if up else low[r] - s.alert_margin * width[r]
                what = "above P90" if up else "below P10"
                checks.append(_Check(
                    int(r), STOCKOUT if up else OVERSTOCK, basis, float(value[r]), float(low[r]), float(high[r]),
                    float(gap / width[r]), origin + 1,
                    RuleCheck(rule=f"units ({basis}) {'<=' if up else '>='} {what[-3:]} {'+' if up else '-'} {s.alert_margin:g} x interval width",
                              value=float(value[r]), limit=float(limit), fired=True),
                    f"{value[r]:.0f} units sold {when}, {what} of the forecast made "
                    f"{day_date(origin).isoformat()} (P10-P90 {low[r]:.1f}-{high[r]:.1f}), {gap / width[r]:.1f} interval widths out",
                ))
        return checks

    def _shift_checks(self, memory: ForecastMemory, slots: np.ndarray, day: int, daily: np.ndarray, history: np.ndarray) -> list[_Check]:
        s = self.settings
        # a young series' forecast moves with every sale: no shift alerts before min_history_days
        made = memory.made(slots, day - 1) & (history >= s.min_history_days)
        old = memory.daily[slots, (day - 1) % _MEMORY, 1:, 1].astype(np.float64).sum(axis=1)
        new = daily[:, :-1, 1].astype(np.float64).sum(axis=1)
        change = (new - old) / np.maximum(old, max(s.shift_min_units, 1e-9))
        checks = []
        for r in np.flatnonzero(made & (np.abs(change) >= s.shift_threshold) & (np.abs(new - old) >= s.shift_min_units)):
            checks.append(_Check(
                int(r), SHIFT, "forecast", float(new[r]), float(old[r]), float(old[r]), float(abs(change[r])), day,
                RuleCheck(rule=f"|change of the next {self.horizon - 1} days' P50 total| < {s.shift_threshold:g} x previous",
                          value=float(new[r]), limit=float(old[r] * (1 + np.sign(change[r]) * s.shift_threshold)), fired=True),
                f"the P50 total of {day_date(day + 1).isoformat()} - {day_date(day + self.horizon - 1).isoformat()} moved from "
                f"{old[r]:.1f} to {new[r]:.1f} units ({100 * change[r]:+.0f} %) since the previous day's forecast",
            ))
        return checks

    def _alert(self, part: _Partition, slot: int, forecast: DemandForecast, check: _Check, reasons: ForecastReasons,
               created: datetime) -> tuple[Optional[Alert], Optional[Explanation]]:
        memory, day = part.memory, forecast.day
        day_n = (day - day_date(0)).days
        if not self._cooled_down(memory, slot, day_n, check.kind):
            return None, None
        if check.kind == SHIFT:
            source, conf = forecast.decision_source, forecast.confidence
            severity = "critical" if check.score >= 1.0 else "warning"
        else:  # judged against an earlier forecast: its source and confidence
            origin = day_n - (1 if check.basis == "day" else 7)
            i = origin % _MEMORY
            source = "model" if memory.by_model[slot, i] else "rule"
            conf = float(memory.conf[slot, i])
            severity = "critical" if check.score >= 2.0 else "warning"
        series = forecast.series_id
        alert_id = deterministic_id("demand-alert", check.kind, series, day.isoformat(), check.basis, self.model_version)
        summary = f"{check.kind.split('.')[1].replace('_', ' ')} for {series}: {check.text}"
        reason = f"{'model' if source == 'model' else 'rule'} forecast: {check.text}"
        event_ts = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(days=1)
        alert = Alert(
            alert_id=alert_id, kind=check.kind, entity_id=series, event_ids=part.days.event_ids(slot, check.first_day, day_n),
            severity=severity, score=round(check.score, 4), confidence=round(conf, 4), decision_source=source, reason=reason,
            model_name=MODEL_NAME, model_version=self.model_version, created_at=created, event_ts=event_ts,
            explanation=f"{summary}. {reasons.text[0]}",
        )
        explanation = Explanation(
            alert_id=alert_id, kind=check.kind, entity_id=series, model_name=MODEL_NAME, model_version=self.model_version,
            decision_source=source, method=reasons.method, summary=summary,
            text="\n".join([summary + ".", f"Forecast {forecast.forecast_id} ({forecast.reason})."] + reasons.text),
            features=reasons.features, time_steps=reasons.time_steps, counterfactuals=reasons.counterfactuals,
            rules=[check.rule], inputs_sha256=reasons.inputs_sha256, created_at=created,
        )
        return alert, explanation


def _one_clock(events: Sequence[SalesEvent]) -> list[int]:
    return [0] * len(events)
