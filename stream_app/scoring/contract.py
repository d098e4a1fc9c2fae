"""The contract every stream's scorer keeps: maintenance (sensor readings), supply chain
(transactions) and demand (sales) answer the same verbs, so the agents, the shared scorer
handle and the tests treat them alike. tests/contract/ runs one suite of checks against all
three, as River's estimator checks run against every estimator.

A scorer sees events, never bytes, offsets or partitions (demand's clocks are plain numbers the
agent chooses: see stream_app/scoring/demand.py). Its per-entity state is bounded by its
`budget` (stream_app/state_budget.py).

    entity_of(event)       the entity whose state the event moves on: a machine, a transaction's
                           source node, a SKU x market series
    score_batch(events)    one result per event, in input order; how a stream is cut into
                           batches never changes the results
    learn(truths)          ground truth for earlier decisions (maintenance outcomes, supply-chain
                           verdicts; demand's truth is its sales themselves): one join result or
                           None per truth
    forget(entities)       drop entities' state; returns how many were held; an entity that comes
                           back starts anew
    knows(entity)          whether state is held for it; `entities`: how many are held
    rules_only(reason)     the same stream without its model (the model failed at inference),
                           on the same rules, never raising for a model problem
    successor(version)     the scorer that serves a registry version from now on (promotion,
                           rollback): what state it keeps is the stream's (its docstring says)
    beside_version(version)  a candidate version scoring beside this one (shadow, A/B)
    model_version          the version that produced the results (None: rules only)
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Protocol, Sequence, runtime_checkable

from stream_app.registry import ModelVersion
from stream_app.state_budget import EntityBudget


@runtime_checkable
class StreamScorer(Protocol):
    model_version: Optional[str]

    @property
    def budget(self) -> Optional[EntityBudget]: ...

    def entity_of(self, event: Any) -> str: ...

    def score_batch(self, events: Sequence[Any]) -> list[Any]: ...

    def learn(self, truths: Sequence[Any]) -> list[Optional[str]]: ...

    def forget(self, entities: Iterable[str]) -> int: ...

    def knows(self, entity: str) -> bool: ...

    @property
    def entities(self) -> int: ...

    def rules_only(self, reason: str) -> "StreamScorer": ...

    def successor(self, version: ModelVersion) -> "StreamScorer": ...

    def beside_version(self, version: ModelVersion) -> "StreamScorer": ...
