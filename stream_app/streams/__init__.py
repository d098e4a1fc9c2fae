"""Each stream declared once: what the generic agent (agents/stream_agent.py), the drift
monitor and the docs need to know about it, in one place per stream.

    name            the stream's label in metrics, logs and dead letters
    model_name      its folder in the model registry
    event_model     the input schema (schemas/); truth_model: the ground truth's, if any
    input_topic     the settings.topics field of its input; truth_topic: of its ground truth
    section         its settings section (settings.<section>: batch size, state budget, ...)
    scorer_agent    the Faust agent names (stable: they name the agents in logs and metrics)
    truth_agent
    key_of          event -> the entity its input topic is keyed by (a machine, a shipment, a
                    series): its events are ordered on one partition, and an A/B share splits by it
    drift_values    (events, results) -> {value name: values}: what drift is watched on
    distribution    which of those values the distribution test watches too

The streams' scorers all keep one contract (stream_app/scoring/contract.py); what differs
between streams beyond this declaration (a state hand-over, a calendar, a graph follower) is
wired by the stream's module in agents/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from stream_app.settings import Settings

DriftValues = Callable[[Sequence[Any], Sequence[Any]], dict[str, list[float]]]


@dataclass(frozen=True)
class StreamDeclaration:
    name: str
    model_name: str
    event_model: type
    truth_model: Optional[type]
    input_topic: str
    truth_topic: Optional[str]
    section: str
    scorer_agent: str
    truth_agent: Optional[str]
    key_of: Callable[[Any], str]
    drift_values: DriftValues
    distribution: tuple[str, ...]
    truth_batch: int = 100  # ground-truth messages applied at a time

    def topic(self, settings: Settings) -> str:
        return str(getattr(settings.topics, self.input_topic))

    def truths_topic(self, settings: Settings) -> Optional[str]:
        return str(getattr(settings.topics, self.truth_topic)) if self.truth_topic else None

    def batch_max(self, settings: Settings) -> int:
        return int(getattr(settings, self.section).batch_max)
