"""`millstream bench e2e` end to end at a toy scale: every router starts, carries load and is
measured; the JetStream path loses and duplicates nothing. (The figures themselves are
benchmarks, not test assertions: BENCHMARKS.md.)"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from millstream.bench.core import find_config
from millstream.bench.e2e import (
    ROUTERS,
    Load,
    Plan,
    run_e2e,
    summary,
    telemetry_templates,
)
from millstream.transport import EmbeddedNats

pytestmark = pytest.mark.integration

TOY = Plan(ramp_from=3_000, ramp_to=3_000, ramp_s=1.0, saturation_s=1.0, latency_s=1.0,
           warmup_s=0.2, runs=1, js_events=3_000)  # fmt: skip


def test_every_router_is_measured_and_the_jetstream_path_is_exact(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_e2e(find_config(None).resolve(), TOY, tmp_path)
    assert result["benchmark"] == "e2e"
    # the run's own duration, as the summary's first line shows it
    assert 0 < result["elapsed_s"] <= time.monotonic() - started, result["elapsed_s"]
    assert f"{result['elapsed_s']:.0f} s" in summary(result).splitlines()[0]
    assert [r["name"] for r in result["results"]] == list(ROUTERS)
    for r in result["results"]:
        # 3k/s is far below any router's capacity: everything offered is delivered, and the
        # figure is reported as a lower bound, not as the router's saturation
        assert r["events_per_s"] > 2_500, r
        assert r["saturated"] is False, r
        assert r["latency"] and all(p["p99_ms"] > 0 for p in r["latency"]), r
        # the fixed load from the moment the router is ready, every event of it accounted for
        first = r["first_load"]
        assert first["offered_per_s"] == 25_000 and first["lost"] == 0, first
        assert 0 < first["p50_ms"] <= first["p99_ms"] <= first["max_ms"], first
        assert all(p["lost"] == 0 for p in r["latency"] if p["offered_per_s"] <= 3_000), r
        # the CPU each router and the server spent per event at 25k/s offered
        cpu = r["cpu_at_25k"]
        assert cpu["router_us_per_event"] > 0 and cpu["nats_server_us_per_event"] > 0, r
        # and at every load point the same two figures (at the toy's few hundred events a
        # point can round to 0 clock ticks, so only their presence is certain there)
        for p in r["latency"]:
            assert set(p["cpu"]) == {"router_us_per_event", "nats_server_us_per_event"}, p
        at_25k = [p["cpu"] for p in r["latency"] if p["offered_per_s"] == 25_000]
        assert at_25k == [cpu], r
    js = result["jetstream"]
    assert js["lost"] == 0 and js["duplicates"] == 0, js
    assert js["stored"] == js["sent"] == 3_000, js
    assert js["complete"], js
    ceiling = js["ceiling"]
    assert ceiling["stored"] == ceiling["sent"] == 3_000 and ceiling["duplicates"] == 0, ceiling
    # what each process spent per stored event on the JetStream path; the router and the
    # server both do work for every one of the 3,000 events (startup is not counted)
    for path in (js, ceiling):
        assert set(path["cpu"]) == {"router_us_per_event", "nats_server_us_per_event",
                                    "generator_and_sink_us_per_event"}, path  # fmt: skip
        assert path["cpu"]["nats_server_us_per_event"] > 0, path
    # the harness's own latency with no router between generator and sink: every event of
    # the fixed load arrives, and the summary puts it next to the p99 target
    floor = result["floor"]
    assert floor["offered_per_s"] == 25_000 and floor["delivered_per_s"] > 24_000, floor
    assert 0 < floor["p50_ms"] <= floor["p99_ms"] <= floor["p999_ms"], floor
    assert "with no router" in summary(result)
    assert "first 25,000/s after start" in summary(result)
    assert "CPU per stored event" in summary(result)
    assert "millstream / passthrough" in summary(result)
    assert "NOT SATURATED" in summary(result)
    # no phase lost its sink: every figure above measured the routers, not the harness
    phases = [floor, *result["results"], js, ceiling]
    assert all(p["sink_closed"] == [] for p in phases), phases
    assert result["slow_consumers"] == [] and "HARNESS" not in summary(result)


def test_a_run_whose_sink_loses_its_connection_says_when_and_why(tmp_path: Path) -> None:
    # The server goes away at the run's first progress report (0.5 s in, events flowing) and
    # the sink's connection ends with it, as it does when nats-server cuts a starved sink off
    # as a slow consumer (which a test cannot provoke on demand: whether messages pile up for
    # the sink is up to the scheduler).
    templates = [("mfg.telemetry.cut", body) for _, body in telemetry_templates()]
    with EmbeddedNats(tmp_path / "nats") as server:
        stopping: list[threading.Thread] = []

        def stop_once(progress: dict[str, Any]) -> None:
            if not stopping and progress["sent"] > 0:
                stopping.append(threading.Thread(target=server.stop))
                stopping[0].start()

        load = Load(server.url, "mfg.telemetry.>", 25_000, 2.0, 0.2, templates=templates)
        r = load.run(stop_once)
        stopping[0].join()
    # the report says when and why the sink stopped counting; what it missed is lost
    assert r["sink_closed"], r
    assert re.fullmatch(r"\d+\.\d\d s into the run: (the server closed the connection|read: .+)",
                        r["sink_closed"]), r["sink_closed"]  # fmt: skip
    assert 0 < r["distinct"] < r["sent"] and r["lost"] == r["sent"] - r["distinct"], r
