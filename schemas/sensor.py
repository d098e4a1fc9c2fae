"""Machine sensor readings and the maintenance outcomes (ground truth) joined back to them."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator

from schemas.common import WHOLE_NUMBER, EntityId, FiniteFloat, InputEvent, Name


class SensorReading(InputEvent):
    """One reading of a machine's sensors. `sensors` is an open map: the model's feature list
    comes from its training data; a null value means the sensor did not report."""

    machine_id: EntityId
    sensors: dict[Name, Optional[FiniteFloat]] = Field(min_length=1, max_length=256)
    machine_type: Optional[Name] = None
    operating_mode: Optional[Name] = None
    # JSON-safe integers only; "5" and true are type errors, as for every number
    cycle: Optional[Annotated[int, Field(ge=0, le=2**53), WHOLE_NUMBER]] = None


class MaintenanceOutcome(InputEvent):
    """What actually happened to a machine: a failure (ground truth for the failure model) or a
    repair/replacement that resets its degradation."""

    machine_id: EntityId
    outcome: Literal["failure", "repair"] = "failure"
    failure_mode: Optional[Name] = None

    @field_validator("failure_mode")
    @classmethod
    def _lower(cls, value: Optional[str]) -> Optional[str]:
        return value.lower() if value else value
