"""`millstream bench grpc` end to end at a toy scale: the router process starts with gRPC,
every batch is answered and accepted, Subscribe reads back every stored output, and the
unary latencies are measured. (The figures themselves are benchmarks: BENCHMARKS.md.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from millstream.bench.core import find_config
from millstream.bench.grpc import Plan, run_grpc, summary

pytestmark = pytest.mark.integration

TOY = Plan(telemetry=3_000, moves=1_000, batch=100, unary=80, runs=1)


def test_every_grpc_measure_runs_and_checks_its_events(tmp_path: Path) -> None:
    result = run_grpc(find_config(None).resolve(), TOY, tmp_path)
    assert result["benchmark"] == "grpc"
    by = {r["name"]: r for r in result["results"]}
    assert list(by) == ["publish_stream", "subscribe", "publish_unary"]
    (stream,) = by["publish_stream"]["runs"]
    assert stream["events"] == stream["accepted"] == 3_000
    moves = by["publish_stream"]["at_least_once"]
    assert moves["events"] == moves["accepted"] == 1_000
    (sub,) = by["subscribe"]["runs"]
    assert sub["events"] == 1_000
    assert by["publish_unary"]["calls"] == 30
    assert 0 < by["publish_unary"]["p50_ms"] <= by["publish_unary"]["p99_ms"]
    assert "publish_unary" in summary(result)
