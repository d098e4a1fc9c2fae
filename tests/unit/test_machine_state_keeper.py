"""The state keeper's bookkeeping of which partition a machine's state belongs to."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from agents.maintenance_state import MachineStateKeeper
from schemas import SensorReading
from stream_app.intake import RawMessage
from stream_app.settings import Settings


class _Scorer:
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    def forget(self, machines: list[str]) -> int:
        self.forgotten += machines
        return len(machines)


def _reading(machine: str, n: int) -> SensorReading:
    return SensorReading(event_id=f"{machine}-{n}", machine_id=machine, ts=datetime(2026, 1, 1, tzinfo=timezone.utc),
                         sensors={"vibration_rms": 1.0})


def test_a_machine_whose_readings_move_partition_is_not_forgotten_with_the_old_one() -> None:
    async def run(fn: Any, *args: Any) -> Any:
        return fn(*args)

    keeper = MachineStateKeeper(Settings(), run)
    keeper.warm.update({0, 1})
    keeper.admit([_reading("m1", 0), _reading("m2", 0)], [RawMessage("sensor-readings", 0, 0, b"", b""),
                                                          RawMessage("sensor-readings", 0, 1, b"", b"")])
    # m1's readings now arrive on partition 1 (the producer keyed them otherwise)
    keeper.admit([_reading("m1", 1)], [RawMessage("sensor-readings", 1, 0, b"", b"")])
    assert keeper.members[0] == {"m2"} and keeper.members[1] == {"m1"}
    assert keeper.dirty[0] == {"m2"}  # the old partition's snapshot no longer writes m1,
    assert keeper.tombstones[0] == {"m1"}  # and deletes its record there
    scorer = _Scorer()
    asyncio.run(keeper.revoked([scorer], {0}))
    assert scorer.forgotten == ["m2"]
    assert keeper.partition_of == {"m1": 1}
