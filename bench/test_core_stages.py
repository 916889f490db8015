"""Per-stage cost of the pipeline, core against the pure-Python baseline, read by difference.

Each benchmark times one call on a batch of 1000 events (so ns/event = the time / 1000) whose
events all stop at the same stage, with fresh dedup and stale state for every round. Stages,
cheapest first; each includes everything before it:

- decode_rejected: telemetry cut off mid-publish. Source lookup, size, decode.
- source_schema_rejected: delivery orders on the receipts subject. + the Odoo source schema.
- canonical_rejected: telemetry without a value. + mapping and the canonical check.
- telemetry_routed: distinct valid telemetry. + ids, routing, dedup (miss), output JSON.
- telemetry_duplicate: the same batch again. The same work, with dedup hits.
- odoo_dedup_stale: Odoo webhooks, ~5% re-sent, ~2% stale. Odoo mappings, both guards.
- mix: the `millstream bench core` mix. Everything.

Run: `pytest bench --benchmark-enable` (see bench/README.md). In the default test run the
benchmarks are disabled and each body runs once, so the outcome checks still run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from millstream.config import Config

from .conftest import BATCH, IMPLEMENTATIONS, Events, make_pipeline, outcomes

ROUNDS = 30


def _bench(
    benchmark: BenchmarkFixture,
    name: str,
    config: Config,
    events: Events,
    *,
    warm: bool = False,
) -> None:
    """Time one batch through a fresh pipeline per round (built outside the timing); with
    `warm`, the pipeline has already seen the batch once."""

    def setup() -> tuple[tuple[Callable[[Events], object]], dict[str, object]]:
        run = make_pipeline(name, config)
        if warm:
            run(events)
        return (run,), {}

    benchmark.extra_info["events_per_round"] = BATCH
    benchmark.pedantic(lambda run: run(events), setup=setup, rounds=ROUNDS, iterations=1)


@pytest.mark.benchmark(group="1 decode_rejected")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_decode_rejected(
    benchmark: BenchmarkFixture, impl: str, config: Config, batches: dict[str, Events]
) -> None:
    events = batches["decode_rejected"]
    assert set(outcomes(impl, config, events)) == {"malformed_json"}
    _bench(benchmark, impl, config, events)


@pytest.mark.benchmark(group="2 source_schema_rejected")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_source_schema_rejected(
    benchmark: BenchmarkFixture, impl: str, config: Config, batches: dict[str, Events]
) -> None:
    events = batches["source_schema_rejected"]
    assert set(outcomes(impl, config, events)) == {"schema_violation"}
    _bench(benchmark, impl, config, events)


@pytest.mark.benchmark(group="3 canonical_rejected")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_canonical_rejected(
    benchmark: BenchmarkFixture, impl: str, config: Config, batches: dict[str, Events]
) -> None:
    events = batches["canonical_rejected"]
    assert set(outcomes(impl, config, events)) == {"canonical_invalid"}
    _bench(benchmark, impl, config, events)


@pytest.mark.benchmark(group="4 telemetry_routed")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_telemetry_routed(
    benchmark: BenchmarkFixture, impl: str, config: Config, batches: dict[str, Events]
) -> None:
    events = batches["telemetry_routed"]
    assert set(outcomes(impl, config, events)) == {"routed"}
    _bench(benchmark, impl, config, events)


@pytest.mark.benchmark(group="5 telemetry_duplicate")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_telemetry_duplicate(
    benchmark: BenchmarkFixture, impl: str, config: Config, batches: dict[str, Events]
) -> None:
    events = batches["telemetry_routed"]
    assert set(outcomes(impl, config, events, twice=True)) == {"duplicate"}
    _bench(benchmark, impl, config, events, warm=True)


@pytest.mark.benchmark(group="6 odoo_dedup_stale")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_odoo_dedup_stale(
    benchmark: BenchmarkFixture, impl: str, config: Config, batches: dict[str, Events]
) -> None:
    events = batches["odoo"]
    got = Counter(outcomes(impl, config, events))
    assert got["duplicate"] and got["stale"] and got["routed"] > 0.9 * BATCH, got
    _bench(benchmark, impl, config, events)


@pytest.mark.benchmark(group="7 mix")
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_mix(
    benchmark: BenchmarkFixture, impl: str, config: Config, batches: dict[str, Events]
) -> None:
    events = batches["mix"]
    assert outcomes(impl, config, events) == outcomes("millstream", config, events)
    _bench(benchmark, impl, config, events)
