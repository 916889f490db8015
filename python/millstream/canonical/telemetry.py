"""Machine telemetry: one observed value of one metric of one machine."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import CanonicalModel, Identifier, Timestamp


class MachineTelemetry(CanonicalModel):
    """One sample of one machine metric, in its canonical unit.

    Samples are observations, not versions of an entity: a late sample is still true, so
    telemetry routes deduplicate but do not use the stale-update guard.
    """

    type_name: ClassVar[str] = "machine_telemetry"

    machine_id: Identifier
    """The machine (asset) identifier as the plant names it, e.g. `press-07`."""
    plant: Identifier
    """The plant or site the machine belongs to, e.g. `dus`."""
    line: str | None = None
    """The production line or cell within the plant, when the source knows it."""
    metric: Identifier
    """What was measured, e.g. `oil_temp`, `hydraulic_pressure`, `spindle_speed`."""
    value: float
    """The measured value, already converted to `unit`."""
    unit: Identifier
    """The canonical unit name of `value` (e.g. `degC`, `kPa`, `rpm`), as named by the
    config's unit table, never the unit the sensor reported."""
    quality: Literal["good", "uncertain", "bad"] = "good"
    """Signal quality as the source judged it (OPC UA style): `good`; `uncertain` (e.g. sensor
    out of calibration, substituted value); `bad` (sensor failure, value not usable)."""
    observed_at: Timestamp
    """When the value was measured at the machine, not when it was received."""
