"""Shared fixtures of the pytest-benchmark suites: the example config, one batch of events per
pipeline stage, and the two implementations being compared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from millstream import Router
from millstream.bench import gen
from millstream.bench.baseline import Baseline
from millstream.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1000
"""Events per timed call: the batch size the data plane hands the core."""
NOW_MS = gen.arrival_ms(BATCH)

Events = list[tuple[str, bytes]]
Process = Callable[[Events], list[str]]
"""Run one batch through a fresh pipeline's state; returns each event's status/reason."""


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config(ROOT / "examples" / "manufacturing.yaml")


@pytest.fixture(scope="session")
def batches() -> dict[str, Events]:
    """One batch per stage at which the pipeline stops, generated once."""
    return {
        "decode_rejected": gen.malformed(BATCH),
        "source_schema_rejected": gen.outgoing_pickings(BATCH),
        "canonical_rejected": gen.telemetry_without_value(BATCH),
        "telemetry_routed": gen.telemetry(BATCH),
        "odoo": gen.odoo(BATCH),
        "mix": gen.generate(BATCH),
    }


IMPLEMENTATIONS = ["millstream", "python_baseline"]


def make_pipeline(name: str, config: Config) -> Callable[[Events], object]:
    """A fresh pipeline (empty dedup and stale state): a function running one batch."""
    if name == "millstream":
        router = Router(config, threads=1)  # per-event cost on one core, like the baseline
        return lambda events: router.process(events, now_ms=NOW_MS)
    baseline = Baseline(config)
    return lambda events: baseline.process(events, NOW_MS)


def outcomes(name: str, config: Config, events: Events, *, twice: bool = False) -> list[str]:
    """Each event's reason (dead letters) or status, from a fresh pipeline; with `twice` the
    batch runs once before, so these are the outcomes of its second run."""
    run = make_pipeline(name, config)
    if twice:
        run(events)
    result = run(events)
    if name == "millstream":
        from millstream import BatchResult

        assert isinstance(result, BatchResult)
        return [result[i].reason or result[i].status for i in range(len(result))]
    assert isinstance(result, list)
    return [o[3] or o[0] for o in result]
