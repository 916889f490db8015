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
after all, the load goes up a step and they run again; at the top of the ramp the result is
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
at-least-once route into MFG_OUT, counted from the stream: events/s, lost and duplicates; and
its ceiling, the passthrough relay on the same input with its outputs stored in a stream.
First of all, the harness's own latency floor: the fixed load published straight into the
sink's subjects, nats-server between generator and sink and no router (`floor`).
Per router, the CPU its process and nats-server spent per event at each load step (`/proc`);
on the JetStream path, per stored event, also the generator's and sink's (this process).

    millstream bench e2e [--json PATH] [--plot PATH.png] [--quick]
"""

from __future__ import annotations

import argparse
import json
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
from typing import Any

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

    def run(self, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        from millstream._core import run_load

        report: dict[str, Any] = run_load(json.dumps(self.spec()), progress)
        return report


def _progress(label: str) -> Callable[[dict[str, Any]], None]:
    def show(p: dict[str, Any]) -> None:
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
) -> dict[str, Any]:
    """Run `load` and show it; a run whose sink lost its connection is noted in `sink_closed`
    and, with `retry`, run again. With `procs`, the report's `cpu` is `cpu_per_event` of
    those processes over the run it returns."""
    for _ in range(1 + (SINK_RETRIES if retry else 0)):
        before = cpu_readings(procs) if procs else None
        r = load.run(_progress(label))
        _done(label, r)
        if procs and before is not None:
            r["cpu"] = cpu_per_event(before, procs, r["sent"])
        if not r["sink_closed"]:
            return r
        sink_closed.append(f"{label}: the sink's connection ended {r['sink_closed']}")
        print(f"  ! {sink_closed[-1]}" + ("; measuring again" if retry else ""), file=sys.stderr)
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


QUICK = Plan(ramp_from=40_000, ramp_to=500_000, ramp_s=2, saturation_s=3, latency_s=3,
             warmup_s=0.5, runs=3, js_events=120_000)  # fmt: skip
FULL = Plan(ramp_from=40_000, ramp_to=600_000, ramp_s=2.5, saturation_s=5, latency_s=4,
            warmup_s=1, runs=3, js_events=300_000)  # fmt: skip
KEEPS_UP = 0.97
# A router keeps up with a load when it delivers nearly all of it *without a growing queue*:
# a short ramp step can end with a backlog that drains during the settle time and still
# counts as delivered, so the median latency is checked too.
KEEPS_UP_P50_MS = 50.0


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


def cpu_readings(procs: list[tuple[str, int | None]]) -> dict[str, float | None]:
    """`cpu_seconds` of each named process (None for a missing pid or an unreadable one)."""
    return {who: cpu_seconds(pid) if pid else None for who, pid in procs}


def cpu_per_event(
    before: dict[str, float | None], procs: list[tuple[str, int | None]], events: int
) -> dict[str, float]:
    """CPU µs each process spent per event since `before` (`cpu_readings` of the same
    `procs`), as `{"<who>_us_per_event": µs}`; a process without both readings, or no events,
    is left out."""
    cpu: dict[str, float] = {}
    for who, pid in procs:
        start, end = before[who], cpu_seconds(pid) if pid else None
        if start is not None and end is not None and events:
            cpu[f"{who}_us_per_event"] = (end - start) / events * 1e6
    return cpu


def machine_times() -> list[int] | None:
    """The machine's CPU time so far by kind (Linux `/proc/stat`, clock ticks), or None."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    return [int(x) for x in first[1:]] if first and first[0] == "cpu" else None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Of the machine's CPU time between two readings, the share the hypervisor gave to
    other guests ("steal", the 8th field): on a shared VM it is time this run was promised
    and did not get, so a phase with a large share measured a slower machine."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])
    return (after[7] - before[7]) / total if total > 0 else None


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


def find_saturation(
    run_at: Callable[[float, int], dict[str, Any]], rate: float, plan: Plan
) -> tuple[float, list[dict[str, Any]]]:
    """The offered rate of the saturation runs, and those runs (`plan.runs` of them), starting
    where the ramp stopped. `run_at(rate, i)` measures run `i` at `rate`.

    A round whose first run kept up means the ramp had stopped on a pause: that rate is not
    the router's saturation, so the search goes on up at once instead of repeating a rate the
    router takes whole (such repeats made a default run take over six minutes on a noisy
    VM). A round that did not keep up is run `plan.runs` times and decided by its median; at
    the top of the ramp the figure stays a lower bound."""
    while True:
        runs = [run_at(rate, 0)]
        first_kept_up = float(runs[0]["output_per_s"]) >= KEEPS_UP * rate
        if not first_kept_up or rate >= plan.ramp_to:
            runs += [run_at(rate, i) for i in range(1, plan.runs)]
        sat = statistics.median(float(r["output_per_s"]) for r in runs)
        if sat < KEEPS_UP * rate or rate >= plan.ramp_to:
            return rate, runs
        rate = min(rate * 1.25, plan.ramp_to)


def bench_router(
    name: str, url: str, config: Path, work: Path, plan: Plan, server_pid: int | None = None
) -> dict[str, Any]:
    sink = "passthrough.>" if name == "passthrough" else "mfg.telemetry.>"
    router = start_router(name, url, config, work)
    times = machine_times()
    sink_closed: list[str] = []
    try:
        # The fixed load from the moment the router is ready, warm-up included: what a router
        # restarted under traffic does in its first seconds (fresh buffers, empty tables).
        # Not repeated: a second run would not be the first.
        label = f"{name} first {FIXED_LOAD:,.0f}/s after start"
        r = measure(Load(url, sink, FIXED_LOAD, plan.latency_s, 0.0), label, sink_closed,
                    retry=False)  # fmt: skip
        first_load = latency_point(FIXED_LOAD, r)
        ramp: list[dict[str, Any]] = []

        def step(rate: float, label: str) -> bool:
            r = measure(Load(url, sink, rate, plan.ramp_s, plan.warmup_s), label, sink_closed)
            ramp.append(
                {
                    "offered_per_s": rate,
                    "delivered_per_s": r["delivered_per_s"],
                    "p50_ms": r["latency_ms"]["p50"],
                    "p99_ms": r["latency_ms"]["p99"],
                }
            )
            return bool(
                r["delivered_per_s"] >= KEEPS_UP * r["offered_per_s"]
                and r["latency_ms"]["p50"] <= KEEPS_UP_P50_MS
            )

        rate = plan.ramp_from
        while True:
            # a step is short: one pause can fail it, so a failed step is tried once more
            # before the ramp stops there
            kept_up = step(rate, f"{name} ramp {rate:,.0f}/s") or step(
                rate, f"{name} ramp {rate:,.0f}/s (again)"
            )
            if not kept_up or rate >= plan.ramp_to:
                break
            rate = min(rate * 1.25, plan.ramp_to)

        def saturation_run(rate: float, i: int) -> dict[str, Any]:
            load = Load(url, sink, rate, plan.saturation_s, plan.warmup_s)
            label = f"{name} saturation {i + 1}/{plan.runs} at {rate:,.0f}/s"
            return measure(load, label, sink_closed)

        rate, runs = find_saturation(saturation_run, rate, plan)
        # the sink's output rate while the load lasted: the router's throughput when
        # offered more than it can take (a backlog drained after the window does not count)
        delivered = [float(r["output_per_s"]) for r in runs]
        sat = statistics.median(delivered)
        latency = []
        measured: list[tuple[str, int | None]] = [
            ("router", router.proc.pid),
            ("nats_server", server_pid),
        ]
        for offered in sorted({FIXED_LOAD, *(round(sat * s) for s in SHARES)}):
            if offered < 100:
                continue
            # CPU per event at each load: how much of the shared machine each router needs,
            # steadier on a noisy VM than a saturation figure. At 25k/s every router keeps
            # up; at a share of its own saturation the batches are as large as in use.
            load = Load(url, sink, offered, plan.latency_s, plan.warmup_s)
            r = measure(load, f"{name} at {offered:,.0f}/s", sink_closed, procs=measured)
            latency.append(
                {
                    **latency_point(offered, r),
                    "achieved_offered_per_s": r["offered_per_s"],
                    "cpu": r["cpu"] or None,
                }
            )
    finally:
        router.stop()
    s = spread(delivered)
    return {
        "name": name,
        "events_per_s": sat,
        "saturation_offered_per_s": rate,
        "ramp": ramp,
        "keeps_up": {"delivered_share": KEEPS_UP, "p50_ms": KEEPS_UP_P50_MS},
        "runs": delivered,
        "spread": s,
        "unstable": s > SPREAD_LIMIT,
        # False: it delivered what the top of the ramp offered, so `events_per_s` is only a
        # lower bound of what it can take
        "saturated": sat < KEEPS_UP * rate,
        "generator_lag_ms": max(float(r["generator_lag_ms"]) for r in runs),
        "latency": latency,
        "first_load": first_load,
        "cpu_at_25k": next((p["cpu"] for p in latency if p["offered_per_s"] == FIXED_LOAD), None),
        "steal_share": steal_share(times, machine_times()),
        "sink_closed": sink_closed,
    }


# The sink stops once nothing new was stored for this long, or 3x this after the last send:
# a path slower than (events / (duration + 3 x settle)) is cut off, and what it had not yet
# stored would count as lost. `complete` in the result says which way the count ended.
JS_SETTLE_S = 5.0


# Where the passthrough relay's JetStream run is stored, so the sink can count it from a
# stream as it does MFG_OUT.
CEILING_STREAM = "BENCH_PASSTHROUGH"


def _ensure_stream(url: str, name: str, subjects: list[str]) -> None:
    import asyncio

    import nats

    async def create() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().add_stream(name=name, subjects=subjects)
        finally:
            await nc.drain()

    asyncio.run(create())


def bench_jetstream(
    url: str,
    config: Path,
    work: Path,
    plan: Plan,
    router_name: str = "millstream",
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Odoo stock moves JetStream -> Millstream (at least once, dedup) -> JetStream MFG_OUT,
    counted from the stream. With `router_name="passthrough"`, the ceiling of that path on
    this machine: the relay pulls and acks the same input, and its outputs are stored in a
    stream of their own (published without waiting for a PubAck)."""
    if router_name == "passthrough":
        _ensure_stream(url, CEILING_STREAM, ["passthrough.odoo.>"])
        sink_subject, sink_stream = "passthrough.odoo.>", CEILING_STREAM
    else:
        sink_subject, sink_stream = "mfg.inventory.>", "MFG_OUT"
    router = start_router(router_name, url, config, work)
    # CPU per event of each process on the path: on two shared cores, what one of them spends
    # the others cannot. The generator and sink run in this process.
    procs = [("router", router.proc.pid), ("nats_server", server_pid),
             ("generator_and_sink", os.getpid())]  # fmt: skip
    cpu_before = cpu_readings(procs)
    times = machine_times()
    try:
        # offered at the target rate: a path that keeps up stores each event about as fast as
        # it is published; one that cannot builds a backlog in ODOO_IN, and its throughput is
        # what it stored over the time it took
        rate = TARGETS["jetstream"]
        label = f"jetstream ({router_name})"
        load = Load(url, sink_subject, rate, plan.js_events / rate, 0.0,
                    templates=stock_move_templates(), marker=JS_MARKER, jetstream_window=4096,
                    sink_stream=sink_stream, settle_s=JS_SETTLE_S)  # fmt: skip
        # Not repeated: the router has taken the run's records, and the same ones again
        # would rightly be duplicates to it.
        sink_closed: list[str] = []
        r = measure(load, label, sink_closed, retry=False)
        cpu = cpu_per_event(cpu_before, procs, r["distinct"])
    finally:
        router.stop()
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
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "cpu": cpu or None,
        "steal_share": steal_share(times, machine_times()),
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


def bench_floor(url: str, plan: Plan) -> dict[str, Any]:
    """Latency of the harness itself at the fixed load: the same generator and sink with
    nats-server between them and no router (the events are published straight into the
    sink's subjects). No router's p99 can be below this on the machine."""
    templates = [("mfg.telemetry.floor", body) for _, body in telemetry_templates()]
    label = f"no router at {FIXED_LOAD:,.0f}/s"
    sink_closed: list[str] = []
    r = measure(Load(url, "mfg.telemetry.>", FIXED_LOAD, plan.latency_s, plan.warmup_s,
                     templates=templates), label, sink_closed)  # fmt: skip
    return {**latency_point(FIXED_LOAD, r), "sink_closed": sink_closed}


def slow_consumers(log: Path, limit: int = 20) -> list[str]:
    """The first `limit` lines of a nats-server log that report a slow consumer."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if "Slow Consumer" in line][:limit]


def run_e2e(config: Path, plan: Plan, work: Path) -> dict[str, Any]:
    started = time.monotonic()
    with EmbeddedNats(work / "nats") as server:
        print(f"nats-server {server.info.get('version')} at {server.url}", file=sys.stderr)
        pid = server.pid
        floor = bench_floor(server.url, plan)
        results = [bench_router(name, server.url, config, work, plan, pid) for name in ROUTERS]
        js = bench_jetstream(server.url, config, work, plan, server_pid=pid)
        js["ceiling"] = bench_jetstream(server.url, config, work, plan, "passthrough", pid)
        version = server.info.get("version")
        slow = slow_consumers(server.log_path)
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
        "elapsed_s": time.monotonic() - started,
        "results": results,
        "ratio_vs_passthrough": ms["events_per_s"] / pt["events_per_s"],
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
    p.add_argument("--runs", type=int, help="saturation repeats per router (default 3)")


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    if args.runs:
        plan = Plan(**{**plan.__dict__, "runs": max(1, args.runs)})
    config = find_config(args.config).resolve()
    with tempfile.TemporaryDirectory(prefix="millstream-e2e-") as tmp:
        result = run_e2e(config, plan, Path(tmp))
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


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"e2e on {result['machine'].get('cpu')} ({os.cpu_count()} cores), "
        f"{result.get('elapsed_s', 0):.0f} s"
    ]
    for r in result["results"]:
        flag = f"  UNSTABLE: spread over {SPREAD_LIMIT:.0%}" if r["unstable"] else ""
        if not r.get("saturated", True):
            flag += "  NOT SATURATED: kept up with the top of the ramp (a lower bound)"
        flag += steal_note(r.get("steal_share"))
        lines.append(
            f"  {r['name']:<16} {r['events_per_s']:>10,.0f} events/s "
            f"(runs {', '.join(f'{x:,.0f}' for x in r['runs'])}; spread {r['spread']:.1%}){flag}"
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
    lines += [
        f"  millstream / passthrough = {result['ratio_vs_passthrough']:.2f} "
        f"(target >= {TARGETS['vs_passthrough']}: {'met' if met['vs_passthrough'] else 'MISSED'})",
        f"  millstream / python_baseline = {result['ratio_vs_python'] or 0:.2f} "
        f"(target >= {TARGETS['vs_python']}: {'met' if met['vs_python'] else 'MISSED'})",
        f"  p99 at 25k/s: target < {TARGETS['p99_ms_at_25k']} ms: "
        f"{'met' if met['p99_ms_at_25k'] else 'MISSED'}",
    ]
    if result.get("floor"):
        f = result["floor"]
        lines.append(
            f"      with no router (generator -> nats-server -> sink) at "
            f"{f['offered_per_s']:,.0f}/s: p50 {f['p50_ms']:.2f} ms  p99 {f['p99_ms']:.2f} ms  "
            f"p999 {f['p999_ms']:.2f} ms"
        )
    lines += [
        f"  jetstream: {js['events_per_s']:,.0f} events/s, lost {js['lost']}, duplicates "
        f"{js['duplicates']} (target >= {TARGETS['jetstream']:,.0f}/s, 0, 0: "
        f"{'met' if met['jetstream'] else 'MISSED'})",
    ]
    if js.get("cpu"):
        steal = steal_note(js.get("steal_share"))
        lines.append(f"      CPU per stored event: {cpu_line(js['cpu'])}{steal}")
    if js.get("ceiling"):
        c = js["ceiling"]
        lines.append(
            f"  jetstream ceiling (passthrough relay, same input, outputs stored unacknowledged): "
            f"{c['events_per_s']:,.0f} events/s, lost {c['lost']}, duplicates {c['duplicates']}"
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
    return "\n".join(lines)
