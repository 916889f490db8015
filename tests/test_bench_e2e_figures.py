"""The e2e harness's derived figures, from readings given to it (no load, no server)."""

from __future__ import annotations

import os

from millstream.bench.e2e import (
    cpu_line,
    cpu_per_event,
    cpu_readings,
    spread,
    steal_note,
    steal_share,
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
