"""A stream's one scorer, shared by the stream's agents: loaded once, in the stream's single
inference thread (per-entity state is not shared across threads, and one thread keeps each
entity's events in order), and replaced by its rules-only twin when the model fails at
inference."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Generic, Optional, Protocol, TypeVar

from stream_app import metrics
from stream_app.settings import Settings

log = logging.getLogger(__name__)


class Scorer(Protocol):
    model_version: Optional[str]

    def score_batch(self, events: list[Any]) -> list[Any]: ...

    def rules_only(self, reason: str) -> "Scorer": ...


S = TypeVar("S", bound=Scorer)


class SharedScorer(Generic[S]):
    def __init__(self, stream: str, model_name: str, settings: Settings, load: Callable[[], S]) -> None:
        self.stream = stream
        self.model_name = model_name
        self.settings = settings
        self._load = load
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{stream}-scoring")
        self._scorer: Optional[asyncio.Future[S]] = None

    async def get(self) -> S:
        if self._scorer is None:
            self._scorer = asyncio.get_running_loop().run_in_executor(self.executor, self._load)
            scorer = await self._scorer
            metrics.MODEL_INFO.labels(self.stream, self.model_name, scorer.model_version or "none").set(1)
            log.info("%s scorer ready: model version %s", self.stream, scorer.model_version or "none (rules only)")
        return await self._scorer

    def fall_back(self, exc: Exception) -> Callable[[list[Any]], list[Any]]:
        """The model failed at inference: serve the stream from its rules from now on (every
        agent of the stream), saying why on every output."""
        assert self._scorer is not None and self._scorer.done()
        failed = self._scorer.result()
        reason = f"model unavailable: {self.model_name} {failed.model_version} failed at inference ({type(exc).__name__}: {exc})"
        scorer = failed.rules_only(reason[:400])
        future: asyncio.Future[S] = asyncio.get_running_loop().create_future()
        future.set_result(scorer)  # type: ignore[arg-type]
        self._scorer = future
        metrics.MODEL_INFO.labels(self.stream, self.model_name, failed.model_version or "none").set(0)
        metrics.MODEL_INFO.labels(self.stream, self.model_name, "none").set(1)
        return scorer.score_batch
