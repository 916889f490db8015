"""Prometheus metrics: the lines an operator greps for, rendered from a data plane stats dict."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from millstream.metrics import (
    ConnectionCounters,
    MetricsServer,
    MillstreamCollector,
    latency_buckets,
)

STATS: dict[str, Any] = {
    "events_in": 1234,
    "by_status": {"routed": 1200, "duplicate": 20, "stale": 4, "dead_letter": 10},
    "by_reason": {"schema_invalid": 7, "unmapped_value": 3},
    "routes": {
        "quality-holds": {"out": 50, "duplicate": 1, "stale": 0, "dead_letter": 2, "failed": 0},
        "telemetry-history": {
            "out": 1100,
            "duplicate": 19,
            "stale": 0,
            "dead_letter": 0,
            "failed": 3,
        },
    },
    "lanes": {
        "critical": {
            "depth": 0,
            "capacity": 10_000,
            "shed": 0,
            "processed": 52,
            "batches": 13,
            "latency_bounds_ms": [1.0, 5.0, 10.0],
            "latency_counts": [40, 10, 1, 1],
            "latency_sum_ms": 95.5,
        },
        "standard": {
            "depth": 3,
            "capacity": 50_000,
            "shed": 0,
            "processed": 60,
            "latency_bounds_ms": [1.0, 5.0, 10.0],
            "latency_counts": [0, 0, 0, 0],
            "latency_sum_ms": 0.0,
        },
        "bulk": {
            "depth": 99_000,
            "capacity": 100_000,
            "shed": 4_500,
            "processed": 1100,
            "latency_bounds_ms": [1.0, 5.0, 10.0],
            "latency_counts": [100, 900, 90, 10],
            "latency_sum_ms": 4321.0,
        },
    },
    "nats": {
        "connected": True,
        "reconnects": 2,
        "disconnects": 3,
        "slow_consumer": 1,
        "egress": {"connected": True, "reconnects": 1, "disconnects": 1},
        "ingest": {"connected": False, "reconnects": 5, "disconnects": 6},
    },
    "outputs": {
        "published": 1150,
        "acked": 1140,
        "failed": 3,
        "naks": 5,
        "dead_letters": 10,
        "dead_letter_failed": 0,
    },
    "inputs": {"received": 1234, "acked": 1230},
}


def render(collector: MillstreamCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    # Whatever we yield must parse as the exposition format Prometheus scrapes.
    list(text_string_to_metric_families(text))
    return text


@pytest.fixture
def text() -> str:
    control = ConnectionCounters(connected=True, reconnects=1, disconnects=1, errors=4)
    return render(
        MillstreamCollector(
            lambda: STATS,
            control=control,
            objectives_ms={"critical": 10, "standard": 100, "bulk": 1000},
            info={"name": "acme-dus-router", "plan_version": "ae722bdfc3fb"},
        )
    )


@pytest.mark.parametrize(
    "line",
    [
        "millstream_events_in_total 1234.0",
        'millstream_event_outcomes_total{status="dead_letter"} 10.0',
        'millstream_events_total{route="quality-holds",status="dead_letter"} 2.0',
        'millstream_events_total{route="telemetry-history",status="failed"} 3.0',
        'millstream_events_total{route="telemetry-history",status="out"} 1100.0',
        'millstream_dead_letters_total{reason="schema_invalid"} 7.0',
        'millstream_lane_queue_depth{lane="bulk"} 99000.0',
        'millstream_lane_queue_capacity{lane="bulk"} 100000.0',
        'millstream_lane_shed_total{lane="bulk"} 4500.0',
        'millstream_lane_processed_total{lane="critical"} 52.0',
        'millstream_lane_batches_total{lane="critical"} 13.0',
        'millstream_lane_objective_seconds{lane="critical"} 0.01',
        'millstream_nats_connected{client="data"} 1.0',
        'millstream_nats_connected{client="control"} 1.0',
        'millstream_nats_reconnects_total{client="data"} 2.0',
        'millstream_nats_reconnects_total{client="control"} 1.0',
        'millstream_nats_slow_consumer_total{client="data"} 1.0',
        'millstream_nats_connected{client="egress"} 1.0',
        'millstream_nats_reconnects_total{client="egress"} 1.0',
        'millstream_nats_connected{client="ingest"} 0.0',
        'millstream_nats_reconnects_total{client="ingest"} 5.0',
        'millstream_nats_disconnects_total{client="ingest"} 6.0',
        'millstream_nats_errors_total{client="control"} 4.0',
        'millstream_outputs_total{result="acked"} 1140.0',
        'millstream_outputs_total{result="naks"} 5.0',
        'millstream_inputs_total{result="acked"} 1230.0',
        "millstream_plane_up 1.0",
        'millstream_config_info{name="acme-dus-router",plan_version="ae722bdfc3fb"} 1.0',
    ],
)
def test_scrape_shows(text: str, line: str) -> None:
    assert line in text.splitlines()


def test_lane_latency_is_a_cumulative_histogram_in_seconds(text: str) -> None:
    lines = text.splitlines()
    for le, count in [("0.001", 100), ("0.005", 1000), ("0.01", 1090), ("+Inf", 1100)]:
        assert f'millstream_lane_latency_seconds_bucket{{lane="bulk",le="{le}"}} {count}.0' in lines
    assert 'millstream_lane_latency_seconds_count{lane="bulk"} 1100.0' in lines
    assert 'millstream_lane_latency_seconds_sum{lane="bulk"} 4.321' in lines
    assert 'millstream_lane_latency_seconds_bucket{lane="critical",le="+Inf"} 52.0' in lines


@pytest.mark.parametrize(
    ("bounds", "counts", "expected"),
    [
        ([1.0, 2.0], [1, 2, 3], [("0.001", 1), ("0.002", 3), ("+Inf", 6)]),
        ([], [5], [("+Inf", 5)]),
        ([0.5], [], [("0.0005", 0), ("+Inf", 0)]),
        ([1.0, 2.0], [1, 2], [("0.001", 1), ("0.002", 3), ("+Inf", 3)]),  # no +Inf count
    ],
)
def test_latency_buckets(
    bounds: list[float], counts: list[int], expected: list[tuple[str, int]]
) -> None:
    assert latency_buckets(bounds, counts) == [(le, float(n)) for le, n in expected]


def test_a_failing_plane_does_not_fail_the_scrape() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("plane stopped")

    text = render(MillstreamCollector(broken, control=ConnectionCounters(reconnects=7)))
    lines = text.splitlines()
    assert "millstream_plane_up 0.0" in lines
    # the control connection is still reported, the plane's numbers are simply absent
    assert 'millstream_nats_reconnects_total{client="control"} 7.0' in lines
    assert not any(line.startswith("millstream_events_in_total") for line in lines)


def test_missing_sections_render_as_zero() -> None:
    text = render(MillstreamCollector(lambda: {"events_in": 3}))
    lines = text.splitlines()
    assert "millstream_events_in_total 3.0" in lines
    assert 'millstream_outputs_total{result="published"} 0.0' in lines
    assert 'millstream_nats_connected{client="data"} 0.0' in lines


def test_server_serves_metrics_over_http_and_stops() -> None:
    server = MetricsServer(MillstreamCollector(lambda: STATS), host="127.0.0.1", port=0).start()
    try:
        assert server.port != 0
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            body = resp.read().decode()
        assert "millstream_events_in_total 1234.0" in body.splitlines()
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)
