"""The processes a case runs against the one embedded broker: `stream-app worker` processes and
the bare Faust agent, each with its own topics, so cases sharing the broker do not see each
other's outputs, and a stream's agents that a case does not drive read empty topics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from stream_app.settings import Settings, Topics
from stream_app.worker import contract_topics

TOPIC_FIELDS = list(Topics().model_dump())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case_topics(case: str, feed_topics: Mapping[str, str]) -> dict[str, str]:
    """Every contract topic of a case: the feed's inputs, and `<case>.<topic>` for the rest."""
    defaults = Topics().model_dump()
    return {f: feed_topics.get(f, f"{case}.{defaults[f]}") for f in TOPIC_FIELDS}


def all_topic_names(topics: Mapping[str, str]) -> list[str]:
    return contract_topics(Settings(topics=Topics(**topics)))


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class Launcher:
    """Starts processes against `bootstrap`; logs and data under `work_dir`."""

    bootstrap: str
    model_dir: Path
    work_dir: Path

    def env(self, name: str, app_id: str, topics: Mapping[str, str], extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "MODEL_DIR": str(self.model_dir),
            "DATA_DIR": str(self.work_dir / "data" / name),
            "APP_ID": app_id,
            "METRICS_PORT": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        env.update({f"TOPICS__{f.upper()}": topic for f, topic in topics.items()})
        env.update(extra or {})
        return env

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        log_path = self.work_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, *argv], env=env, stdout=open(log_path, "ab"),  # noqa: SIM115 - owned by the child
            stderr=subprocess.STDOUT,
        )
        return Process(name, proc, log_path)

    def worker(self, name: str, app_id: str, topics: Mapping[str, str], extra: Optional[Mapping[str, str]] = None) -> Process:
        return self._start(name, ["-m", "stream_app", "worker", "--loglevel", "warning"], self.env(name, app_id, topics, extra))

    def bare_agent(self, name: str, app_id: str, input_topic: str, output_topic: str) -> Process:
        return self._start(name, ["-m", "load_tests.bare_agent", input_topic, output_topic], self.env(name, app_id, {}))

    def quix(self, name: str, app_id: str, input_topic: str, output_topic: str) -> Process:
        return self._start(name, ["-m", "load_tests.quix_forward", input_topic, output_topic], self.env(name, app_id, {}))
