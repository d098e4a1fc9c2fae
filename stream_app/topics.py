"""The topics the product needs, and what a cluster has: the plan (partitions, replication,
cleanup and retention per topic, from the settings), the cluster's state, their comparison, and
creating what is missing. `stream-app topics plan|create|check` (topics_cli.py) and the worker's
start use it.

Nothing is created with a replication factor nobody chose: on a configured cluster of several
brokers topics are created only when TOPIC_REPLICATION_FACTOR (or the topic's own
replication_factor) is set. A one-broker cluster (and the embedded broker) can hold one copy only,
and gets that, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka import errors as kafka_errors
from aiokafka.errors import TopicAlreadyExistsError

from stream_app.features.demand import HISTORY_DAYS
from stream_app.kafka_security import KafkaClientConfig
from stream_app.settings import Settings, Topics
from stream_app.setup_error import SetupError

HOUR_MS = 3_600_000

log = logging.getLogger(__name__)


class TopicsError(SetupError):
    """A topic setting is wrong, or topics are missing that may not be created here."""


@dataclass(frozen=True)
class TopicSpec:
    """What the product needs of one topic."""

    name: str
    partitions: int
    replication_factor: Optional[int]  # None: not chosen (a configured cluster without the setting)
    compact: bool = False
    retention_hours: Optional[float] = None  # set on creation; None: the broker's default; -1: forever
    min_retention_hours: Optional[float] = None  # less than this breaks the product (why: `needs`)
    needs: str = ""

    def configs(self) -> dict[str, str]:
        out = {"cleanup.policy": "compact"} if self.compact else {}
        if self.retention_hours is not None:
            out["retention.ms"] = str(-1 if self.retention_hours < 0 else round(self.retention_hours * HOUR_MS))
        return out


@dataclass(frozen=True)
class TopicState:
    """What the cluster has. `configs` holds what the broker reported (possibly nothing)."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """One topic compared: `problems` fail `topics check`, `unknown` and `notes` are told."""

    spec: TopicSpec
    state: Optional[TopicState]
    problems: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        if self.state is None:
            return "missing"
        if self.problems:
            return "PROBLEM: " + "; ".join(self.problems)
        if self.unknown:
            return "unknown: " + "; ".join(self.unknown)
        return "ok" + (" (" + "; ".join(self.notes) + ")" if self.notes else "")


@dataclass(frozen=True)
class ClusterState:
    brokers: int
    topics: dict[str, TopicState]


def replication_factor(settings: Settings, brokers: int) -> Optional[int]:
    """Copies of a topic the product creates: what was set; else one where one broker can hold
    no more; else None (not chosen: refuse to create)."""
    if settings.uses_embedded_broker:
        return 1
    if settings.topic_replication_factor is not None:
        return settings.topic_replication_factor
    return 1 if brokers == 1 else None


def sales_retention_hours(settings: Settings) -> Optional[float]:
    """Demand rebuilds a partition's daily history on assignment by re-reading its retained
    sales: the model's history window plus the days a late sale still corrects."""
    if not settings.demand.replay_on_assign:
        return None
    return float((HISTORY_DAYS + settings.demand.correction_days) * 24)


def plan(settings: Settings, brokers: int) -> list[TopicSpec]:
    """Every topic of the contract, as the settings want it on a cluster of `brokers`."""
    names = settings.topics.model_dump()
    unknown = sorted(set(settings.topic_config) - set(names))
    if unknown:
        raise TopicsError(f"TOPIC_CONFIG__{unknown[0].upper()}: no such topic; topics are "
                          f"{', '.join(k.upper() for k in Topics.model_fields)}")
    compacted = {settings.topics.maintenance_state, settings.topics.drift_state, settings.topics.supply_chain_graph}
    default_replication = replication_factor(settings, brokers)
    specs = []
    for key, name in names.items():
        own = settings.topic_config.get(key)
        minimum, needs = None, ""
        if name == settings.topics.sales_events:
            minimum = sales_retention_hours(settings)
            needs = (f"demand re-reads {HISTORY_DAYS} days of history plus DEMAND__CORRECTION_DAYS="
                     f"{settings.demand.correction_days} when it takes a partition over")
        retention = own.retention_hours if own and own.retention_hours is not None else minimum
        if retention is not None and -1 < retention <= 0:
            raise TopicsError(f"TOPIC_CONFIG__{key.upper()}__RETENTION_HOURS={retention:g}: use a positive number "
                              "of hours, or -1 to keep forever")
        replication = own.replication_factor if own and own.replication_factor else default_replication
        if settings.uses_embedded_broker:
            replication = 1  # one broker, one copy
        specs.append(TopicSpec(
            name=name,
            partitions=own.partitions if own and own.partitions else settings.topic_partitions,
            replication_factor=replication,
            compact=name in compacted,
            retention_hours=None if name in compacted else retention,
            min_retention_hours=minimum,
            needs=needs,
        ))
    return specs


def compare(spec: TopicSpec, state: Optional[TopicState]) -> Verdict:
    if state is None:
        return Verdict(spec, None)
    problems: list[str] = []
    unknown: list[str] = []
    notes: list[str] = []
    if state.partitions != spec.partitions:
        # Keys already spread over the existing partitions; the product works with any count.
        notes.append(f"{state.partitions} partitions, the plan says {spec.partitions}")
    if spec.replication_factor is not None and state.replication_factor < spec.replication_factor:
        problems.append(f"replication factor {state.replication_factor} < {spec.replication_factor}")
    policy = state.configs.get("cleanup.policy")
    if spec.compact:
        if policy is None:
            unknown.append("the broker does not report cleanup.policy (must be compact)")
        elif "compact" not in policy:
            problems.append(f"cleanup.policy={policy}, must be compact (only the latest record per key matters)")
    elif policy is not None and "compact" in policy:
        problems.append(f"cleanup.policy={policy}: compaction would drop events that share a key")
    if spec.min_retention_hours is not None:
        verdict = _retention(state.configs, spec.min_retention_hours, spec.needs)
        if verdict is not None:
            (unknown if verdict.startswith("the broker") else problems).append(verdict)
    return Verdict(spec, state, tuple(problems), tuple(unknown), tuple(notes))


def _retention(configs: dict[str, str], minimum: float, needs: str) -> Optional[str]:
    raw = configs.get("retention.ms")
    if raw is None:
        return f"the broker does not report retention.ms (needs >= {minimum:g} h: {needs})"
    hours = int(raw) / HOUR_MS
    if int(raw) >= 0 and hours < minimum:
        return f"retention {hours:g} h < {minimum:g} h: {needs}"
    size = configs.get("retention.bytes")
    if size is not None and int(size) >= 0:
        return f"retention.bytes={size} may delete sales before {minimum:g} h: {needs}"
    return None


def retention_text(configs: dict[str, str]) -> str:
    raw = configs.get("retention.ms")
    if raw is None:
        return "unknown"
    return "forever" if int(raw) < 0 else f"{int(raw) / HOUR_MS:g} h"


async def describe(config: KafkaClientConfig, names: list[str]) -> ClusterState:
    """The broker count, and the state of those of `names` that exist. Only existing topics are
    described: the embedded broker creates a topic that a metadata request names."""
    admin = AIOKafkaAdminClient(**config.aiokafka())
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        existing = set(await admin.list_topics())
        present = [n for n in names if n in existing]
        states: dict[str, TopicState] = {}
        if present:
            configs = await _configs(admin, present)
            for topic in await admin.describe_topics(present):
                parts = topic["partitions"]
                replicas = min((len(p.get("replicas", ())) for p in parts), default=0)
                states[topic["topic"]] = TopicState(topic["topic"], len(parts), replicas, configs.get(topic["topic"], {}))
        return ClusterState(brokers, states)
    finally:
        await admin.close()


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Topic configs the broker reports (Apache Kafka: all, with defaults; the embedded broker:
    only those set on creation; a broker without DescribeConfigs: none)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    except Exception:  # noqa: BLE001 - not supported or not allowed: every config is then unknown
        return {}
    out: dict[str, dict[str, str]] = {}
    for response in responses:
        for error_code, _msg, _type, name, entries, *_ in response.resources:
            if error_code == 0:
                out[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return out


def new_topic(spec: TopicSpec) -> NewTopic:
    if spec.replication_factor is None:
        raise TopicsError(f"{spec.name} is missing and TOPIC_REPLICATION_FACTOR is not set")
    return NewTopic(name=spec.name, num_partitions=spec.partitions, replication_factor=spec.replication_factor,
                    topic_configs=spec.configs())


async def create_missing(config: KafkaClientConfig, settings: Settings) -> list[str]:
    """Create the planned topics that do not exist; return their names. Refuses, naming them,
    when one has no replication factor chosen."""
    cluster = await describe(config, list(settings.topics.model_dump().values()))
    missing = [s for s in plan(settings, cluster.brokers) if s.name not in cluster.topics]
    unset = [s.name for s in missing if s.replication_factor is None]
    if unset:
        raise TopicsError(f"topics missing on {config.bootstrap_servers} ({cluster.brokers} brokers): "
                          f"{', '.join(unset)}; set TOPIC_REPLICATION_FACTOR and run `stream-app topics create` "
                          "(or create them yourself)")
    if not missing:
        return []
    if not settings.uses_embedded_broker and settings.topic_replication_factor is None:
        log.warning("creating %s with one copy each: the cluster has one broker (TOPIC_REPLICATION_FACTOR "
                    "chooses)", ", ".join(s.name for s in missing))
    await create(config, missing)
    return [s.name for s in missing]


async def create(config: KafkaClientConfig, specs: Sequence[TopicSpec]) -> None:
    """Create `specs`. The broker answers per topic, without raising (a replication factor above
    the broker count, a config it refuses): any such error raises here, except a topic another
    process created meanwhile."""
    admin = AIOKafkaAdminClient(**config.aiokafka())
    await admin.start()
    try:
        response = await admin.create_topics([new_topic(s) for s in specs])
    finally:
        await admin.close()
    for name, code, *message in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            detail = (message[0] if message and message[0] else None) or kafka_errors.for_code(code).__name__
            raise TopicsError(f"creating {name} on {config.bootstrap_servers} failed: {detail}")


async def check(config: KafkaClientConfig, settings: Settings) -> list[Verdict]:
    """Every planned topic against the cluster."""
    cluster = await describe(config, list(settings.topics.model_dump().values()))
    return [compare(spec, cluster.topics.get(spec.name)) for spec in plan(settings, cluster.brokers)]
