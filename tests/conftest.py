"""Shared fixtures. Integration tests get a real embedded broker (Tansu, Kafka wire protocol)
on a free loopback port, and real worker processes started with `python -m stream_app worker`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from stream_app.broker import EmbeddedBroker
from stream_app.registry import ModelRegistry


@pytest.fixture(scope="session", autouse=True)
def deterministic_torch() -> Iterator[None]:
    """Models trained inside tests come out the same on every run of a machine: deterministic
    kernels where torch has them, and one thread (the reduction order of several threads
    depends on the core count). Trainings seed themselves (their configs' `seed`)."""
    import torch

    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh broker per test: it starts in a fraction of a second and isolates topics."""
    with EmbeddedBroker(f"127.0.0.1:{free_port()}", log_file=tmp_path / "broker.log") as b:
        yield b


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small maintenance model trained once per test session on simulated history."""
    from stream_app.training.maintenance import TrainConfig, simulated_history, train_maintenance

    root = tmp_path_factory.mktemp("model_store")
    readings, outcomes = simulated_history(n_machines=24, seed=7)
    train_maintenance(ModelRegistry(root), readings, outcomes, TrainConfig.quick())
    return root


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start_worker(tmp_path: Path, broker: EmbeddedBroker) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start a worker subprocess against the test broker with extra env settings."""
    workers: list[WorkerProcess] = []

    def start(model_dir: Path, **env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(workers)}.log"
        full_env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "MODEL_DIR": str(model_dir),
            "DATA_DIR": str(tmp_path / f"data-{len(workers)}"),
            "METRICS_PORT": "0",
            "BROKER_REBALANCE_TIMEOUT_S": "4",
            # Logs reach the file as they are written: tests read them while the worker runs.
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", "worker"],
            stdout=open(log_path, "ab"),  # noqa: SIM115 - owned by the child
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        worker = WorkerProcess(proc, log_path)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
