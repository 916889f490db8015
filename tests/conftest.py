from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from millstream import Router, parse_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def root_handlers() -> Iterator[None]:
    """Puts the root logger back after each test. A test that runs the CLI in-process gets
    a handler on pytest's captured stderr, which is closed once the test ends; left on the
    root logger, it turns a later test's log line into a 'Logging error' traceback."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


EXAMPLES = ROOT / "examples"

# A small config used across tests: one JSON source, one Odoo source, routes with dedup,
# a stale guard, a predicate fan-out and a destination built from event data.
MINI = """
name: mini
limits: {max_bytes: 4096, max_depth: 8}
streams:
  QUALITY: {subjects: ["quality.>"]}
units:
  temp:
    degC: {to: degC}
    degF: {to: degC, factor: 0.5555555555555556, offset: -17.77777777777778}
mappings:
  telemetry:
    canonical: machine_telemetry
    id: "{machine_id}-{metric}-{observed_at}"
    time: observed_at
    fields:
      machine_id: machine
      plant: plant
      metric: metric
      value: {path: value, type: number, convert: {table: temp, from_path: unit}}
      unit: {path: unit, unit_name: temp}
      observed_at: {path: ts, type: timestamp}
  hold:
    canonical: quality_hold
    id: "odoo-quality.alert-{hold_id}-{updated_at}"
    time: updated_at
    fields:
      hold_id: _id
      name: name
      stage: stage_id
      status: {path: stage_id, map: {"1": open, "4": closed}}
      priority: {path: priority, type: integer}
      updated_at: {path: write_date, type: timestamp, format: odoo}
sources:
  - name: mes
    subjects: ["mes.*.telemetry"]
    mapping: telemetry
  - name: odoo_quality
    subjects: ["odoo.quality_alert"]
    profile: odoo_webhook
    mapping: hold
    schema:
      type: object
      required: [_model, _id, write_date]
      properties:
        _model: {const: quality.alert}
routes:
  - name: telemetry
    match: {subjects: ["mes.>"]}
    lane: bulk
    to: "plant.{plant}.{machine_id}"
    dedup: {key: "{ce.id}", window: 10s, capacity: 1000}
  - name: holds
    match: {types: [quality_hold]}
    lane: critical
    delivery: at_least_once
    to: "quality.hold.{status}"
    dedup: {key: "{ce.id}", window: 1h}
    stale: {key: "{hold_id}", version: updated_at}
  - name: urgent
    match: {types: [quality_hold]}
    when: "priority >= 2 && status == 'open'"
    lane: critical
    to: "alerts.quality"
"""


def mini_config(extra: str = "") -> str:
    return MINI + textwrap.dedent(extra)


@pytest.fixture
def make_router() -> Callable[..., Router]:
    def make(text: str = MINI, now: int = 1_795_000_000_000) -> Router:
        return Router(parse_config(text), clock=lambda: now)

    return make


@pytest.fixture
def router(make_router: Callable[..., Router]) -> Router:
    return make_router()
