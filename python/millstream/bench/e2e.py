"""`millstream bench e2e`: load generator -> NATS -> router -> NATS -> counting sink, on one
machine with a fresh embedded nats-server, for three routers measured in the same run:

- `passthrough`: Millstream's Rust data plane with every stage switched off (`millstream run
  --passthrough`: each input relayed unchanged to `passthrough.<subject>`): the ceiling;
- `millstream`: the same data plane on the example config;
- `python_baseline`: `millstream.bench.e2e_baseline`, the router a careful engineer would write
  without Millstream (nats-py, msgspec, dict dedup, uvloop), same routes and subjects.

Each router runs in its own process, as deployed. The generator and the sink are Rust
(`millstream._core.run_load`, from `rust/millstream-loadgen`) in this process: open loop, each
event stamped with its sequence number and send time in a field the mapping carries through
(`line` for telemetry, `reference` for stock moves), so the sink measures latency on one clock.

Per router: a ramp of offered loads (x1.25 a step) finds the first load it cannot keep up
with (delivered under 97% of offered, twice in a row: one pause can fail a short step);
saturation is the sink's output rate at that load (if the saturation runs keep up with it
after all, the load goes up a step; and it goes on up while a step's output beats the best
so far by over 5%: past its capacity a router's output can still rise with its queue; the
load of the best output is the one repeated, unless it delivered less than a load the
ramp saw the router keep up with: flooded, a slow VM's output can collapse, and the runs go
back to that load; at the top of the ramp, or where the runs keep up, the result is
marked `"saturated": false`, a lower bound)
(distinct events received per second while the load lasts; just past the router's capacity,
not buried under a flood it must also read and shed; "keeping up" also needs
a median latency under 50 ms, so a queue that only drains after the step does not count),
repeated `--runs` times,
median and spread reported, a run set whose spread exceeds `SPREAD_LIMIT` flagged as unstable
(as Vector's soak harness does); then latency p50/p99/p999 at fixed offered loads: 25k
events/s and 25/50/80% of that router's saturation. Before the ramp, the 25k/s load from the
moment the router is ready (`first_load`): what a router restarted under traffic does in its
first seconds.
Then the JetStream path: Odoo stock moves published into stream ODOO_IN, the example config's
at-least-once route into MFG_OUT, counted from the stream: events/s, lost and duplicates,
repeated `--runs` times, each run on a fresh nats-server with a fresh router, median and
spread as for saturation; and its ceiling, the passthrough relay on the same input with its
outputs stored in a stream (one run: a reference, not a target).
First of all, the harness's own latency floor: the fixed load published straight into the
sink's subjects, nats-server between generator and sink and no router (`floor`).
Per router, the CPU its process and nats-server spent per event at each load step (`/proc`);
on the JetStream path, per stored event, also the generator's and sink's (this process).

The whole run has a time budget (`--budget-s`; 300 s for the default plan, in proportion to
its nominal length for any other, see `default_budget_s`), handed out phase by phase in the
order they run (`Budget`): each phase still to come is promised its nominal length, and the
phase starting now may use whatever is not promised, so time an earlier phase did not use goes
to the later ones. A phase that reaches its share (its `Deadline`) stops cleanly: the ramp
stops going up, the saturation search keeps the runs it has, fewer latency points are
measured, the JetStream ceiling is not run. Every such cut is listed (`cut_short`, and per
router `budget_cut`) and printed in the summary, and a search the budget stopped at a load
the router kept up with is a lower bound (`"saturated": false`), as at the top of the ramp.

    millstream bench e2e [--json PATH] [--plot PATH.png] [--quick] [--budget-s S]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

from millstream.bench.core import find_config, machine_info
from millstream.errors import MillstreamError
from millstream.transport import EmbeddedNats

ROUTERS = ("passthrough", "millstream", "python_baseline")
SPREAD_LIMIT = 0.15  # (max - min) / median of the saturation runs
FIXED_LOAD = 25_000.0
SHARES = (0.25, 0.5, 0.8)
TARGETS = {"vs_passthrough": 0.7, "vs_python": 3.0, "p99_ms_at_25k": 2.0, "jetstream": 60_000.0}
# `line` carries `<seq>_<send ns>` through the mapping to the canonical body and is read back
# by the sink; `ts` is unique per event so no router takes it for a duplicate.
MARKER = '"line":"L'
JS_MARKER = '"reference":"M'


class BenchError(MillstreamError):
    """The benchmark could not run (a router did not start, the generator failed)."""


def _events(kind: str) -> list[tuple[str, str]]:
    """The (subject, body) templates of one kind from `e2e_events.json`, next to this module.

    The file is the one place the e2e event shapes are written down: this harness hands them
    to the Rust load generator, and millstream-core's `event_cost` example (what
    `scripts/event-cost` counts) includes the same file and renders it with the generator's own
    template code, so its instruction counts are for the events this benchmark sends. Its
    bodies are templates: `{seq}`, `{ts}` and `{stamp}` are filled in per event by the
    generator (`LoadSpec.templates` in rust/millstream-loadgen), any other brace is JSON.
    """
    text = files("millstream.bench").joinpath("e2e_events.json").read_text(encoding="utf-8")
    return [(subject, body) for subject, body in json.loads(text)[kind]]


def telemetry_templates() -> list[tuple[str, str]]:
    """MES telemetry in mixed units, as the demo plant sends it: eight machine/metric pairs on
    two plants, round-robin (`e2e_events.json`, see `_events`)."""
    return _events("telemetry")


def stock_move_templates() -> list[tuple[str, str]]:
    """Odoo stock.move webhook bodies, each its own record (`_id` = sequence number;
    `e2e_events.json`, see `_events`)."""
    return _events("stock_move")


@dataclass
class Router:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_router(name: str, url: str, config: Path, work: Path) -> Router:
    """Start a router process and wait until it routes (its ready file appears)."""
    ready = work / f"{name}.ready"
    ready.unlink(missing_ok=True)
    log = work / f"{name}.log"
    if name == "python_baseline":
        cmd = [sys.executable, "-m", "millstream.bench.e2e_baseline", "--config", str(config),
               "--nats-url", url, "--ready-file", str(ready)]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "millstream.cli", "run", str(config), "--nats-url", url,
               "--no-metrics", "--ready-file", str(ready)]  # fmt: skip
        if name == "passthrough":
            cmd.append("--passthrough")
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    router = Router(name, proc, log)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            router.stop()
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchError(f"router {name} did not start:\n{tail}")
        time.sleep(0.05)
    return router


_ts_base = [0]


def _next_ts_base(events: float) -> int:
    """A `ts` range no earlier run of this process used: event `seq` of a run gets
    `base + seq`, so overlapping ranges would make a later run's events duplicates (same
    machine, metric and timestamp) of an earlier run's, and the router would rightly drop
    them."""
    base = max(int(time.time() * 1000), _ts_base[0])
    _ts_base[0] = base + int(events * 1.2) + 1_000
    return base


# What one generator run takes besides its load and settle time: connecting and reporting
# (10-20 ms measured).
RUN_OVERHEAD_S = 0.05


def run_s(duration_s: float, settle_s: float = 1.0, *, saturating: bool = False) -> float:
    """How long a generator run of `duration_s` (warm-up included) takes: the load, then the
    sink's `settle_s` of quiet. Past a router's capacity its backlog keeps arriving after the
    load, and the sink waits for it up to 3x `settle_s` (`saturating`)."""
    return duration_s + settle_s * (3 if saturating else 1) + RUN_OVERHEAD_S


@dataclass
class Load:
    """One generator run's settings; `run()` returns the sink's report."""

    url: str
    sink_subject: str
    rate: float
    duration_s: float
    warmup_s: float
    templates: list[tuple[str, str]] = field(default_factory=telemetry_templates)
    marker: str = MARKER
    jetstream_window: int | None = None
    sink_stream: str | None = None
    settle_s: float = 1.0

    def spec(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "templates": [list(t) for t in self.templates],
            "base_ts_ms": _next_ts_base(self.rate * self.duration_s),
            "rate_per_s": self.rate,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "publish": "core"
            if self.jetstream_window is None
            else {"jetstream": {"window": self.jetstream_window}},
            "sink": {"core": {"subject": self.sink_subject}}
            if self.sink_stream is None
            else {"stream": {"stream": self.sink_stream, "filter": self.sink_subject}},
            "marker": self.marker,
            "settle_s": self.settle_s,
        }

    def cost_s(self) -> float:
        """How long `run()` takes when the output keeps up (see `run_s`)."""
        return run_s(self.duration_s, self.settle_s)

    def run(self, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        from millstream._core import run_load

        report: dict[str, Any] = run_load(json.dumps(self.spec()), progress)
        return report


def _progress(
    label: str, also: Callable[[dict[str, Any]], None] | None = None
) -> Callable[[dict[str, Any]], None]:
    """Shows each progress report of a run under `label`, and hands it to `also`."""

    def show(p: dict[str, Any]) -> None:
        if also is not None:
            also(p)
        print(
            f"\r  {label}: {p['elapsed_s']:5.1f}s sent {p['sent']:>10,} received "
            f"{p['received']:>10,}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


def _done(label: str, r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    print(
        f"\r  {label}: offered {r['offered_per_s']:>9,.0f}/s delivered "
        f"{r['delivered_per_s']:>9,.0f}/s output {r['output_per_s']:>9,.0f}/s "
        f"p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms "
        f"lost {r['lost']:,} dup {r['duplicates']:,}" + " " * 10,
        file=sys.stderr,
    )


class Deadline:
    """When a phase of the run must be done, on `clock`, and what the phase left out to be done
    by then (`cuts`). A deadline made from it by `less` (the part of a phase that must leave
    time for the parts after it) shares its `cuts`, so the phase's result lists every one.

    The clock is injectable so that a test can drive a search past its deadline without
    waiting for it."""

    def __init__(
        self,
        at: float,
        clock: Callable[[], float] = time.monotonic,
        cuts: list[str] | None = None,
        phase: str = "",
    ) -> None:
        self.at = at
        self.clock = clock
        self.cuts: list[str] = [] if cuts is None else cuts
        self.phase = phase

    @classmethod
    def never(cls) -> Deadline:
        return cls(math.inf)

    def left(self) -> float:
        return self.at - self.clock()

    def fits(self, cost_s: float) -> bool:
        """Whether something that takes `cost_s` would be done by the deadline if it started
        now."""
        return self.left() >= cost_s

    def less(self, reserve_s: float) -> Deadline:
        """The deadline `reserve_s` earlier, for a part of the phase that must leave that much
        to the parts after it."""
        return Deadline(self.at - reserve_s, self.clock, self.cuts, self.phase)

    def cut(self, what: str) -> None:
        """Note, and show, something left out to stay within the budget."""
        self.cuts.append(what)
        print(f"  ! budget{f' ({self.phase})' if self.phase else ''}: {what}", file=sys.stderr)


# A run whose sink lost its connection (nats-server cuts a subscriber off as a slow consumer
# when the loaded machine starves it) measured the harness, not the router: every event after
# the cut counts as lost. Such a run is measured again, up to this many times; the result
# keeps what happened (`sink_closed`).
SINK_RETRIES = 2


def measure(
    load: Load,
    label: str,
    sink_closed: list[str],
    *,
    retry: bool = True,
    procs: list[tuple[str, int | None]] | None = None,
    deadline: Deadline | None = None,
    steady: SteadyWindow | None = None,
) -> dict[str, Any]:
    """Run `load` and show it; a run whose sink lost its connection is noted in `sink_closed`
    and, with `retry`, run again if that fits in `deadline` (otherwise the cut is noted there).
    With `procs`, the report's `cpu` is `cpu_per_event` of those processes over the run it
    returns; with `steady`, it is that window's `figures()` for the run it returns."""
    attempts = 1 + (SINK_RETRIES if retry else 0)
    for attempt in range(1, attempts + 1):
        before = cpu_readings(procs) if procs else None
        if steady is not None:
            steady.reset()
        r = load.run(_progress(label, steady.progress if steady is not None else None))
        _done(label, r)
        if procs and before is not None:
            r["cpu"] = cpu_per_event(before, procs, r["sent"])
        if steady is not None:
            r["cpu"] = steady.figures()
        if not r["sink_closed"]:
            return r
        sink_closed.append(f"{label}: the sink's connection ended {r['sink_closed']}")
        again = attempt < attempts
        if again and deadline is not None and not deadline.fits(load.cost_s()):
            # the run that lost its sink stays the figure, and the result says why it was
            # not measured again
            deadline.cut(f"{label}: not measured again after its sink's connection ended")
            again = False
        print(f"  ! {sink_closed[-1]}" + ("; measuring again" if again else ""), file=sys.stderr)
        if not again:
            break
    return r


@dataclass
class Plan:
    ramp_from: float
    ramp_to: float
    ramp_s: float
    saturation_s: float
    latency_s: float
    warmup_s: float
    runs: int
    js_events: int


QUICK = Plan(ramp_from=40_000, ramp_to=1_000_000, ramp_s=2, saturation_s=3, latency_s=3,
             warmup_s=0.5, runs=3, js_events=120_000)  # fmt: skip
# A JetStream run's 200,000 events (300,000 until 2026-12-07, when it became three runs) keep
# the three runs and the ceiling within the budget: each takes about 8 s with its own server
# and router.
FULL = Plan(ramp_from=40_000, ramp_to=1_000_000, ramp_s=2.0, saturation_s=5, latency_s=4,
            warmup_s=1, runs=3, js_events=200_000)  # fmt: skip
KEEPS_UP = 0.97
# A router keeps up with a load when it delivers nearly all of it *without a growing queue*:
# a short ramp step can end with a backlog that drains during the settle time and still
# counts as delivered, so the median latency is checked too.
KEEPS_UP_P50_MS = 50.0

# The default run's time budget; any other plan gets it in proportion to its nominal length
# (`default_budget_s`), so `--quick` stays as much shorter as its measurements are.
BUDGET_S = 300.0
# Held back from the phases: what a last run that ran past its estimate (a backlog draining
# after the load, up to 2x settle) and the server's stop may still take.
END_MARGIN_S = 3.0
# Starting a router until it routes (0.6-1.6 s measured) and stopping it (0.2-0.8 s).
ROUTER_START_S = 1.5
ROUTER_STOP_S = 1.0
# A ramp step's quiet time before the sink stops counting: a step only asks whether the router
# kept up (its median latency is under 50 ms when it does), so half a second of nothing
# arriving is plenty. A second, as the other runs wait, cost half a second more on each of the
# default run's 34 ramp steps (16 of them the passthrough's, once its ramp went up to 1M/s)
# and pushed a latency point out of the budget.
RAMP_SETTLE_S = 0.5


def ramp_rates(plan: Plan) -> list[float]:
    """Every load of a ramp that goes all the way up (x1.25 a step, the top included)."""
    rates = [plan.ramp_from]
    while rates[-1] < plan.ramp_to:
        rates.append(min(rates[-1] * 1.25, plan.ramp_to))
    return rates


class PhaseCost(NamedTuple):
    """What the budget promises a phase before it starts (`promised_s`), and the part of it
    that runs however little time is left (`essential_s`): without it the phase has no figure
    at all."""

    promised_s: float
    essential_s: float


def jetstream_s(plan: Plan, *, worst: bool = False) -> float:
    """How long one JetStream run takes: its router's start and stop (its fresh server's take
    milliseconds) and the run (`jetstream_run_s`; with `worst`, the sink's longest wait)."""
    return ROUTER_START_S + ROUTER_STOP_S + jetstream_run_s(plan, worst=worst)


def phase_costs(plan: Plan) -> dict[str, PhaseCost]:
    """Each phase's promise and essentials, in the order the phases run.

    A router is promised its fixed measurements (first load, `plan.runs` saturation runs,
    the latency points) and a ramp a quarter of the way up: the ramp is the part no plan can
    know in advance (on the 2-vCPU machines of 2026-12-07 the passthrough's took 14-15 steps,
    millstream's 8-12 and the Python baseline's 2-5), and a smaller promise to the later routers
    leaves more to the earlier ones, which always run first. Its essentials are one ramp step
    and one saturation run, each at a load it may not keep up with. The JetStream path is
    promised `plan.runs` runs, each with its own router, and needs its first whole; its
    ceiling (one run, a reference) is promised what a run takes, not its longest wait (that
    held back 12 s the Python baseline's latency points then lacked), and runs whole or not at
    all (`run_e2e`)."""
    first = run_s(plan.latency_s)
    steps = -(-len(ramp_rates(plan)) // 4)
    router = PhaseCost(
        ROUTER_START_S
        + ROUTER_STOP_S
        + first
        + steps * run_s(plan.ramp_s, RAMP_SETTLE_S)
        + plan.runs * run_s(plan.saturation_s)
        + (1 + len(SHARES)) * run_s(plan.latency_s),
        ROUTER_START_S
        + ROUTER_STOP_S
        + run_s(plan.ramp_s, RAMP_SETTLE_S, saturating=True)
        + run_s(plan.saturation_s, saturating=True),
    )
    return {
        "floor": PhaseCost(first, first),
        **{name: router for name in ROUTERS},
        "jetstream": PhaseCost(plan.runs * jetstream_s(plan), jetstream_s(plan)),
        "jetstream_ceiling": PhaseCost(jetstream_s(plan), 0.0),
    }


def default_budget_s(plan: Plan) -> float:
    """`BUDGET_S` for the default plan, the same share of its nominal length for any other."""
    nominal = sum(c.promised_s for c in phase_costs(plan).values())
    return BUDGET_S * nominal / sum(c.promised_s for c in phase_costs(FULL).values())


def minimum_budget_s(plan: Plan) -> float:
    """The least budget a run of `plan` can keep: every phase's essentials."""
    return sum(c.essential_s for c in phase_costs(plan).values()) + END_MARGIN_S


class Budget:
    """The run's time budget, handed out phase by phase as each starts (`phase`).

    A phase may use what is left minus what the phases after it are promised (`phase_costs`),
    so time an earlier phase did not use goes to the later ones. When what is left cannot keep
    every promise, it is split in proportion to the promises instead, never below what the
    later phases' essentials need."""

    def __init__(
        self,
        total_s: float,
        costs: dict[str, PhaseCost],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_s = total_s
        self.costs = costs
        self.clock = clock
        self.started = clock()
        self.end = self.started + total_s - END_MARGIN_S
        # per phase as it started: (clock at its start, its share, its deadline)
        self.phases: dict[str, tuple[float, float, Deadline]] = {}

    def phase(self, name: str) -> Deadline:
        names = list(self.costs)
        later = [self.costs[n] for n in names[names.index(name) + 1 :]]
        now = self.clock()
        left = self.end - now
        promised = sum(c.promised_s for c in later)
        own = self.costs[name].promised_s
        share = max(left - promised, left * own / (own + promised), self.costs[name].essential_s)
        share = max(0.0, min(share, left - sum(c.essential_s for c in later)))
        deadline = Deadline(now + share, self.clock, phase=name)
        self.phases[name] = (now, share, deadline)
        return deadline

    def cut_short(self) -> list[str]:
        """Everything a phase left out, as `<phase>: <what>`, in the order it happened."""
        return [f"{name}: {c}" for name, (_, _, d) in self.phases.items() for c in d.cuts]

    def report(self) -> dict[str, Any]:
        """Each phase's share and the time it used (until the next phase started)."""
        starts = [start for start, _, _ in self.phases.values()] + [self.clock()]
        return {
            "budget_s": self.total_s,
            "phases": {
                name: {"share_s": round(share, 2), "used_s": round(starts[i + 1] - start, 2)}
                for i, (name, (start, share, _)) in enumerate(self.phases.items())
            },
        }


def spread(values: list[float]) -> float:
    """(max - min) / median: how far apart repeated measurements are."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else float("inf")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux `/proc`), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The processes on a benchmark's path, as its CPU figures name them.
ON_PATH = ("router", "nats_server", "generator_and_sink")


def path_procs(router_pid: int, server_pid: int | None) -> list[tuple[str, int | None]]:
    """`ON_PATH` with their pids: the generator and the sink run in this process."""
    return list(zip(ON_PATH, (router_pid, server_pid, os.getpid()), strict=True))


def cpu_readings(procs: list[tuple[str, int | None]]) -> dict[str, float | None]:
    """`cpu_seconds` of each named process (None for a missing pid or an unreadable one)."""
    return {who: cpu_seconds(pid) if pid else None for who, pid in procs}


def cpu_spent(
    before: dict[str, float | None], procs: list[tuple[str, int | None]]
) -> dict[str, float]:
    """CPU seconds each process spent since `before` (`cpu_readings` of the same `procs`); a
    process without both readings is left out."""
    spent: dict[str, float] = {}
    for who, pid in procs:
        start, end = before[who], cpu_seconds(pid) if pid else None
        if start is not None and end is not None:
            spent[who] = end - start
    return spent


def cpu_per_event(
    before: dict[str, float | None], procs: list[tuple[str, int | None]], events: int
) -> dict[str, float]:
    """CPU µs each process spent per event since `before` (`cpu_readings` of the same
    `procs`), as `{"<who>_us_per_event": µs}`; a process without both readings, or no events,
    is left out."""
    if not events:
        return {}
    return {f"{who}_us_per_event": s / events * 1e6 for who, s in cpu_spent(before, procs).items()}


@dataclass
class Reading:
    """One `SteadyWindow` reading: when (the run's clock, s), the sink's count so far, each
    process's CPU seconds so far (`cpu_readings`) and the machine's (`machine_times`)."""

    elapsed_s: float
    received: int
    cpu: dict[str, float | None]
    machine: list[int] | None


class SteadyWindow:
    """CPU figures over the steady part of one generator run: from the first progress report
    at or past `opens_s` (the end of the warm-up) to the last one at most `seconds` later (the
    load's end). Measured over the whole run instead, they would also count the connection set
    up and the sink's settle time, a second or more in which the path sits idle: on a 5 s
    saturation run that showed a fifth of the machine idle that was not idle under the load.

    Feed it every progress report (`progress`); `on_open` is called as the window opens (the
    profile starts `perf` there). `read` takes a reading (by default of `procs` and the
    machine, from `/proc`); `figures()` then gives, for the window: each process's cores
    (`<who>_cores`) and CPU µs per event the sink received in it (`<who>_us_per_delivered`),
    the machine's idle and steal shares, and the sink's rate (`received_per_s`)."""

    def __init__(
        self,
        procs: list[tuple[str, int | None]],
        opens_s: float,
        seconds: float,
        on_open: Callable[[], None] | None = None,
        read: Callable[[float, int], Reading] | None = None,
    ) -> None:
        self.procs, self.opens_s, self.seconds, self.on_open = procs, opens_s, seconds, on_open
        self.read = read or self._read
        self.start: Reading | None = None
        self.end: Reading | None = None

    def reset(self) -> None:
        """Forget the readings, for the run measured again."""
        self.start = self.end = None

    def _read(self, elapsed_s: float, received: int) -> Reading:
        return Reading(elapsed_s, received, cpu_readings(self.procs), machine_times())

    def progress(self, p: dict[str, Any]) -> None:
        t = float(p["elapsed_s"])
        if self.start is None:
            if t >= self.opens_s:
                self.start = self.read(t, int(p["received"]))
                if self.on_open is not None:
                    self.on_open()
        elif t <= self.start.elapsed_s + self.seconds:
            self.end = self.read(t, int(p["received"]))

    def figures(self) -> dict[str, float]:
        """The window's figures (see the class); empty when it never closed (a run cut off
        before two reports)."""
        a, b = self.start, self.end
        if a is None or b is None or b.elapsed_s <= a.elapsed_s:
            return {}
        span, received = b.elapsed_s - a.elapsed_s, b.received - a.received
        out: dict[str, float] = {"window_s": span, "received_per_s": received / span}
        for who, _ in self.procs:
            start, end = a.cpu.get(who), b.cpu.get(who)
            if start is None or end is None:
                continue
            out[f"{who}_cores"] = (end - start) / span
            if received > 0:
                out[f"{who}_us_per_delivered"] = (end - start) / received * 1e6
        for name, kinds in (("idle_share", IDLE), ("steal_share", STEAL)):
            share = machine_share(a.machine, b.machine, kinds)
            if share is not None:
                out[name] = share
        return out


def machine_times() -> list[int] | None:
    """The machine's CPU time so far by kind (Linux `/proc/stat`, clock ticks), or None."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    return [int(x) for x in first[1:]] if first and first[0] == "cpu" else None


# `/proc/stat` fields (from 0): idle and iowait; steal.
IDLE = (3, 4)
STEAL = (7,)


def machine_share(
    before: list[int] | None, after: list[int] | None, kinds: tuple[int, ...]
) -> float | None:
    """Of the machine's CPU time between two `machine_times` readings, the share spent in
    `kinds` (fields of `/proc/stat`'s first eight), or None without two full readings or
    time between them."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])
    return sum(after[k] - before[k] for k in kinds) / total if total > 0 else None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Of the machine's CPU time between two readings, the share the hypervisor gave to
    other guests ("steal", the 8th field): on a shared VM it is time this run was promised
    and did not get, so a phase with a large share measured a slower machine."""
    return machine_share(before, after, STEAL)


def latency_point(offered: float, r: dict[str, Any]) -> dict[str, Any]:
    """What one fixed-load run of the generator reports, as the JSON keeps it."""
    lat = r["latency_ms"]
    return {
        "offered_per_s": offered,
        "delivered_per_s": r["delivered_per_s"],
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "p999_ms": lat["p999"],
        "max_ms": lat["max"],
        "lost": r["lost"],
    }


def climb_ramp(
    step: Callable[[float, str], bool],
    plan: Plan,
    deadline: Deadline | None = None,
    step_s: float = 0.0,
) -> float:
    """The load where the ramp stopped: the first one `step(rate, label)` did not keep up
    with, twice in a row (a step is short: one pause can fail it), or the top of the ramp.

    A step that would not be done by `deadline` (each takes `step_s`) is not started: the ramp
    stops where it is, and the cut is noted. The first step always runs."""
    deadline = deadline or Deadline.never()
    rate = plan.ramp_from
    while True:
        kept_up = step(rate, f"ramp {rate:,.0f}/s")
        if not kept_up:
            if deadline.fits(step_s):
                kept_up = step(rate, f"ramp {rate:,.0f}/s (again)")
            else:
                # the saturation runs at this load decide whether it really is too much
                deadline.cut(f"ramp: {rate:,.0f}/s not tried again after a failed step")
                return rate
        if not kept_up or rate >= plan.ramp_to:
            return rate
        higher = min(rate * 1.25, plan.ramp_to)
        if not deadline.fits(step_s):
            deadline.cut(
                f"ramp stopped at {rate:,.0f}/s, which it kept up with: "
                f"{higher:,.0f}/s and up not tried"
            )
            return rate
        rate = higher


# Past its capacity a router's output can still rise with the load: a longer queue means
# larger batches, each event cheaper (the router's and nats-server's CPU per event fall as the
# rate rises, `latency[].cpu`). Stopping at the first load a router did not keep up with
# measured millstream just past its capacity and the passthrough far past its own. The
# saturation load is where the output stops rising: a run one step up must beat the best
# output so far by this much for the search to go on.
PLATEAU_GAIN = 0.05


def find_saturation(
    run_at: Callable[[float, int], dict[str, Any]],
    rate: float,
    plan: Plan,
    deadline: Deadline | None = None,
    run_cost_s: float = 0.0,
    kept_up_with: float | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """The offered rate of the saturation runs, and those runs (`plan.runs` of them), starting
    where the ramp stopped. `run_at(rate, i)` measures run `i` at `rate`.

    One run per load, going up x1.25 a step: a run that kept up means the ramp had stopped
    on a pause, so the search goes on up; past the first load it did not keep up with, it goes
    on while each step's output beats the best so far by more than `PLATEAU_GAIN`. The load of
    the best output is then run `plan.runs` times in all for the median and spread (repeating
    only that load kept a default run under five minutes). At the top of the ramp the figure
    stays a lower bound.

    Within `deadline` (each run takes `run_cost_s`): the first run always happens; the search
    goes up only if that run and the repeats after it fit, and a repeat that would not be done
    by then is not started. Either way it returns the runs it has and notes the cut; a run that
    kept up with its load is a lower bound, as at the top of the ramp.

    `kept_up_with` is the highest load the ramp saw the router keep up with. If no load past
    it delivered as much, within `KEEPS_UP` (the machine's output collapsed once flooded: on
    a slow VM the generator, nats-server and the router fight for two cores, and a flooded
    passthrough delivered 386k/s in two runs of three after keeping up with 582k/s), the
    runs are made at that load instead: a router's throughput is never below a load it took
    whole. The search stops climbing at the first run that collapsed so, which leaves it as
    many runs as without a collapse. Those runs may keep up with the load, and then the
    figure is a lower bound."""
    deadline = deadline or Deadline.never()

    def collapsed(output: float) -> bool:
        return kept_up_with is not None and output < KEEPS_UP * kept_up_with

    best: tuple[float, dict[str, Any]] | None = None
    run = run_at(rate, 0)
    while True:
        out = float(run["output_per_s"])
        kept_up = out >= KEEPS_UP * rate
        if not kept_up:
            if best is not None and out <= float(best[1]["output_per_s"]) * (1 + PLATEAU_GAIN):
                break  # the output stopped rising
            best = (rate, run)
            if collapsed(out):
                # collapsed below a load it took whole: a higher load would only bury it
                # further, and the runs go back to that load (below); a run saved for them
                break
        if rate >= plan.ramp_to:
            if kept_up:
                best = (rate, run)  # it took the top of the ramp whole: a lower bound
            break
        if not deadline.fits(plan.runs * run_cost_s):
            if best is None:
                deadline.cut(
                    f"saturation search stopped at {rate:,.0f}/s, which it kept up with "
                    "(a lower bound)"
                )
                return rate, [run]
            deadline.cut(
                f"saturation: no run above {best[0]:,.0f}/s to check that the output had "
                "stopped rising"
            )
            break
        rate = min(rate * 1.25, plan.ramp_to)
        run = run_at(rate, 0)
    assert best is not None, "every way out of the search sets it"
    rate, first = best
    runs = [first]
    if kept_up_with is not None and collapsed(float(first["output_per_s"])):
        if deadline.fits(plan.runs * run_cost_s):
            rate, runs = kept_up_with, [run_at(kept_up_with, 0)]
        else:
            deadline.cut(
                f"saturation: {rate:,.0f}/s delivered less than {kept_up_with:,.0f}/s, which "
                "the ramp kept up with, and the runs there did not fit"
            )
    while len(runs) < plan.runs:
        if not deadline.fits(run_cost_s):
            deadline.cut(f"saturation: {len(runs)} of {plan.runs} runs at {rate:,.0f}/s")
            break
        runs.append(run_at(rate, len(runs)))
    return rate, runs


def saturation(rate: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The saturation figure from the runs `find_saturation` returned at `rate`: the median of
    the sink's output rates while the load lasted (the router's throughput when offered more
    than it can take; a backlog drained after the window does not count), and how far apart
    the runs were (no spread from a single run)."""
    delivered = [float(r["output_per_s"]) for r in runs]
    sat = statistics.median(delivered)
    s = spread(delivered) if len(delivered) > 1 else None
    # the CPU figures of the run whose output is the median (the lower one of an even count)
    middle = sorted(runs, key=lambda r: float(r["output_per_s"]))[(len(runs) - 1) // 2]
    return {
        "events_per_s": sat,
        "cpu_at_saturation": middle.get("cpu") or None,
        "saturation_offered_per_s": rate,
        "runs": delivered,
        "spread": s,
        "unstable": s is not None and s > SPREAD_LIMIT,
        # False: it delivered all it was offered, at the top of the ramp or where the budget
        # stopped the search, so `events_per_s` is only a lower bound of what it can take
        "saturated": sat < KEEPS_UP * rate,
    }


def bench_router(
    name: str,
    url: str,
    config: Path,
    work: Path,
    plan: Plan,
    server_pid: int | None = None,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """One router's figures (see the module's docstring), within `deadline`: the router's stop
    included, each part leaves the time the parts after it take, in this order of importance:
    the saturation figure (one ramp step and one saturation run always run), the latency at
    25k/s, the first load after start, the latency at shares of saturation."""
    deadline = deadline or Deadline.never()
    sink = "passthrough.>" if name == "passthrough" else "mfg.telemetry.>"
    router = start_router(name, url, config, work)
    times = machine_times()
    sink_closed: list[str] = []
    # a saturation run is past the router's capacity by design: its backlog drains after it
    step_s, lat_s = run_s(plan.ramp_s, RAMP_SETTLE_S), run_s(plan.latency_s)
    sat_s = run_s(plan.saturation_s, saturating=True)
    until_stop = deadline.less(ROUTER_STOP_S)
    try:
        # The fixed load from the moment the router is ready, warm-up included: what a router
        # restarted under traffic does in its first seconds (fresh buffers, empty tables).
        # Not repeated: a second run would not be the first. Measured only if it leaves time
        # for the essentials and the latency at 25k/s.
        first_load = None
        essentials = run_s(plan.ramp_s, RAMP_SETTLE_S, saturating=True) + sat_s
        if until_stop.fits(lat_s + essentials + lat_s):
            label = f"{name} first {FIXED_LOAD:,.0f}/s after start"
            r = measure(Load(url, sink, FIXED_LOAD, plan.latency_s, 0.0), label, sink_closed,
                        retry=False)  # fmt: skip
            first_load = latency_point(FIXED_LOAD, r)
        else:
            until_stop.cut(f"first {FIXED_LOAD:,.0f}/s after start not measured")
        ramp: list[dict[str, Any]] = []
        kept_up_at: list[float] = []
        # the ramp leaves time for a whole round of saturation runs and the 25k/s latency
        ramp_until = until_stop.less(plan.runs * sat_s + lat_s)

        def step(rate: float, label: str) -> bool:
            load = Load(url, sink, rate, plan.ramp_s, plan.warmup_s, settle_s=RAMP_SETTLE_S)
            r = measure(load, f"{name} {label}", sink_closed, deadline=ramp_until)
            ramp.append(
                {
                    "offered_per_s": rate,
                    "delivered_per_s": r["delivered_per_s"],
                    "p50_ms": r["latency_ms"]["p50"],
                    "p99_ms": r["latency_ms"]["p99"],
                }
            )
            kept_up = bool(
                r["delivered_per_s"] >= KEEPS_UP * r["offered_per_s"]
                and r["latency_ms"]["p50"] <= KEEPS_UP_P50_MS
            )
            if kept_up:
                kept_up_at.append(rate)
            return kept_up

        rate = climb_ramp(step, plan, ramp_until, step_s)
        # the saturation search leaves time for the 25k/s latency
        sat_until = until_stop.less(lat_s)

        on_path = path_procs(router.proc.pid, server_pid)

        def saturation_run(rate: float, i: int) -> dict[str, Any]:
            load = Load(url, sink, rate, plan.saturation_s, plan.warmup_s)
            label = f"{name} saturation {i + 1}/{plan.runs} at {rate:,.0f}/s"
            # where the machine's CPU went while the load lasted, after its warm-up
            steady = SteadyWindow(on_path, plan.warmup_s, plan.saturation_s - plan.warmup_s)
            return measure(load, label, sink_closed, deadline=sat_until, steady=steady)

        rate, runs = find_saturation(saturation_run, rate, plan, sat_until, sat_s,
                                     kept_up_with=max(kept_up_at, default=None))  # fmt: skip
        figures = saturation(rate, runs)
        sat = figures["events_per_s"]
        latency = []
        measured: list[tuple[str, int | None]] = [
            ("router", router.proc.pid),
            ("nats_server", server_pid),
        ]
        # 25k/s first (the p99 target is set there), then from the highest share down (at
        # 80% of saturation the batches are as large as under real load)
        shares = sorted({round(sat * s) for s in SHARES} - {FIXED_LOAD}, reverse=True)
        not_measured = []
        for offered in [FIXED_LOAD, *shares]:
            if offered < 100:
                continue
            if not until_stop.fits(lat_s):
                not_measured.append(offered)
                continue
            # CPU per event at each load: how much of the shared machine each router needs,
            # steadier on a noisy VM than a saturation figure. At 25k/s every router keeps
            # up; at a share of its own saturation the batches are as large as in use.
            load = Load(url, sink, offered, plan.latency_s, plan.warmup_s)
            r = measure(load, f"{name} at {offered:,.0f}/s", sink_closed, procs=measured,
                        deadline=until_stop)  # fmt: skip
            latency.append(
                {
                    **latency_point(offered, r),
                    "achieved_offered_per_s": r["offered_per_s"],
                    "cpu": r["cpu"] or None,
                }
            )
        if not_measured:
            until_stop.cut(
                "latency not measured at " + ", ".join(f"{x:,.0f}/s" for x in sorted(not_measured))
            )
        latency.sort(key=lambda p: float(p["offered_per_s"]))
    finally:
        router.stop()
    return {
        "name": name,
        **figures,
        "ramp": ramp,
        "keeps_up": {"delivered_share": KEEPS_UP, "p50_ms": KEEPS_UP_P50_MS},
        "generator_lag_ms": max(float(r["generator_lag_ms"]) for r in runs),
        "latency": latency,
        "first_load": first_load,
        "cpu_at_25k": next((p["cpu"] for p in latency if p["offered_per_s"] == FIXED_LOAD), None),
        "steal_share": steal_share(times, machine_times()),
        "sink_closed": sink_closed,
        # what the budget left out of this router's measurements (nothing: empty)
        "budget_cut": deadline.cuts,
    }


# The sink stops once nothing new was stored for this long, or 3x this after the last send:
# a path slower than (events / (duration + 3 x settle)) is cut off, and what it had not yet
# stored would count as lost. `complete` in the result says which way the count ended. 3 s
# (5 s until the path became three runs, 2026-12-07): a run of 200,000 events then cuts off a
# path slower than 18,700/s, a third of the target; a healthy path stores without a gap.
JS_SETTLE_S = 3.0
# The JetStream load, as a multiple of the target rate (see `bench_jetstream`).
JS_OFFERED = 2.0


# Where the passthrough relay's JetStream run is stored, so the sink can count it from a
# stream as it does MFG_OUT.
CEILING_STREAM = "BENCH_PASSTHROUGH"
# What the ceiling's run may take beyond the JetStream run before it (see `run_e2e`).
CEILING_MARGIN_S = 3.0


def ensure_stream(url: str, name: str, subjects: list[str]) -> None:
    import asyncio

    import nats

    async def create() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().add_stream(name=name, subjects=subjects)
        finally:
            await nc.drain()

    asyncio.run(create())


def jetstream_load(
    url: str, router_name: str, rate: float, duration_s: float, warmup_s: float, settle_s: float
) -> Load:
    """The JetStream path's generator run: Odoo stock moves published into ODOO_IN, counted
    from MFG_OUT's inventory subjects, or for the passthrough relay from the stream its
    outputs go to (created here: the relay does not provision it)."""
    if router_name == "passthrough":
        ensure_stream(url, CEILING_STREAM, ["passthrough.odoo.>"])
        sink_subject, sink_stream = "passthrough.odoo.>", CEILING_STREAM
    else:
        sink_subject, sink_stream = "mfg.inventory.>", "MFG_OUT"
    return Load(url, sink_subject, rate, duration_s, warmup_s, templates=stock_move_templates(),
                marker=JS_MARKER, jetstream_window=4096, sink_stream=sink_stream,
                settle_s=settle_s)  # fmt: skip


def jetstream_run_s(plan: Plan, *, worst: bool = False) -> float:
    """How long a JetStream load takes once the router runs: a path at the target rate storing
    the load, and the sink's quiet time (with `worst`, its longest wait: 3x that)."""
    return run_s(plan.js_events / TARGETS["jetstream"], JS_SETTLE_S, saturating=worst)


def jetstream_figure(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The JetStream figure from its runs: the median of their events/s, with
    the latency and CPU of the median run (the lower one of an even count), as `saturation`
    does; every run's events/s and their spread, flagged past `SPREAD_LIMIT`; and the counts
    summed over all runs, so `lost` and `duplicates` are 0 only if they were in every run."""
    rates = [float(r["events_per_s"]) for r in runs]
    middle = sorted(runs, key=lambda r: float(r["events_per_s"]))[(len(runs) - 1) // 2]
    s = spread(rates) if len(rates) > 1 else None
    return {
        **middle,
        "events_per_s": statistics.median(rates),
        "runs": rates,
        "spread": s,
        "unstable": s is not None and s > SPREAD_LIMIT,
        **{
            k: sum(r[k] for r in runs)
            for k in ("sent", "publish_errors", "stored", "lost", "duplicates")
        },
        "complete": all(r["complete"] for r in runs),
        # the longest run, send to the sink's stop
        "run_s": max(r["run_s"] for r in runs),
        "sink_closed": [c for r in runs for c in r["sink_closed"]],
        "slow_consumers": [c for r in runs for c in r.get("slow_consumers", [])],
    }


def bench_jetstream(
    config: Path,
    work: Path,
    plan: Plan,
    router_name: str = "millstream",
    *,
    runs: int = 1,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """The JetStream path `runs` times (`jetstream_figure`), each run on a fresh embedded
    nats-server with a fresh router (`jetstream_once`); a run after the first only if it fits
    in `deadline`. Runs on one server slowed each other: the streams the earlier runs filled
    made nats-server spend more per stored event (22-23 µs in a first run, 25-30 in a second
    and third, 2026-12-07), so a median of such runs would measure how full the streams were."""
    done: list[dict[str, Any]] = []
    for i in range(runs):
        if i and deadline is not None and not deadline.fits(jetstream_s(plan)):
            deadline.cut(f"jetstream ({router_name}): {i} of {runs} runs (no time for the next)")
            break
        with EmbeddedNats(work / f"nats-jetstream-{router_name}-{i + 1}") as server:
            label = f"jetstream ({router_name})" + (f" {i + 1}/{runs}" if runs > 1 else "")
            run = jetstream_once(server.url, config, work, plan, router_name, server.pid, label)
            run["slow_consumers"] = slow_consumers(server.log_path)
        done.append(run)
    return jetstream_figure(done)


def jetstream_once(
    url: str,
    config: Path,
    work: Path,
    plan: Plan,
    router_name: str,
    server_pid: int | None,
    label: str,
) -> dict[str, Any]:
    """Odoo stock moves JetStream -> Millstream (at least once, dedup) -> JetStream MFG_OUT,
    counted from the stream. With `router_name="passthrough"`, the ceiling of that path on
    this machine: the relay pulls and acks the same input, and its outputs are stored in a
    stream of their own (published without waiting for a PubAck)."""
    # offered at `JS_OFFERED` x the target: more than the path can take, so ODOO_IN buffers a
    # backlog and the throughput is what the path stored over the time it took. Offered only
    # the target rate, a path faster than the target still measured under it (59.7k/s of 60k
    # offered: the last event's latency counts in the time).
    rate = TARGETS["jetstream"] * JS_OFFERED
    load = jetstream_load(url, router_name, rate, plan.js_events / rate, 0.0, JS_SETTLE_S)
    router = start_router(router_name, url, config, work)
    # CPU per event of each process on the path: on two shared cores, what one of them spends
    # the others cannot.
    procs = path_procs(router.proc.pid, server_pid)
    cpu_before = cpu_readings(procs)
    times = machine_times()
    try:
        # Not repeated: the router has taken the run's records, and the same ones again
        # would rightly be duplicates to it.
        sink_closed: list[str] = []
        r = measure(load, label, sink_closed, retry=False)
        cpu = cpu_per_event(cpu_before, procs, r["distinct"])
    finally:
        router.stop()
    return jetstream_run(r, cpu, steal_share(times, machine_times()), sink_closed)


def jetstream_run(
    r: dict[str, Any], cpu: dict[str, float], steal: float | None, sink_closed: list[str]
) -> dict[str, Any]:
    """One JetStream run's figures from the sink's report `r`."""
    # The path lags the generator (JetStream buffers the backlog), so its throughput is every
    # event stored over the time until the last one was: from the first send to the last
    # arrival in MFG_OUT.
    events_per_s = r["distinct"] / r["last_receive_s"] if r["last_receive_s"] else 0.0
    return {
        "events_per_s": events_per_s,
        "offered_per_s": r["offered_per_s"],
        "last_stored_s": r["last_receive_s"],
        "sent": r["sent"],
        "publish_errors": r["publish_errors"],
        "stored": r["distinct"] + r["duplicates"],
        "lost": r["lost"],
        "duplicates": r["duplicates"],
        # the count ended because the stream went quiet, not at the wait's cap
        "complete": r["elapsed_s"] - r["last_receive_s"] >= JS_SETTLE_S * 0.9,
        # the whole run, send to the sink's stop (what the ceiling's run is planned by)
        "run_s": r["elapsed_s"],
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "cpu": cpu or None,
        "steal_share": steal,
        "sink_closed": sink_closed,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in result["results"]:
        pts = sorted(r["latency"], key=lambda p: p["offered_per_s"])
        xs = [p["offered_per_s"] / 1000 for p in pts]
        (line,) = ax.plot(xs, [p["p99_ms"] for p in pts], marker="o", label=f"{r['name']} p99")
        ax.plot(xs, [p["p50_ms"] for p in pts], linestyle="--", color=line.get_color(),
                label=f"{r['name']} p50")  # fmt: skip
    ax.axhline(TARGETS["p99_ms_at_25k"], color="grey", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (thousand events/s)")
    ax.set_ylabel("latency, generator to sink (ms)")
    ax.set_title(f"millstream bench e2e - {result['machine'].get('cpu', '')}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_floor(url: str, plan: Plan, deadline: Deadline | None = None) -> dict[str, Any]:
    """Latency of the harness itself at the fixed load: the same generator and sink with
    nats-server between them and no router (the events are published straight into the
    sink's subjects). No router's p99 can be below this on the machine. One run, whatever
    `deadline` says; a repeat (a lost sink) only within it."""
    templates = [("mfg.telemetry.floor", body) for _, body in telemetry_templates()]
    label = f"no router at {FIXED_LOAD:,.0f}/s"
    sink_closed: list[str] = []
    r = measure(Load(url, "mfg.telemetry.>", FIXED_LOAD, plan.latency_s, plan.warmup_s,
                     templates=templates), label, sink_closed, deadline=deadline)  # fmt: skip
    return {**latency_point(FIXED_LOAD, r), "sink_closed": sink_closed}


def slow_consumers(log: Path, limit: int = 20) -> list[str]:
    """The first `limit` lines of a nats-server log that report a slow consumer."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if "Slow Consumer" in line][:limit]


def run_e2e(config: Path, plan: Plan, work: Path, budget_s: float | None = None) -> dict[str, Any]:
    """Every phase of the benchmark within `budget_s` (default: `default_budget_s(plan)`); a
    budget below the plan's essentials (`minimum_budget_s`) is refused before anything runs,
    as no run could keep it."""
    budget_s = default_budget_s(plan) if budget_s is None else budget_s
    least = minimum_budget_s(plan)
    if budget_s < least:
        raise BenchError(
            f"a budget of {budget_s:.0f} s is below the {least:.0f} s this plan's essential "
            "measurements take (the floor, a ramp step and a saturation run per router, the "
            "first JetStream run)"
        )
    started = time.monotonic()
    budget = Budget(budget_s, phase_costs(plan))
    with EmbeddedNats(work / "nats") as server:
        print(f"nats-server {server.info.get('version')} at {server.url}", file=sys.stderr)
        pid = server.pid
        floor = bench_floor(server.url, plan, budget.phase("floor"))
        results = [
            bench_router(name, server.url, config, work, plan, pid, budget.phase(name))
            for name in ROUTERS
        ]
        version = server.info.get("version")
        slow = slow_consumers(server.log_path)
    # each JetStream run on a fresh server of its own (see `bench_jetstream`)
    js = bench_jetstream(config, work, plan, runs=plan.runs, deadline=budget.phase("jetstream"))
    ceiling = budget.phase("jetstream_ceiling")
    # The relay stores the same input with less work per event than the router, so its run
    # takes about as long as the router's longest just did, not the longest a run can take
    # (with a margin for a noisy machine; never more than that longest).
    took = ROUTER_START_S + ROUTER_STOP_S + js["run_s"]
    need = min(jetstream_s(plan, worst=True), took + CEILING_MARGIN_S)
    if ceiling.fits(need):
        js["ceiling"] = bench_jetstream(config, work, plan, "passthrough")
        slow += js["ceiling"]["slow_consumers"]
    else:
        # not run at all rather than cut: fewer events would be another measurement
        ceiling.cut(f"not run: it takes up to {need:.0f} s, {max(0.0, ceiling.left()):.0f} s "
                    "were left")  # fmt: skip
        js["ceiling"] = None
    slow += js["slow_consumers"]
    spent = budget.report()
    elapsed = time.monotonic() - started
    by = {r["name"]: r for r in results}
    ms, pt, py = by["millstream"], by["passthrough"], by["python_baseline"]
    at_25k = next((p for p in ms["latency"] if p["offered_per_s"] == FIXED_LOAD), None)
    return {
        "benchmark": "e2e",
        "machine": {**machine_info(), "nats_server": version},
        "config": str(config),
        "plan": plan.__dict__,
        # the whole measurement, server start to the last router's stop (the issue bounds a
        # default run at 5 minutes; the plot and the JSON come after)
        "elapsed_s": elapsed,
        # the time budget, each phase's share of it as the phase started and what it used
        "budget": {**spent, "over": elapsed > budget_s},
        # what phases left out to stay within the budget, `<phase>: <what>` (empty: nothing)
        "cut_short": budget.cut_short(),
        "results": results,
        "ratio_vs_passthrough": ms["events_per_s"] / pt["events_per_s"],
        # the ratio's ceiling on this machine with a router as cheap as the relay (a model
        # from the saturation runs' CPU, see `ratio_if_router_as_cheap`)
        "ratio_if_router_as_cheap": ratio_if_router_as_cheap(ms, pt),
        "ratio_vs_python": ms["events_per_s"] / py["events_per_s"] if py["events_per_s"] else None,
        "jetstream": js,
        "floor": floor,
        # Connections nats-server cut off as slow consumers during the run, as its log says:
        # a router's (it fell behind) or the sink's (see `sink_closed` of each phase).
        "slow_consumers": slow,
        "targets": {
            **TARGETS,
            "met": {
                "vs_passthrough": ms["events_per_s"] / pt["events_per_s"]
                >= TARGETS["vs_passthrough"],
                "vs_python": py["events_per_s"] > 0
                and ms["events_per_s"] / py["events_per_s"] >= TARGETS["vs_python"],
                "p99_ms_at_25k": at_25k is not None and at_25k["p99_ms"] < TARGETS["p99_ms_at_25k"],
                "jetstream": js["events_per_s"] >= TARGETS["jetstream"]
                and js["lost"] == 0
                and js["duplicates"] == 0,
            },
        },
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="default: examples/manufacturing.yaml")
    p.add_argument("--json", type=Path, help="write the result here")
    p.add_argument("--plot", type=Path, help="PNG of latency against offered load")
    p.add_argument("--quick", action="store_true", help="shorter measurements (about 4 minutes)")
    p.add_argument(
        "--runs", type=int, help="saturation repeats per router, and JetStream runs (default 3)"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        help=f"time budget of the whole run in seconds (default {BUDGET_S:.0f}; with --quick "
        f"or --runs in proportion to the plan: --quick {default_budget_s(QUICK):.0f}); a phase "
        "that reaches its share stops early and the result says what it left out",
    )


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = Plan(**{**plan.__dict__, "runs": max(1, args.runs)})
    config = find_config(args.config).resolve()
    with tempfile.TemporaryDirectory(prefix="millstream-e2e-") as tmp:
        result = run_e2e(config, plan, Path(tmp), args.budget_s)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    if args.plot:
        plot(result, args.plot)
    print(summary(result))
    return 0


def cpu_line(cpu: dict[str, float]) -> str:
    line = ", ".join(
        f"{k.removesuffix('_us_per_event').replace('_', ' ')} {v:.1f} µs" for k, v in cpu.items()
    )
    # What the server's share alone allows: every core busy with nothing but nats-server.
    server = cpu.get("nats_server_us_per_event")
    cores = os.cpu_count() or 1
    if server:
        line += f" (nats-server alone: at most {cores * 1e6 / server:,.0f}/s on {cores} cores)"
    return line


# A hypervisor taking more than this share of the machine's CPU time is worth a word next to
# the figures it slowed down.
STEAL_NOTE = 0.02


def steal_note(share: float | None) -> str:
    if share is None or share < STEAL_NOTE:
        return ""
    return f"  (hypervisor steal {share:.0%} of CPU time)"


def cheap_router_lines(bound: dict[str, Any] | None) -> list[str]:
    if not bound:
        return []
    m, p = bound["millstream_us_per_delivered"], bound["passthrough_us_per_delivered"]

    def costs(c: dict[str, float]) -> str:
        return " + ".join(f"{who} {c[who]:.2f}" for who in ON_PATH) + " µs"

    return [
        f"      at saturation, CPU per delivered event: millstream {costs(m)}; "
        f"passthrough {costs(p)}",
        f"      with a router as cheap as the relay, at most {bound['ratio']:.2f} on this "
        f"machine (the same model gives {bound['model_ratio']:.2f} with millstream's own "
        "router)",
    ]


def ratio_if_router_as_cheap(ms: dict[str, Any], pt: dict[str, Any]) -> dict[str, Any] | None:
    """What millstream / passthrough could reach on this machine if millstream's router spent
    no more per delivered event than the relay does, from the same run's saturation CPU
    figures (`SteadyWindow`).

    At saturation the processes on the path (router, nats-server, the generator and sink)
    share out the cores they keep busy, so each router's throughput is those cores divided by
    the path's CPU per delivered event. `model_ratio` is that model with the measured costs
    (it should come out near the measured ratio: that checks the model); `ratio` swaps
    millstream's router cost for the relay's and keeps what nats-server and the harness spend
    on millstream's outputs (CloudEvents headers and the canonical body, larger than the
    relayed input). None when a figure is missing (a platform without `/proc`)."""
    a, b = ms.get("cpu_at_saturation") or {}, pt.get("cpu_at_saturation") or {}
    keys = [f"{who}_{what}" for who in ON_PATH for what in ("cores", "us_per_delivered")]
    if not all(k in a and k in b for k in keys):
        return None

    def us(c: dict[str, float]) -> dict[str, float]:
        return {who: c[f"{who}_us_per_delivered"] for who in ON_PATH}

    def cores(c: dict[str, float]) -> float:
        return sum(c[f"{who}_cores"] for who in ON_PATH)

    ms_us, pt_us = us(a), us(b)
    pt_rate = cores(b) / sum(pt_us.values()) * 1e6
    ms_rate = cores(a) / sum(ms_us.values()) * 1e6
    cheap_rate = cores(a) / (sum(ms_us.values()) - ms_us["router"] + pt_us["router"]) * 1e6
    return {
        "ratio": cheap_rate / pt_rate,
        "model_ratio": ms_rate / pt_rate,
        "millstream_us_per_delivered": ms_us,
        "passthrough_us_per_delivered": pt_us,
        "cores_in_use": {"millstream": cores(a), "passthrough": cores(b)},
    }


def summary(result: dict[str, Any]) -> str:
    budget = result.get("budget")
    lines = [
        f"e2e on {result['machine'].get('cpu')} ({os.cpu_count()} cores), "
        f"{result.get('elapsed_s', 0):.0f} s"
        + (f" of a {budget['budget_s']:.0f} s budget" if budget else "")
    ]
    top = result.get("plan", {}).get("ramp_to", math.inf)
    for r in result["results"]:
        flag = f"  UNSTABLE: spread over {SPREAD_LIMIT:.0%}" if r["unstable"] else ""
        if not r.get("saturated", True):
            offered = r.get("saturation_offered_per_s", top)
            flag += (
                f"  NOT SATURATED: kept up with {offered:,.0f}/s, where the budget stopped the "
                "search (a lower bound)"
                if r.get("budget_cut") and offered < top
                else "  NOT SATURATED: kept up with the top of the ramp (a lower bound)"
            )
        if r.get("budget_cut"):
            flag += "  CUT SHORT by the budget (below)"
        flag += steal_note(r.get("steal_share"))
        spread_text = "no spread" if r["spread"] is None else f"spread {r['spread']:.1%}"
        lines.append(
            f"  {r['name']:<16} {r['events_per_s']:>10,.0f} events/s "
            f"(runs {', '.join(f'{x:,.0f}' for x in r['runs'])}; {spread_text}){flag}"
        )
        if r.get("cpu_at_25k"):
            c = r["cpu_at_25k"]
            lines.append(
                f"      CPU at 25k/s: router {c['router_us_per_event']:.1f} µs/event"
                + (f", nats-server {c['nats_server_us_per_event']:.1f} µs/event"
                   if "nats_server_us_per_event" in c else "")
            )  # fmt: skip
        if r.get("first_load"):
            f = r["first_load"]
            lines.append(
                f"      first {f['offered_per_s']:,.0f}/s after start: p50 {f['p50_ms']:.2f} ms  "
                f"p99 {f['p99_ms']:.2f} ms  max {f['max_ms']:.2f} ms"
            )
        for p in r["latency"]:
            router_cpu = (p.get("cpu") or {}).get("router_us_per_event")
            lines.append(
                f"      at {p['offered_per_s']:>9,.0f}/s  p50 {p['p50_ms']:7.2f} ms  "
                f"p99 {p['p99_ms']:7.2f} ms  p999 {p['p999_ms']:7.2f} ms"
                + (f"  router {router_cpu:.2f} µs/event" if router_cpu else "")
            )
    js = result["jetstream"]
    met = result["targets"]["met"]
    at_25k = any(
        p["offered_per_s"] == FIXED_LOAD
        for r in result["results"]
        if r["name"] == "millstream"
        for p in r["latency"]
    )

    def bounds(*names: str) -> str:
        # a ratio with a lower bound in it (top of the ramp, or the budget) is a bound too,
        # and one with an unstable figure in it is no verdict: say so beside the ratio
        rs = [r for r in result["results"] if r["name"] in names]
        loose = [r["name"] for r in rs if not r.get("saturated", True)]
        shaky = [r["name"] for r in rs if r.get("unstable")]
        notes = [f"from a lower bound: {' and '.join(loose)} not saturated"] if loose else []
        if shaky:
            notes.append(f"{' and '.join(shaky)} UNSTABLE: not to be trusted")
        return f"  ({'; '.join(notes)})" if notes else ""

    lines += [
        f"  millstream / passthrough = {result['ratio_vs_passthrough']:.2f} "
        f"(target >= {TARGETS['vs_passthrough']}: {'met' if met['vs_passthrough'] else 'MISSED'})"
        + bounds("millstream", "passthrough"),
        *cheap_router_lines(result.get("ratio_if_router_as_cheap")),
        f"  millstream / python_baseline = {result['ratio_vs_python'] or 0:.2f} "
        f"(target >= {TARGETS['vs_python']}: {'met' if met['vs_python'] else 'MISSED'})"
        + bounds("millstream", "python_baseline"),
        f"  p99 at 25k/s: target < {TARGETS['p99_ms_at_25k']} ms: "
        + ("met" if met["p99_ms_at_25k"] else "MISSED" if at_25k else "not measured (budget)"),
    ]
    if result.get("floor"):
        f = result["floor"]
        lines.append(
            f"      with no router (generator -> nats-server -> sink) at "
            f"{f['offered_per_s']:,.0f}/s: p50 {f['p50_ms']:.2f} ms  p99 {f['p99_ms']:.2f} ms  "
            f"p999 {f['p999_ms']:.2f} ms"
        )
    js_runs = js.get("runs") or [js["events_per_s"]]
    js_spread = "no spread" if js.get("spread") is None else f"spread {js['spread']:.1%}"
    lines += [
        f"  jetstream: {js['events_per_s']:,.0f} events/s (runs "
        f"{', '.join(f'{x:,.0f}' for x in js_runs)}; {js_spread}), lost {js['lost']}, "
        f"duplicates {js['duplicates']} in all (target >= {TARGETS['jetstream']:,.0f}/s, 0, 0: "
        f"{'met' if met['jetstream'] else 'MISSED'})"
        + ("  (UNSTABLE: not to be trusted)" if js.get("unstable") else ""),
    ]
    if js.get("cpu"):
        steal = steal_note(js.get("steal_share"))
        lines.append(f"      CPU per stored event: {cpu_line(js['cpu'])}{steal}")
    if js.get("ceiling"):
        c = js["ceiling"]
        lines.append(
            f"  jetstream ceiling (passthrough relay, same input, outputs stored unacknowledged): "
            f"{c['events_per_s']:,.0f} events/s, lost {c['lost']}, duplicates {c['duplicates']}"
            # the path's share of what this machine's JetStream allows, a figure that does not
            # move with the VM's speed as the 60k target does
            + (
                f"; the path reached {js['events_per_s'] / c['events_per_s']:.0%} of it"
                if c["events_per_s"]
                else ""
            )
        )
        if c.get("cpu"):
            steal = steal_note(c.get("steal_share"))
            lines.append(f"      CPU per stored event: {cpu_line(c['cpu'])}{steal}")
    if not js.get("complete", True):
        lines.append(
            "  jetstream: the sink's wait ended while outputs were still being stored; "
            "'lost' includes events that were only late"
        )
    closed = [
        *result.get("floor", {}).get("sink_closed", []),
        *(c for r in result["results"] for c in r.get("sink_closed", [])),
        *js.get("sink_closed", []),
        *(js.get("ceiling") or {}).get("sink_closed", []),
    ]
    for c in closed:
        lines.append(f"  HARNESS: {c}")
    slow = result.get("slow_consumers") or []
    if slow:
        lines.append(f"  nats-server cut {len(slow)} slow consumer(s) off; first: {slow[0]}")
    cut = result.get("cut_short") or []
    if cut and budget:
        lines.append(f"  CUT SHORT to stay within the {budget['budget_s']:.0f} s budget:")
        lines += [f"    {c}" for c in cut]
    if budget and budget.get("over"):
        lines.append(
            f"  OVER BUDGET: {result['elapsed_s']:.0f} s for a {budget['budget_s']:.0f} s "
            "budget (the essential measurements ran long)"
        )
    return "\n".join(lines)
