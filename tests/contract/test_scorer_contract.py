"""One suite of checks for every stream's scorer (stream_app/scoring/contract.py): the same
verbs, the same promises, on the golden models and inputs (tests/golden/). A new stream's scorer
joins by adding a case."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pytest
from pydantic import BaseModel

from schemas import SalesEvent, SensorReading, SupplyChainTransaction
from schemas.sales import CalendarEntry
from schemas.sensor import MaintenanceOutcome
from schemas.supply_chain import SupplyChainVerdict
from stream_app import metrics
from stream_app.decoding import decode_message
from stream_app.registry import ModelRegistry
from stream_app.scoring.contract import StreamScorer
from stream_app.scoring.demand import DemandScorer
from stream_app.scoring.maintenance import MaintenanceScorer
from stream_app.scoring.supply_chain import SupplyChainScorer
from stream_app.settings import DemandSettings, MaintenanceSettings, SupplyChainSettings
from tests.golden import harness
from tests.golden.compare import close_differences

WALL_CLOCK = {"created_at"}


def _events(topic: str, model: Any) -> list[Any]:
    events = [e for _, value in harness.read_input(topic) for e in decode_message(value, model).events]
    return sorted(events, key=lambda e: e.ts)  # one time-ordered stream (the golden input spans partitions)


def _version(name: str) -> Any:
    version = ModelRegistry(harness.MODELS).current(name)
    assert version is not None
    return version


@dataclass(frozen=True)
class Case:
    stream: str
    make: Callable[[dict[str, Any]], Any]  # settings overrides -> a scorer of the golden model
    events: Callable[[], list[Any]]
    truths: Callable[[], list[Any]]
    event_id: Callable[[Any], str]  # of one result
    budget_fields: tuple[str, str]  # the settings of the budget: max entities, idle seconds
    touched: Callable[[Any], list[str]]  # the entities an event moves on
    # What does not depend on batch boundaries: the whole result, or (supply chain) its decisions:
    # aggregates a transaction's features read may include later transactions of its batch
    # already applied (stream_app/graph/state.py), which moves figures, never decisions.
    invariant: Callable[[Any], Any] = lambda r: r
    accepted: Callable[[Any], bool] = lambda r: True  # a result whose event moved state on

    def __str__(self) -> str:
        return self.stream


def _maintenance(overrides: dict[str, Any]) -> MaintenanceScorer:
    return MaintenanceScorer.from_version(_version("maintenance"), MaintenanceSettings(**overrides))


def _supply_chain(overrides: dict[str, Any]) -> SupplyChainScorer:
    settings = SupplyChainSettings(**{"embedding_refresh_every": 10**9, "embedding_refresh_s": 1e9, **overrides})
    return SupplyChainScorer.from_version(_version("supply-chain"), settings, background_refresh=False)


def _demand(overrides: dict[str, Any]) -> DemandScorer:
    scorer = DemandScorer.from_version(_version("demand"), DemandSettings(**overrides))
    scorer.update_calendar(_events("demand-calendar", CalendarEntry))
    return scorer


CASES = [
    Case("maintenance", _maintenance, lambda: _events("sensor-readings", SensorReading)[:600],
         lambda: _events("maintenance-outcomes", MaintenanceOutcome), lambda r: r.prediction.event_id,
         ("max_machines", "machine_idle_s"), lambda e: [e.machine_id]),
    Case("supply_chain", _supply_chain, lambda: _events("supply-chain-transactions", SupplyChainTransaction)[:600],
         lambda: _events("supply-chain-verdicts", SupplyChainVerdict), lambda r: r.score.event_id,
         ("max_nodes", "node_idle_s"), lambda e: [e.source_id, e.target_id],
         lambda r: (r.score.flagged, r.score.decision_source, r.score.rules_fired, r.alert is not None)),
    Case("demand", _demand, lambda: _events("sales-events", SalesEvent)[:1500], lambda: [],
         lambda r: r.event_id, ("max_series", "series_idle_s"), lambda e: [f"{e.sku}/{e.market}"],
         accepted=lambda r: r.outcome in ("counted", "corrected", "duplicate")),
]


def _view(x: Any) -> Any:
    """A result as plain data, without wall-clock fields, for comparing two runs."""
    if isinstance(x, BaseModel):
        return _view(x.model_dump(exclude=WALL_CLOCK))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _view(getattr(x, f.name)) for f in dataclasses.fields(x) if f.name not in WALL_CLOCK}
    if isinstance(x, dict):
        return {k: _view(v) for k, v in x.items() if k not in WALL_CLOCK}
    if isinstance(x, (list, tuple)):
        return [_view(v) for v in x]
    if isinstance(x, np.ndarray):
        return _view(x.tolist())
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else round(float(x), 5)
    return x


def _score(scorer: Any, events: Sequence[Any], sizes: Sequence[int]) -> list[Any]:
    out, start = [], 0
    for size in sizes:
        out += scorer.score_batch(events[start:start + size])
        start += size
    assert start >= len(events)
    return out


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


def test_every_scorer_keeps_the_contract(case: Case) -> None:
    scorer = case.make({})
    assert isinstance(scorer, StreamScorer)
    shipped = scorer.entities  # the state its version ships: supply chain's training graph, else none
    assert scorer.model_version is not None and (shipped == 0 or case.stream == "supply_chain")
    events = case.events()
    results = scorer.score_batch(events)
    assert [case.event_id(r) for r in results] == [e.event_id for e in events]
    held = {k for e, r in zip(events, results) if case.accepted(r) for k in case.touched(e)}
    assert {scorer.entity_of(e) for e, r in zip(events, results) if case.accepted(r)} <= held
    assert all(scorer.knows(k) for k in held) and scorer.entities >= len(held)
    assert not scorer.knows("never-seen-entity")


def test_results_do_not_depend_on_batch_boundaries(case: Case) -> None:
    events = case.events()
    whole = _view([case.invariant(r) for r in _score(case.make({}), events, [len(events)])])
    rng = np.random.default_rng(7)
    sizes = [int(s) for s in rng.integers(1, 90, size=len(events))]
    pieces = _view([case.invariant(r) for r in _score(case.make({}), events, sizes)])
    assert close_differences(whole, pieces, abs_=1e-4)[:5] == []


def test_forget_drops_an_entity_which_comes_back_new(case: Case) -> None:
    scorer = case.make({})
    events = case.events()
    half = len(events) // 2
    scorer.score_batch(events[:half])
    entity = scorer.entity_of(events[half - 1])
    before = scorer.entities
    assert scorer.knows(entity)
    assert scorer.forget([entity]) >= 1
    assert not scorer.knows(entity) and scorer.entities < before
    assert scorer.forget([entity, "never-seen-entity"]) == 0
    later = [e for e in events[half:] if scorer.entity_of(e) == entity]
    scorer.score_batch(events[half:])
    assert scorer.knows(entity) == bool(later)


def test_maintenance_forgotten_machine_scores_as_one_never_seen() -> None:
    """Forgetting is complete: after it, a machine's readings score exactly as on a scorer that
    never saw the machine (no trace of its old life)."""
    case = CASES[0]
    events = case.events()
    half = len(events) // 2
    machine = max({e.machine_id for e in events[half:]}, key=lambda m: sum(e.machine_id == m for e in events[half:]))
    scorer = case.make({})
    scorer.score_batch(events[:half])
    scorer.forget([machine])
    rest = [e for e in events[half:] if e.machine_id == machine]
    assert len(rest) >= 3
    after = _view([r.prediction for r in scorer.score_batch(rest)])
    fresh = _view([r.prediction for r in case.make({}).score_batch(rest)])
    assert close_differences(after, fresh, abs_=1e-4)[:5] == []


def test_the_budget_keeps_the_most_recently_seen(case: Case) -> None:
    events = case.events()
    entities = [k for e in events for k in case.touched(e)]
    distinct = len(set(entities))
    limit = max(2, distinct // 3)
    counted = metrics.STATE_EVICTIONS.labels(case.stream, "budget")._value.get()
    scorer, unlimited = case.make({case.budget_fields[0]: limit}), case.make({})
    _score(scorer, events, [50] * (len(events) // 50 + 1))
    unlimited.score_batch(events)
    if case.stream == "supply_chain":
        scorer._evict()  # the graph checks its budget every thousand transactions
    assert scorer.entities <= limit
    assert scorer.budget.evicted["budget"] > 0
    assert metrics.STATE_EVICTIONS.labels(case.stream, "budget")._value.get() - counted == scorer.budget.evicted["budget"]
    # the most recently seen stay (the last entities of the stream, in order of their last event)
    last_seen = [k for k in dict.fromkeys(reversed(entities)) if unlimited.knows(k)][: scorer.entities // 2]
    assert all(scorer.knows(e) for e in last_seen)


def test_idle_entities_are_forgotten_in_event_time(case: Case) -> None:
    events = case.events()
    span = (events[-1].ts - events[0].ts).total_seconds()
    idle_s = span / 5
    scorer, unlimited = case.make({case.budget_fields[1]: idle_s}), case.make({})
    _score(scorer, events, [50] * (len(events) // 50 + 1))
    unlimited.score_batch(events)
    if case.stream == "supply_chain":
        scorer._evict()
    newest = events[-1].ts.timestamp()
    last: dict[str, float] = {}
    for e in events:
        for k in case.touched(e):
            last[k] = max(last.get(k, -math.inf), e.ts.timestamp())
    quiet = [k for k, t in last.items() if t < newest - idle_s - 1 and unlimited.knows(k)]
    recent = [k for k, t in last.items() if t >= newest - idle_s / 2]
    assert quiet and recent and scorer.budget.evicted["idle"] >= len(quiet)
    assert not any(scorer.knows(k) for k in quiet)
    assert all(scorer.knows(k) for k in recent)


def test_learn_answers_each_truth_and_never_raises(case: Case) -> None:
    scorer = case.make({})
    scorer.score_batch(case.events())
    truths = case.truths()
    joined = scorer.learn(truths)
    assert len(joined) == len(truths)
    assert all(j is None or isinstance(j, str) for j in joined)
    assert scorer.learn([]) == []


def test_rules_only_scores_every_event_without_the_model(case: Case) -> None:
    scorer = case.make({})
    events = case.events()
    scorer.score_batch(events[:10])
    fallback = scorer.rules_only("the model failed at inference (test)")
    assert fallback.model_version is None and isinstance(fallback, StreamScorer)
    results = fallback.score_batch(events[10:])
    assert [case.event_id(r) for r in results] == [e.event_id for e in events[10:]]


MODEL_NAMES = {"maintenance": "maintenance", "supply_chain": "supply-chain", "demand": "demand"}


def test_a_version_is_swapped_in_and_shadowed_by_the_same_verbs(case: Case) -> None:
    """successor(version) serves a registry version from now on, beside_version(version) scores a
    candidate next to the served one; each stream keeps the state its docstring says: supply
    chain's graph and demand's daily histories are shared, machine states are each model's own."""
    version = _version(MODEL_NAMES[case.stream])
    scorer = case.make({})
    stream = case.events()
    n = len(stream)
    events, middle, later = stream[:n // 4], stream[n // 4:3 * n // 4], stream[3 * n // 4:]
    scorer.score_batch(events)
    held = scorer.entities

    candidate = scorer.beside_version(version)
    assert candidate is not scorer and candidate.model_version == version.version
    if case.stream == "demand":
        # forecasts inside the served scorer's day closes, on its histories (scoring/demand.py)
        assert candidate.entities == 0
        scorer.candidate = candidate
        shadowed = scorer.score_batch(middle)
        assert any(r.shadow is not None and r.shadow.forecasts for r in shadowed)
        assert all(f.forecast.model_version == version.version for r in shadowed if r.shadow for f in r.shadow.forecasts)
        scorer.candidate = None
        held = scorer.entities
    else:
        assert candidate.entities == (0 if case.stream == "maintenance" else held)
        assert [case.event_id(r) for r in candidate.score_batch(events)] == [e.event_id for e in events]

    served = scorer.successor(version)
    assert served.model_version == version.version
    assert served.entities == (0 if case.stream == "maintenance" else held)
    assert [case.event_id(r) for r in served.score_batch(later)] == [e.event_id for e in later]
