"""The e2e harness's derived figures, from readings given to it, its time budget (on a fake
clock), and the events it sends (no load, no server)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import pytest

from millstream.bench.core import find_config
from millstream.bench.e2e import (
    BUDGET_S,
    END_MARGIN_S,
    FULL,
    JS_MARKER,
    MARKER,
    ON_PATH,
    QUICK,
    SINK_RETRIES,
    BenchError,
    Budget,
    Deadline,
    Load,
    Reading,
    SteadyWindow,
    climb_ramp,
    cpu_line,
    cpu_per_event,
    cpu_readings,
    default_budget_s,
    find_saturation,
    jetstream_figure,
    jetstream_s,
    measure,
    minimum_budget_s,
    phase_costs,
    ratio_if_router_as_cheap,
    run_e2e,
    saturation,
    slow_consumers,
    spread,
    steal_note,
    steal_share,
    stock_move_templates,
    summary,
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

    def cost_s(self) -> float:
        return 5.0

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


def test_a_run_that_lost_its_sink_is_not_measured_again_past_the_deadline() -> None:
    # 4 s left, a run takes 5: the lost run stays the measurement, and the result says why
    load, closed = CutLoad(cut=99), []
    deadline = Deadline(4.0, FakeClock())
    r = measure(cast(Load, load), "ramp 40,000/s", closed, deadline=deadline)
    assert load.runs == 1 and r["sink_closed"] and len(closed) == 1
    assert deadline.cuts == ["ramp 40,000/s: not measured again after its sink's connection ended"]


def test_the_saturation_search_repeats_only_the_rate_that_saturates() -> None:
    # A router that takes 100k/s whole, behind a ramp that stopped on a pause at 40k/s.
    calls: list[tuple[float, int]] = []

    def run_at(rate: float, i: int) -> dict[str, Any]:
        calls.append((rate, i))
        return {"output_per_s": min(rate, 100_000.0 - i)}

    rate, runs = find_saturation(run_at, 40_000.0, FULL)
    # 40k, 50k, 62.5k, 78k and 98k each kept up, so each ran once; 122k is the first it did
    # not keep up with, and 153k delivered no more: 122k is measured twice more for the
    # median and spread.
    ramp = [40_000, 50_000, 62_500, 78_125, 97_656]
    assert [round(r) for r, _ in calls] == [*ramp, 122_070, 152_588, 122_070, 122_070]
    assert rate == 122_070.3125 and [r["output_per_s"] for r in runs] == [100_000, 99_999, 99_998]


def test_the_saturation_search_climbs_while_the_output_still_rises() -> None:
    # A router that never keeps up but delivers more the more it is offered (larger batches),
    # up to 150k/s: each step up beats the best so far by over 5% until 195k.
    calls: list[float] = []

    def run_at(rate: float, i: int) -> dict[str, Any]:
        calls.append(rate)
        return {"output_per_s": min(rate * 0.9, 150_000.0)}

    rate, runs = find_saturation(run_at, 100_000.0, FULL)
    assert [round(r) for r in calls] == [100_000, 125_000, 156_250, 195_312, 244_141] + [
        195_312
    ] * 2
    assert rate == 195_312.5 and [r["output_per_s"] for r in runs] == [150_000.0] * 3


def test_a_saturation_figure_is_never_below_a_load_the_ramp_saw_kept_up_with() -> None:
    # The machine keeps up with 582k/s, but flooded at 728k/s its output collapses to 386k/s:
    # the runs go back to 582k/s, where it delivers what it is offered (a lower
    # bound, as the figures say), not 386k/s.
    calls: list[float] = []

    def run_at(rate: float, i: int) -> dict[str, Any]:
        calls.append(rate)
        return {"output_per_s": rate if rate <= 600_000 else 386_000.0}

    kept = 582_076.0
    rate, runs = find_saturation(run_at, kept * 1.25, FULL, kept_up_with=kept)
    # no climb past a collapse: the run it saves goes to the three at 582k/s
    assert [round(r) for r in calls] == [727_595, *[round(kept)] * 3]
    assert rate == kept and [r["output_per_s"] for r in runs] == [kept] * 3
    assert not saturation(rate, runs)["saturated"]

    # just past capacity, an output within KEEPS_UP of the load kept up with is the figure
    calls.clear()
    rate, runs = find_saturation(
        lambda r, i: {"output_per_s": min(r, 294_000.0)}, 372_529.0, FULL, kept_up_with=298_023.0
    )
    assert rate == 372_529.0 and saturation(rate, runs)["saturated"]


def test_the_saturation_search_stops_at_the_top_of_the_ramp() -> None:
    # At the top it cannot offer more: three runs, whether or not it kept up.
    calls: list[float] = []

    def run_at(rate: float, i: int) -> dict[str, Any]:
        calls.append(rate)
        return {"output_per_s": rate}

    rate, runs = find_saturation(run_at, FULL.ramp_to / 1.25, FULL)
    assert calls == [FULL.ramp_to / 1.25, FULL.ramp_to, FULL.ramp_to, FULL.ramp_to]
    assert rate == FULL.ramp_to and len(runs) == 3


class FakeClock:
    """Stands in for `time.monotonic`: time passes only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_default_budget_is_five_minutes_and_quick_gets_its_share() -> None:
    assert default_budget_s(FULL) == BUDGET_S == 300
    # --quick's measurements are shorter: so is its budget, by as much
    assert minimum_budget_s(QUICK) < default_budget_s(QUICK) < 300
    assert minimum_budget_s(FULL) < default_budget_s(FULL)


def test_a_budget_below_the_essentials_is_refused_before_anything_runs(tmp_path: Path) -> None:
    # no nats-server is needed to find out: the run is refused before it starts one
    with pytest.raises(BenchError, match=r"a budget of 10 s is below the \d+ s"):
        run_e2e(find_config(None).resolve(), QUICK, tmp_path, budget_s=10)
    assert not (tmp_path / "nats").exists()


def test_a_later_phase_gets_the_time_an_earlier_one_did_not_use() -> None:
    def millstream_share(passthrough_took_s: float) -> float:
        clock = FakeClock()
        budget = Budget(300, phase_costs(FULL), clock)
        budget.phase("floor")
        clock.now += 5
        budget.phase("passthrough")
        clock.now += passthrough_took_s
        return budget.phase("millstream").left()

    # the passthrough finishing 40 s sooner gives millstream those 40 s
    assert millstream_share(60) - millstream_share(100) == pytest.approx(40)


def test_a_phase_that_ran_long_leaves_the_later_ones_their_essentials_and_no_more() -> None:
    clock = FakeClock()
    costs = phase_costs(FULL)
    budget = Budget(300, costs, clock)
    floor = budget.phase("floor")
    # the floor's share is what the later phases were not promised
    later = [c.promised_s for name, c in costs.items() if name != "floor"]
    assert floor.left() == pytest.approx(300 - END_MARGIN_S - sum(later))
    clock.now += 5
    budget.phase("passthrough")
    clock.now += 230  # far past its share
    millstream = budget.phase("millstream")
    # what is left is split, but never into the essentials of the phases after millstream
    after = [c.essential_s for name, c in costs.items() if name in
             ("python_baseline", "jetstream", "jetstream_ceiling")]  # fmt: skip
    assert 0 < millstream.left() <= budget.end - clock.now - sum(after)
    report = budget.report()["phases"]
    assert report["passthrough"]["used_s"] == 230 and report["millstream"]["used_s"] == 0


def test_a_ramp_that_would_run_past_its_deadline_stops_where_it_is_and_says_so() -> None:
    # A router that keeps up with everything: the ramp would climb to the top (16 steps).
    clock, offered = FakeClock(), []

    def step(rate: float, label: str) -> bool:
        offered.append(rate)
        clock.now += 3.55  # a 2.5 s step and the sink's second of quiet
        return True

    assert climb_ramp(step, FULL) == FULL.ramp_to and len(offered) == 16
    clock.now = 0.0
    offered.clear()
    deadline = Deadline(20.0, clock)
    rate = climb_ramp(step, FULL, deadline, step_s=3.55)
    # five steps end at 17.75 s; a sixth would end past 20 s, so it is not started
    assert [round(r) for r in offered] == [40_000, 50_000, 62_500, 78_125, 97_656]
    assert rate == offered[-1] and clock.now <= deadline.at
    assert deadline.cuts == [
        "ramp stopped at 97,656/s, which it kept up with: 122,070/s and up not tried"
    ]


def test_a_failed_step_with_no_time_to_try_again_is_left_to_the_saturation_runs() -> None:
    clock, offered = FakeClock(), []

    def step(rate: float, label: str) -> bool:
        offered.append(rate)
        clock.now += 3.55
        return rate < 50_000  # takes 40k/s, not 50k/s

    deadline = Deadline(9.0, clock)
    assert climb_ramp(step, FULL, deadline, step_s=3.55) == 50_000
    assert offered == [40_000, 50_000]
    assert deadline.cuts == ["ramp: 50,000/s not tried again after a failed step"]


def test_a_saturation_search_cut_by_its_deadline_is_a_lower_bound_and_says_so() -> None:
    # A router that takes 100k/s, behind a ramp the budget stopped at 40k/s: with time for
    # the search it would go on up to 122k/s (see above); with 30 s it goes up only while a
    # whole round of three 6 s runs still fits.
    clock, calls = FakeClock(), []

    def run_at(rate: float, i: int) -> dict[str, Any]:
        calls.append(rate)
        clock.now += 6.0
        return {"output_per_s": min(rate, 100_000.0)}

    deadline = Deadline(30.0, clock)
    rate, runs = find_saturation(run_at, 40_000.0, FULL, deadline, run_cost_s=6.0)
    assert calls == [40_000, 50_000, 62_500] and rate == 62_500 and clock.now <= deadline.at
    assert deadline.cuts == [
        "saturation search stopped at 62,500/s, which it kept up with (a lower bound)"
    ]
    # it kept up with what it was offered: the figure is marked as a lower bound, as at the
    # top of the ramp, and one run has no spread to report
    figures = saturation(rate, runs)
    assert figures["saturated"] is False and figures["events_per_s"] == 62_500
    assert figures["spread"] is None and figures["unstable"] is False


def test_a_saturation_round_cut_by_its_deadline_keeps_the_runs_it_has() -> None:
    # 60k/s is past this router's 50k/s: the round needs three runs, the deadline allows two
    clock = FakeClock()

    def run_at(rate: float, i: int) -> dict[str, Any]:
        clock.now += 6.0
        return {"output_per_s": 50_000.0 - 1_000 * i}

    deadline = Deadline(13.0, clock)
    rate, runs = find_saturation(run_at, 60_000.0, FULL, deadline, run_cost_s=6.0)
    assert rate == 60_000 and len(runs) == 2
    assert deadline.cuts == [
        "saturation: no run above 60,000/s to check that the output had stopped rising",
        "saturation: 2 of 3 runs at 60,000/s",
    ]
    figures = saturation(rate, runs)
    # a real saturation, the median of the runs it has
    assert figures["saturated"] is True and figures["events_per_s"] == 49_500
    assert figures["spread"] == pytest.approx(1_000 / 49_500)


def _router(name: str, rate: float, **more: Any) -> dict[str, Any]:
    point = {"offered_per_s": 25_000.0, "p50_ms": 0.5, "p99_ms": 1.5, "p999_ms": 3.0}
    return {
        "name": name, "events_per_s": rate, "saturation_offered_per_s": rate * 1.25,
        "runs": [rate] * 3, "spread": 0.01, "unstable": False, "saturated": True,
        "latency": [point], "first_load": None, "cpu_at_25k": None, "steal_share": None,
        "sink_closed": [], "budget_cut": [], **more,
    }  # fmt: skip


def _result(cut_short: list[str], **millstream: Any) -> dict[str, Any]:
    results = [
        _router("passthrough", 400_000.0),
        _router("millstream", 200_000.0, **millstream),
        _router("python_baseline", 40_000.0),
    ]
    return {
        "machine": {"cpu": "test cpu"}, "plan": dict(FULL.__dict__), "elapsed_s": 57.4,
        "budget": {"budget_s": 60.0, "phases": {}, "over": False}, "cut_short": cut_short,
        "results": results, "ratio_vs_passthrough": 0.5, "ratio_vs_python": 5.0,
        "jetstream": {"events_per_s": 70_000.0, "lost": 0, "duplicates": 0, "ceiling": None,
                      "sink_closed": []},
        "floor": {"offered_per_s": 25_000.0, "p50_ms": 0.3, "p99_ms": 0.9, "p999_ms": 2.0,
                  "sink_closed": []},
        "slow_consumers": [],
        "targets": {"met": {"vs_passthrough": False, "vs_python": True,
                            "p99_ms_at_25k": False, "jetstream": True}},
    }  # fmt: skip


def test_the_summary_says_what_the_budget_cut_and_which_figures_are_bounds() -> None:
    cuts = [
        "ramp stopped at 97,656/s, which it kept up with: 122,070/s and up not tried",
        "saturation search stopped at 97,656/s, which it kept up with (a lower bound)",
        "latency not measured at 25,000/s, 48,828/s",
    ]
    result = _result(
        [f"millstream: {c}" for c in cuts] + ["jetstream_ceiling: not run: it takes up to 23 s"],
        events_per_s=97_656.0, saturation_offered_per_s=97_656.25, runs=[97_656.0],
        spread=None, saturated=False, latency=[], budget_cut=cuts,
    )  # fmt: skip
    text = summary(result)
    lines = text.splitlines()
    assert lines[0].endswith("57 s of a 60 s budget")
    (ms,) = [line for line in lines if line.startswith("  millstream ") and "events/s" in line]
    assert "no spread" in ms and "CUT SHORT by the budget" in ms
    assert "NOT SATURATED: kept up with 97,656/s, where the budget stopped the search" in ms
    # the ratios built on that figure say so, and the p99 target was not measured, not missed
    assert "(from a lower bound: millstream not saturated)" in text
    assert "p99 at 25k/s: target < 2.0 ms: not measured (budget)" in text
    # and every cut, under one heading
    at = lines.index("  CUT SHORT to stay within the 60 s budget:")
    assert lines[at + 1 :] == [f"    millstream: {c}" for c in cuts] + [
        "    jetstream_ceiling: not run: it takes up to 23 s"
    ]
    assert "OVER BUDGET" not in text


def test_an_uncut_run_says_nothing_about_cuts_and_an_overrun_says_so() -> None:
    text = summary(_result([]))
    assert "CUT SHORT" not in text and "lower bound" not in text and "OVER BUDGET" not in text
    over = _result([])
    over["elapsed_s"], over["budget"]["over"] = 63.2, True
    assert "OVER BUDGET: 63 s for a 60 s budget" in summary(over)


def test_a_ratio_built_on_an_unstable_figure_says_so_beside_its_verdict() -> None:
    result = _result([])
    result["results"][0].update(runs=[385_503.0, 386_117.0, 594_169.0], spread=0.54,
                                unstable=True)  # fmt: skip
    ratios = [line for line in summary(result).splitlines() if " / " in line]
    assert "passthrough UNSTABLE: not to be trusted" in ratios[0]
    assert "UNSTABLE" not in ratios[1], "millstream / python_baseline has no unstable figure"


def _js_run(events_per_s: float, lost: int = 0, duplicates: int = 0) -> dict[str, Any]:
    return {
        "events_per_s": events_per_s, "offered_per_s": 120_000.0, "sent": 200_000,
        "publish_errors": 0, "stored": 200_000 - lost + duplicates, "lost": lost,
        "duplicates": duplicates, "complete": True, "run_s": 200_000 / events_per_s + 5,
        "p50_ms": 900.0 + events_per_s / 1000, "p99_ms": 1_500.0, "cpu": None,
        "steal_share": 0.0, "sink_closed": [],
    }  # fmt: skip


def test_the_jetstream_figure_is_the_median_run_and_counts_every_runs_losses() -> None:
    runs = [_js_run(51_000.0), _js_run(58_000.0, duplicates=2), _js_run(54_000.0)]
    js = jetstream_figure(runs)
    assert js["events_per_s"] == 54_000.0 and js["runs"] == [51_000.0, 58_000.0, 54_000.0]
    # the median run's latency comes with it, not another run's
    assert js["p50_ms"] == 954.0
    assert js["spread"] == pytest.approx(7_000 / 54_000) and js["unstable"] is False
    # a duplicate in any run is a duplicate of the figure: the target needs 0 in all
    assert js["duplicates"] == 2 and js["lost"] == 0 and js["sent"] == 600_000
    assert js["run_s"] == runs[0]["run_s"], "the longest run plans the ceiling's"
    wide = jetstream_figure([_js_run(28_000.0), _js_run(52_000.0), _js_run(55_000.0)])
    assert wide["unstable"] is True
    one = jetstream_figure([_js_run(53_000.0, lost=1)])
    assert one["spread"] is None and one["unstable"] is False and one["lost"] == 1


def test_the_jetstream_phase_is_promised_its_runs_and_needs_only_the_first() -> None:
    js = phase_costs(FULL)["jetstream"]
    assert js.essential_s == jetstream_s(FULL)
    assert js.promised_s == pytest.approx(FULL.runs * jetstream_s(FULL))
    # the JetStream runs fit the default budget with the routers' essentials
    assert minimum_budget_s(FULL) < default_budget_s(FULL)


def test_the_summary_gives_every_jetstream_run_and_flags_an_unstable_set() -> None:
    result = _result([])
    result["jetstream"] = {**jetstream_figure([_js_run(28_000.0), _js_run(52_000.0),
                                                _js_run(55_000.0)]), "ceiling": None}  # fmt: skip
    (line,) = [x for x in summary(result).splitlines() if x.startswith("  jetstream:")]
    assert "52,000 events/s (runs 28,000, 52,000, 55,000; spread 51.9%)" in line
    assert line.endswith("(UNSTABLE: not to be trusted)")
    # beside the ceiling, the path's share of it
    result["jetstream"]["ceiling"] = jetstream_figure([_js_run(80_000.0)])
    (ceiling,) = [x for x in summary(result).splitlines() if "jetstream ceiling" in x]
    assert ceiling.endswith("80,000 events/s, lost 0, duplicates 0; the path reached 65% of it")


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


def _cpu(router: float, nats: float, harness: float, cores: tuple[float, ...]) -> dict[str, float]:
    us = dict(zip(ON_PATH, (router, nats, harness), strict=True))
    return {
        **{f"{who}_us_per_delivered": v for who, v in us.items()},
        **{f"{who}_cores": c for who, c in zip(us, cores, strict=True)},
    }


def test_the_ratios_ceiling_keeps_what_the_server_and_harness_spend_on_millstreams_outputs() -> (
    None
):
    # the relay: 4 µs per delivered event on the path, 2 cores in use: 500k/s. Millstream:
    # 10 µs (its router 5), 2 cores: 200k/s, a model ratio of 0.4. With a router of the
    # relay's 1 µs its path would cost 3 + 2 + 1 = 6 µs: 333k/s, at most 0.67.
    pt = _router("passthrough", 500_000.0, cpu_at_saturation=_cpu(1, 2, 1, (0.5, 1.0, 0.5)))
    ms = _router("millstream", 200_000.0, cpu_at_saturation=_cpu(5, 3, 2, (1.0, 0.6, 0.4)))
    bound = ratio_if_router_as_cheap(ms, pt)
    assert bound is not None
    assert bound["model_ratio"] == pytest.approx(0.4)
    assert bound["ratio"] == pytest.approx(2 / 3)
    assert bound["cores_in_use"] == {"millstream": 2.0, "passthrough": 2.0}
    result = _result([])
    result["ratio_if_router_as_cheap"] = bound
    text = summary(result)
    assert "with a router as cheap as the relay, at most 0.67 on this machine" in text
    assert "millstream router 5.00 + nats_server 3.00 + generator_and_sink 2.00 µs" in text
    # a figure missing (no /proc): no ceiling rather than a wrong one
    del ms["cpu_at_saturation"]["nats_server_cores"]
    assert ratio_if_router_as_cheap(ms, pt) is None


def test_the_saturation_figure_carries_the_cpu_of_its_median_run() -> None:
    runs = [{"output_per_s": x, "cpu": {"router_cores": x / 1e5}} for x in (3e5, 1e5, 2e5)]
    figures = saturation(4e5, runs)
    assert figures["events_per_s"] == 2e5
    assert figures["cpu_at_saturation"] == {"router_cores": 2.0}


def test_the_saturation_cpu_is_read_while_the_load_lasts_not_over_its_set_up_and_settle() -> None:
    # A 5 s run with a 1 s warm-up, reports every 0.5 s until the sink has settled at 7 s.
    # Under the load the router keeps 1 core busy and the machine (2 cores) is never idle;
    # before the first send and during the settle nothing runs. The sink receives 100k/s.
    def machine_at(t: float) -> list[int]:
        busy = min(max(t, 0.0), 5.0)
        # /proc/stat ticks at 100 Hz: user, nice, system, idle, iowait, irq, softirq, steal
        return [round(busy * 200), 0, 0, round((t - busy) * 200), 0, 0, 0, 0]

    def read(t: float, received: int) -> Reading:
        busy = min(t, 5.0)
        return Reading(t, received, {"router": busy, "nats_server": None}, machine_at(t))

    opened: list[float] = []
    w = SteadyWindow([("router", 1), ("nats_server", 2)], 1.0, 4.0, lambda: opened.append(1), read)
    for i in range(15):
        t = 0.5 * i
        w.progress({"elapsed_s": t, "sent": 0, "received": int(min(t, 5.0) * 100_000)})
    fig = w.figures()
    assert opened == [1]
    assert fig["window_s"] == pytest.approx(4.0)
    assert fig["received_per_s"] == pytest.approx(100_000)
    assert fig["router_cores"] == pytest.approx(1.0)
    assert fig["router_us_per_delivered"] == pytest.approx(10.0)
    # the settle's idle seconds are outside the window
    assert fig["idle_share"] == pytest.approx(0.0)
    assert fig["steal_share"] == pytest.approx(0.0)
    # a process without readings is left out rather than guessed
    assert not any(k.startswith("nats_server") for k in fig)
    # a run measured again starts a new window; one that ended before it closed has none
    w.reset()
    w.progress({"elapsed_s": 1.0, "sent": 0, "received": 0})
    assert w.figures() == {}
