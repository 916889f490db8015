"""The e2e harness's derived figures, from readings given to it, and the events it sends (no
load, no server)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

from millstream.bench.e2e import (
    FULL,
    JS_MARKER,
    MARKER,
    SINK_RETRIES,
    Load,
    cpu_line,
    cpu_per_event,
    cpu_readings,
    find_saturation,
    measure,
    slow_consumers,
    spread,
    steal_note,
    steal_share,
    stock_move_templates,
    telemetry_templates,
)


def test_steal_share_is_the_hypervisors_part_of_the_time_between_two_readings() -> None:
    # user nice system idle iowait irq softirq steal (guest fields after that are not summed)
    before = [100, 0, 50, 800, 0, 0, 0, 50, 7, 7]
    after = [400, 0, 150, 1300, 0, 0, 0, 150, 9, 9]
    # 1,000 ticks passed, 100 of them stolen
    assert steal_share(before, after) == 0.1
    assert steal_share(before, before) is None, "no time passed: no share"
    assert steal_share(None, after) is None and steal_share(before[:4], after[:4]) is None


def test_a_slowed_phase_says_so_and_an_undisturbed_one_says_nothing() -> None:
    assert steal_note(0.005) == ""
    assert steal_note(None) == ""
    assert "hypervisor steal 12%" in steal_note(0.12)


def test_the_server_share_alone_bounds_the_path() -> None:
    line = cpu_line({"router_us_per_event": 16.0, "nats_server_us_per_event": 40.0})
    assert line.startswith("router 16.0 µs, nats server 40.0 µs")
    # 40 µs per event on every core at once: 25,000 events/s per core
    cores = os.cpu_count() or 1
    assert f"at most {cores * 25_000:,}/s on {cores} cores" in line


def test_spread_is_range_over_median() -> None:
    assert spread([90.0, 100.0, 110.0]) == 0.2


def test_cpu_per_event_leaves_out_a_process_without_both_readings() -> None:
    procs: list[tuple[str, int | None]] = [("me", os.getpid()), ("absent", None)]
    before = cpu_readings(procs)
    assert before["absent"] is None
    cpu = cpu_per_event(before, procs, 1_000)
    if before["me"] is None:  # no /proc: nothing to report
        assert cpu == {}
    else:
        assert set(cpu) == {"me_us_per_event"} and cpu["me_us_per_event"] >= 0
    assert cpu_per_event(before, procs, 0) == {}, "no events: no figure"
    assert cpu_per_event({"me": None, "absent": None}, procs, 1_000) == {}


class CutLoad:
    """Stands in for `Load`: its first `cut` runs report that the sink lost its connection."""

    def __init__(self, cut: int) -> None:
        self.cut, self.runs = cut, 0

    def run(self, progress: object = None) -> dict[str, Any]:
        self.runs += 1
        closed = "0.50 s into the run: the server closed the connection"
        return {
            "sent": 1000, "offered_per_s": 1000.0, "delivered_per_s": 500.0,
            "output_per_s": 500.0, "lost": 500 if self.runs <= self.cut else 0, "duplicates": 0,
            "latency_ms": {"p50": 1.0, "p99": 2.0, "p999": 3.0, "max": 4.0},
            "sink_closed": closed if self.runs <= self.cut else None, "attempt": self.runs,
        }  # fmt: skip


def test_a_run_that_lost_its_sink_is_noted_and_measured_again() -> None:
    load, closed = CutLoad(cut=1), []
    r = measure(cast(Load, load), "ramp 40,000/s", closed)
    # the second attempt kept its sink: that one is the measurement
    assert load.runs == 2 and r["attempt"] == 2 and r["sink_closed"] is None
    assert closed == ["ramp 40,000/s: the sink's connection ended 0.50 s into the run: "
                      "the server closed the connection"]  # fmt: skip


def test_the_harness_gives_up_after_its_retries_and_keeps_the_last_run() -> None:
    load, closed = CutLoad(cut=99), []
    r = measure(cast(Load, load), "saturation 1/3", closed)
    assert load.runs == 1 + SINK_RETRIES and len(closed) == 1 + SINK_RETRIES
    assert r["attempt"] == 1 + SINK_RETRIES and r["sink_closed"], r
    # a run that must not be repeated (the first load after start) is only noted
    load, closed = CutLoad(cut=99), []
    measure(cast(Load, load), "first load", closed, retry=False)
    assert load.runs == 1 and len(closed) == 1


def test_the_saturation_search_repeats_only_the_rate_that_saturates() -> None:
    # A router that takes 100k/s whole, behind a ramp that stopped on a pause at 40k/s.
    calls: list[tuple[float, int]] = []

    def run_at(rate: float, i: int) -> dict[str, Any]:
        calls.append((rate, i))
        return {"output_per_s": min(rate, 100_000.0 - i)}

    rate, runs = find_saturation(run_at, 40_000.0, FULL)
    # 40k, 50k, 62.5k, 78k and 98k each kept up on their first run, so each ran once; 122k
    # is the first it did not keep up with, measured three times for the median and spread.
    assert [round(r) for r, _ in calls] == [40_000, 50_000, 62_500, 78_125, 97_656] + [122_070] * 3
    assert rate == 122_070.3125 and [r["output_per_s"] for r in runs] == [100_000, 99_999, 99_998]


def test_the_saturation_search_stops_at_the_top_of_the_ramp() -> None:
    # At the top it cannot offer more: three runs, whether or not it kept up.
    calls: list[float] = []

    def run_at(rate: float, i: int) -> dict[str, Any]:
        calls.append(rate)
        return {"output_per_s": rate}

    rate, runs = find_saturation(run_at, FULL.ramp_to / 1.25, FULL)
    assert calls == [FULL.ramp_to / 1.25, FULL.ramp_to, FULL.ramp_to, FULL.ramp_to]
    assert rate == FULL.ramp_to and len(runs) == 3


def test_slow_consumers_are_the_server_logs_lines_that_say_so(tmp_path: Path) -> None:
    log = tmp_path / "nats-server.log"
    cut = ('[7] 2026/12/07 00:52:01.123456 [INF] 127.0.0.1:54321 - cid:9 - '
           '"v0.44.0:rust:millstream-loadgen-sink" - Slow Consumer Detected: '
           'MaxPending of 67108864 Exceeded')  # fmt: skip
    log.write_text("[7] 2026/12/07 00:52:00.000001 [INF] Server is ready\n" + (cut + "\n") * 3)
    assert slow_consumers(log) == [cut] * 3
    assert slow_consumers(log, limit=2) == [cut] * 2
    assert slow_consumers(tmp_path / "missing.log") == []


def _render(body: str) -> str:
    # what the load generator substitutes, with small numbers
    return body.replace("{stamp}", "1_2").replace("{ts}", "3").replace("{seq}", "4")


def test_the_e2e_events_read_from_their_file_render_as_json() -> None:
    telemetry = telemetry_templates()
    assert len(telemetry) == 8
    for subject, body in telemetry:
        doc = json.loads(_render(body))
        assert set(doc) == {"plant", "machine", "line", "metric", "value", "unit", "ts", "quality"}
        assert subject == f"mes.{doc['plant']}.{doc['machine']}.telemetry"
        assert doc["ts"] == 3 and MARKER + "1_2" in _render(body)
    ((subject, body),) = stock_move_templates()
    doc = json.loads(_render(body))
    assert subject == "odoo.stock_move" and doc["_id"] == 4 and doc["write_date"]
    assert JS_MARKER + "1_2" in _render(body)
