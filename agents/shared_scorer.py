"""A stream's one scorer, shared by the stream's agents: loaded once, in the stream's single
inference thread (per-entity state is not shared across threads, and one thread keeps each
entity's events in order), replaced by its rules-only twin when the model fails at
inference, and following the model registry without a restart:

* Hot reload: `watch` polls the registry's pointers (two small files). When CURRENT names
  another version (a promotion or a rollback), that version is loaded in the inference thread
  and served from the next batch on; the batch in flight finishes on the old one, so no event
  is dropped or scored twice. Every output names the version that produced it.
* Shadow: when CANDIDATE names a version (streams that support it), it scores every batch
  beside the served one; its results ride along on the served results (`shadow`) and are
  published tagged, to the shadow topic, never as alerts. Promoting the candidate then swaps
  in the shadow scorer itself, warm: its per-entity state saw every event since it started.
* A/B: a candidate set with a share (`stream-app models candidate NAME VERSION --share 0.1`)
  also serves that share of entities, chosen by a stable hash of the entity id so every worker
  agrees and an entity stays on one side: there its results are the published ones (alerts
  and explanations included) and the current version's ride along as the shadow. Both still
  score every entity, so both keep warm state and both are counted on the same events.
* Live accuracy: counters per version over one window (since the shadow started), written to
  the registry's live files for the promotion gate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import socket
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Generic, Optional, TypeVar

from stream_app import metrics
from stream_app.lifecycle.live import LiveStats, write_live
from stream_app.registry import ModelRegistry, ModelVersion
from stream_app.scoring.contract import StreamScorer
from stream_app.settings import Settings
from stream_app.streams import StreamDeclaration

log = logging.getLogger(__name__)


S = TypeVar("S", bound=StreamScorer)


@dataclasses.dataclass
class LiveCounts:
    scored: int = 0
    alerts: int = 0
    outcomes_alerted: int = 0
    outcomes_missed: int = 0


class SharedScorer(Generic[S]):
    # Streams whose per-entity state is private to the scorer can run a candidate beside it.
    supports_shadow = False

    def __init__(
        self,
        declaration: StreamDeclaration,
        settings: Settings,
        load: Callable[[], S],
        registry: Optional[ModelRegistry] = None,
    ) -> None:
        self.declaration = declaration
        self.stream = stream = declaration.name
        self.model_name = declaration.model_name
        self.settings = settings
        self.registry = registry
        self._load = load
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{stream}-scoring")
        self._scorer: Optional[asyncio.Future[S]] = None
        self.serving: Optional[S] = None  # what the inference thread scores with
        self.shadow: Optional[S] = None
        self.share = 0.0  # of entities the shadow (candidate) serves: A/B
        self.pointer: Optional[str] = None  # the CURRENT version last acted on
        self.live: dict[Optional[str], LiveCounts] = {}
        self.live_since = datetime.now(timezone.utc)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"

    async def get(self) -> S:
        if self._scorer is None:
            if self.registry is not None:
                self.pointer = self.registry.pointer_state(self.model_name).current
            self._scorer = asyncio.get_running_loop().run_in_executor(self.executor, self._load)
            scorer = await self._scorer
            self._serve(scorer, None)
            log.info("%s scorer ready: model version %s", self.stream, scorer.model_version or "none (rules only)")
        return await self._scorer

    def _serve(self, scorer: S, previous: Optional[str]) -> None:
        if self.serving is not None:
            metrics.MODEL_INFO.labels(self.stream, self.model_name, previous or "none").set(0)
        future: asyncio.Future[S] = asyncio.get_running_loop().create_future()
        future.set_result(scorer)
        self._scorer, self.serving = future, scorer
        metrics.MODEL_INFO.labels(self.stream, self.model_name, scorer.model_version or "none").set(1)
        # What is loaded by now (libraries, the app, the models: hundreds of thousands of
        # objects) lives as long as the worker. Out of the collector's sight, since each full pass
        # over it stopped the worker for over 100 ms (load_tests/hot_path.py times one). Garbage
        # first (a replaced model's cycles), so that none is frozen; refcounting still frees what
        # is dropped later.
        gc.collect()
        gc.freeze()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # --- scoring (inference thread) -------------------------------------------------------------
    def score_batch(self, events: list[Any]) -> list[Any]:
        """Score with the served version, and with the shadow one beside it (its failures never
        touch the served results)."""
        serving, shadow = self.serving, self.shadow
        assert serving is not None
        results = serving.score_batch(events)
        self._count(serving.model_version, results)
        if shadow is None:
            return results
        try:
            shadowed = self.score_shadow(shadow, events)
        except Exception:
            log.exception("%s shadow %s failed on a batch; the served results are unaffected", self.stream, shadow.model_version)
            return results
        self._count(shadow.model_version, shadowed)
        if not self.share:
            return [dataclasses.replace(r, shadow=s) for r, s in zip(results, shadowed)]
        return [dataclasses.replace(s, shadow=r) if self.candidate_serves(e) else dataclasses.replace(r, shadow=s)
                for e, r, s in zip(events, results, shadowed)]

    def score_shadow(self, shadow: S, events: list[Any]) -> list[Any]:
        return shadow.score_batch(events)

    def entity_of(self, event: Any) -> Optional[str]:
        """The id A/B splits on: the entity the stream's input topic is keyed by."""
        return self.declaration.key_of(event)

    def candidate_serves(self, event: Any) -> bool:
        entity = self.entity_of(event)
        return entity is not None and zlib.crc32(entity.encode()) < self.share * 2**32

    def count_incident(self, version: Optional[str], alerted: bool) -> None:
        """Ground truth joined back: an incident (failure, confirmed attack) the version alerted
        on before it, or missed. Counted for the served and the shadow version alike."""
        counts = self.live.setdefault(version, LiveCounts())
        if alerted:
            counts.outcomes_alerted += 1
        else:
            counts.outcomes_missed += 1

    def _count(self, version: Optional[str], results: list[Any]) -> None:
        counts = self.live.setdefault(version, LiveCounts())
        counts.scored += len(results)
        counts.alerts += sum(1 for r in results if getattr(r, "alert", None) is not None)

    def fall_back(self, exc: Exception) -> Callable[[list[Any]], list[Any]]:
        """The model failed at inference: serve the stream from its rules (every agent of the
        stream) until a version is promoted, saying why on every output."""
        failed = self.serving
        assert failed is not None
        reason = f"model unavailable: {self.model_name} {failed.model_version} failed at inference ({type(exc).__name__}: {exc})"
        self._serve(failed.rules_only(reason[:400]), failed.model_version)  # type: ignore[arg-type]
        return self.score_batch

    # --- following the registry -----------------------------------------------------------------
    async def watch(self, interval_s: float) -> None:
        """Poll the registry's pointers; never dies (a bad version is logged and skipped)."""
        assert self.registry is not None
        await self.get()
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: following the model registry failed; serving %s", self.stream,
                              self.serving.model_version if self.serving else None)

    async def sync(self) -> None:
        assert self.registry is not None
        state = self.registry.pointer_state(self.model_name)
        if state.current is not None and state.current != self.pointer:
            await self._switch(state.current)
        candidate = state.candidate if self.supports_shadow and state.candidate != state.current else None
        if candidate != (self.shadow.model_version if self.shadow else None):
            await self._shadow(candidate)
        share = state.candidate_share if self.shadow is not None else 0.0
        if share != self.share:
            log.warning("%s: candidate %s serves %.0f%% of entities", self.stream,
                        self.shadow.model_version if self.shadow else None, 100 * share)
            self.share = share
        metrics.CANDIDATE_SHARE.labels(self.stream).set(self.share)
        self.write_live()

    async def _switch(self, version: str) -> None:
        assert self.registry is not None and self.serving is not None
        self.pointer = version  # acted on, even if unusable: no reload loop on a broken version
        old, previous = self.serving, self.serving.model_version
        if self.shadow is not None and self.shadow.model_version == version:
            new = await self.run(self.take_over_shadow, old)
            how = "warm from shadow"
        else:
            try:
                new = await self.run(self.successor, old, self.registry.get(self.model_name, version))
            except Exception as exc:
                log.error("%s: %s %s cannot be served (%s: %s); still serving %s", self.stream, self.model_name,
                          version, type(exc).__name__, exc, previous)
                return
            how = "loaded"
        self._serve(new, previous)
        metrics.MODEL_SWITCHES.labels(self.stream, version).inc()
        log.warning("%s now serves %s %s (was %s; %s)", self.stream, self.model_name, version, previous, how)

    async def _shadow(self, version: Optional[str]) -> None:
        assert self.registry is not None and self.serving is not None
        shadow: Optional[S] = None
        self.share = 0.0  # until the new shadow is in place
        if self.shadow is not None:
            _close(self.shadow)
        if version is not None:
            try:
                shadow = await self.run(self.shadow_of, self.serving, self.registry.get(self.model_name, version))
            except Exception as exc:
                log.error("%s: candidate %s %s cannot score (%s: %s)", self.stream, self.model_name, version, type(exc).__name__, exc)
        self.shadow = shadow
        # A new comparison window: both versions counted over the same events from now on.
        self.live = {}
        self.live_since = datetime.now(timezone.utc)
        log.warning("%s shadow: %s", self.stream, f"{self.model_name} {version}" if shadow else "none")

    def take_over_shadow(self, old: S) -> S:
        """In the inference thread (no batch sees half a switch): the promoted shadow becomes
        the served scorer."""
        new, self.shadow, self.share = self.shadow, None, 0.0
        assert new is not None
        _close(old)
        return new

    def shadow_of(self, serving: S, version: ModelVersion) -> S:
        """In the inference thread: a scorer of `version` to run beside `serving` (the contract's
        beside_version)."""
        return serving.beside_version(version)  # type: ignore[return-value]

    def successor(self, old: S, version: ModelVersion) -> S:
        """In the inference thread: the scorer that takes over from `old` for `version` (the
        contract's successor; it may be `old` itself, given the new model)."""
        return old.successor(version)  # type: ignore[return-value]

    def write_live(self) -> None:
        """Live counters of the served and shadow versions, for the promotion gate."""
        if self.registry is None:
            return
        since = self.live_since.isoformat()
        for version, counts in list(self.live.items()):
            if version is not None:
                write_live(self.registry, self.model_name, self.live_stats(version, counts, since), worker=self.worker_id)

    def live_stats(self, version: str, counts: LiveCounts, since: str) -> LiveStats:
        # Alerts not matched to an incident: an upper bound on false alerts while the newest
        # alerts still wait out their horizon, measured alike for both versions.
        false_alerts = max(0, counts.alerts - counts.outcomes_alerted)
        return LiveStats(version=version, since=since, false_alerts=false_alerts, **dataclasses.asdict(counts))


def _close(scorer: Any) -> None:
    """Stop what a scorer no longer used runs in the background (supply chain: embeddings)."""
    close = getattr(scorer, "close", None)
    if close is not None:
        close()
