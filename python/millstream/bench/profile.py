"""Where the router's and nats-server's CPU goes at saturation, stage by stage.

    scripts/profile-e2e [millstream|passthrough] [--rate N] [--warmup-s S] [--seconds S]
    scripts/profile-e2e [millstream|passthrough] --jetstream [--warmup-s S] [--seconds S]

The e2e benchmark's path (generator -> nats-server -> router -> nats-server -> sink, on a
fresh embedded nats-server) at one load, about the router's saturation. After the warm-up (long
enough for the telemetry route's dedup table to fill, so the profile sees its steady state),
`perf record` samples the router's and nats-server's call stacks, and each sample is counted
to the innermost pipeline stage on its stack (`ROUTER_STAGES`, `SERVER_STAGES`). Each stage's
share of the samples times the process's CPU per delivered event over the same window
(`/proc`, and the sink's count) gives what the stage costs per delivered event.

With `--jetstream`, the benchmark's JetStream path instead: Odoo stock moves published into
ODOO_IN (by default at the target rate, 60,000/s, so the window shows the path's steady state
there; `bench e2e` offers twice that and measures how fast the backlog is stored), read by
the router's durable consumer, each output published to MFG_OUT with its PubAck awaited
before the input is acked, and counted from MFG_OUT; for `passthrough`, the relay's ceiling
run (outputs stored in a stream of their own, published without waiting for a PubAck).

`scripts/profile-e2e` builds the extension with frame pointers (perf follows them; the
release build has none) and runs this module against that build. Needs Linux `perf`.

Frame pointers have one blind spot: a sample in a leaf function that sets up no frame (libc's
`memcpy`, say) skips its caller and counts to the caller's caller's stage.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from millstream.bench import e2e
from millstream.bench.core import find_config
from millstream.transport import EmbeddedNats

Stages = list[tuple[str, tuple[str, ...]]]

# A frame belongs to a stage when its name starts with one of the stage's prefixes (after a
# leading `<`, `<&` or `<&mut `, so a trait method counts with its type). Stages are checked
# from the sample's innermost frame outwards; the first frame that names one decides.
ROUTER_STAGES: Stages = [
    ("ingest: NATS protocol in", ("millstream_core::plane::ingest", "millstream_natswire::")),
    ("decode (sonic-rs, our checks)", ("millstream_core::decode::", "sonic_rs::")),
    ("validate (JSON Schema)", ("millstream_core::validate::", "jsonschema::")),
    ("map (fields, units, timestamps)", ("millstream_core::map::Mapper::apply",)),
    ("serialise the canonical entity", ("millstream_core::map::Mapper::write_entity",)),
    ("keys and subjects (templates)", ("millstream_core::template::",)),
    (
        "dedup and stale guard",
        (
            "millstream_core::pipeline::Pipeline::commit",
            "millstream_core::dedup::",
            "millstream_core::stale::",
        ),
    ),
    (
        "rest of the pipeline (routing, outcomes)",
        ("millstream_core::pipeline::", "millstream_core::route::"),
    ),
    (
        "publish: CloudEvents headers, NATS protocol out",
        (
            "millstream_core::plane::egress::",
            "millstream_core::plane::wire::",
            "millstream_core::plane::publish::",
        ),
    ),
    ("lanes (batching between ingest and egress)", ("millstream_core::plane::lanes::",)),
    ("dedup/stale state snapshots", ("millstream_core::plane::state::",)),
    ("async-nats client (JetStream consumer, acks)", ("async_nats::",)),
]
SERVER = "github.com/nats-io/nats-server/v2/server."
SERVER_STAGES: Stages = [
    (
        "message-trace header scan (every message with headers)",
        (SERVER + "genHeaderMapIfTraceHeadersPresent", SERVER + "(*client).initMsgTrace"),
    ),
    (
        "JetStream",
        tuple(
            SERVER + t
            for t in (
                "(*stream)",
                "(*fileStore)",
                "(*msgBlock)",
                "(*consumer)",
                "(*memStore)",
                "(*jetStream)",
                "(*raft)",
            )
        ),
    ),
    (
        "deliver: queue for subscribers",
        (SERVER + "(*client).deliverMsg", SERVER + "(*client).processMsgResults"),
    ),
    ("read, parse, match subjects", (SERVER + "(*client).",)),
]
# Only when no stage is on the stack: the Go runtime's own work (GC, scheduler).
SERVER_FALLBACK: Stages = [("Go runtime (GC, scheduler)", ("runtime.",))]
OTHER = "other (async runtime, allocator, kernel, outside the stages)"


def _bare(frame: str) -> str:
    for lead in ("<&mut ", "<&", "<"):
        if frame.startswith(lead):
            return frame[len(lead) :]
    return frame


def stage_of(stack: list[str], stages: Stages, fallback: Stages | None = None) -> str:
    """The stage a sample counts to: its innermost frame (`stack[0]`) that names a stage,
    else one that names a `fallback` stage, else `OTHER`."""
    for table in (stages, fallback or []):
        for frame in stack:
            name = _bare(frame)
            for stage, prefixes in table:
                if name.startswith(prefixes):
                    return stage
    return OTHER


def samples(script: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """`(period, frames innermost first)` per sample of `perf script -F period,ip,sym` text: a
    sample is its period on a line of its own, then a tab-indented `<address> <symbol>` line
    per frame, then a blank line."""
    period, stack = 0, []
    for line in script:
        if line.startswith("\t"):
            parts = line.split(maxsplit=1)
            stack.append(parts[1].rstrip() if len(parts) > 1 else "[unknown]")
        elif line.strip():
            period = int(line.split()[0])
        elif stack:
            yield period, stack
            period, stack = 0, []
    if stack:
        yield period, stack


def shares(
    script: Iterable[str], stages: Stages, fallback: Stages | None = None
) -> dict[str, float]:
    """Each stage's share of the sampled CPU (weighted by the samples' periods), in the order
    of `stages`, `fallback`, then `OTHER`; stages with no samples are left out."""
    counts: Counter[str] = Counter()
    for period, stack in samples(script):
        counts[stage_of(stack, stages, fallback)] += period
    total = sum(counts.values())
    order = [s for s, _ in [*stages, *(fallback or [])]] + [OTHER]
    return {s: counts[s] / total for s in order if counts[s]} if total else {}


def perf_script(data: Path) -> list[str]:
    out = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "period,ip,sym"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.splitlines()


def load_for(
    router: str, url: str, rate: float, warmup_s: float, seconds: float, jetstream: bool
) -> e2e.Load:
    """The generator run that covers the warm-up and the sampled window: the core NATS
    saturation load, or with `jetstream`, `bench_jetstream`'s load (`e2e.jetstream_load`) at
    `rate`."""
    duration = warmup_s + seconds + 1.5
    if jetstream:
        return e2e.jetstream_load(url, router, rate, duration, warmup_s, settle_s=1.0)
    sink = "passthrough.>" if router == "passthrough" else "mfg.telemetry.>"
    return e2e.Load(url, sink, rate, duration, warmup_s)


def profile(
    router: str, rate: float, warmup_s: float, seconds: float, jetstream: bool = False
) -> dict[str, Any]:
    """Run the load, sample both processes for `seconds` after `warmup_s`, and return the
    window's rates, each process's cores and CPU per delivered event, and the stages'."""
    work = Path(tempfile.mkdtemp(prefix="millstream-profile-"))
    with EmbeddedNats(work / "nats") as server:
        r = e2e.start_router(router, server.url, find_config(), work)
        try:
            procs = [("router", r.proc.pid), ("nats_server", server.pid)]
            load = load_for(router, server.url, rate, warmup_s, seconds, jetstream)
            recorders: list[subprocess.Popen[bytes]] = []

            def record() -> None:
                for who, pid in procs:
                    recorders.append(subprocess.Popen(
                        ["perf", "record", "-F", "499", "-g", "-q", "-o",
                         str(work / f"{who}.data"), "-p", str(pid), "--",
                         "sleep", str(seconds)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    ))  # fmt: skip

            # the recorders start as the window opens, and it closes with the last report
            # inside their `seconds`
            window = e2e.SteadyWindow(procs, warmup_s, seconds, on_open=record)
            report = load.run(window.progress)
            for rec in recorders:
                rec.wait(60)
        finally:
            r.stop()
        figures = window.figures()
        if not figures:
            raise e2e.BenchError("the load ended before the profile's window closed")
        result: dict[str, Any] = {
            "router": router + (" (JetStream path)" if jetstream else ""),
            "offered_per_s": report["offered_per_s"],
            "delivered_per_s": figures["received_per_s"],
            "idle_share": figures.get("idle_share"),
            "steal_share": figures.get("steal_share"),
            "processes": {},
        }
        for who, pid in procs:
            stages = (
                shares(perf_script(work / f"{who}.data"), ROUTER_STAGES)
                if who == "router"
                else shares(perf_script(work / f"{who}.data"), SERVER_STAGES, SERVER_FALLBACK)
            )
            per_event = figures.get(f"{who}_us_per_delivered", 0.0)
            result["processes"][who] = {
                "pid": pid,
                "cores": figures.get(f"{who}_cores", 0.0),
                "us_per_delivered": per_event,
                "stages": {
                    s: {"share": f, "us_per_delivered": f * per_event} for s, f in stages.items()
                },
            }
        return result


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"{result['router']} at {result['offered_per_s']:,.0f} events/s offered: "
        f"{result['delivered_per_s']:,.0f} delivered/s in the profiled window; machine idle "
        f"{result['idle_share']:.0%}, steal {result['steal_share']:.0%}"
    ]
    for who, p in result["processes"].items():
        lines.append(
            f"\n{who}: {p['cores']:.2f} cores, {p['us_per_delivered']:.2f} µs CPU per delivered "
            "event"
        )
        for stage, s in p["stages"].items():
            lines.append(f"  {stage:<56} {s['us_per_delivered']:6.2f} µs  {s['share']:6.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="profile-e2e", description=__doc__.split("\n\n")[0])
    p.add_argument("router", nargs="?", default="millstream", choices=e2e.ROUTERS[:2])
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="events/s offered: about the router's saturation throughput as `bench e2e` "
        "measures it on this machine (default: 300,000 for millstream, 600,000 for "
        "passthrough, the 2-vCPU VMs' figures of 2026-12-07; a faster machine needs more "
        "to be saturated); far past it, the profile also counts work on events the router "
        "then drops",
    )
    p.add_argument(
        "--jetstream",
        action="store_true",
        help="profile the JetStream path (`bench e2e`'s jetstream run; --rate defaults to its "
        "target, 60,000/s)",
    )
    p.add_argument(
        "--warmup-s", type=float, default=None, help="default 12 s, 3 s with --jetstream"
    )
    p.add_argument("--seconds", type=float, default=8.0)
    args = p.parse_args(argv)
    if args.jetstream:
        rate = args.rate or e2e.TARGETS["jetstream"]
    else:
        rate = args.rate or (300_000.0 if args.router == "millstream" else 600_000.0)
    # the core path's warm-up fills the telemetry dedup table; the JetStream path's
    # consumer only needs to have a backlog
    warmup = args.warmup_s if args.warmup_s is not None else (3.0 if args.jetstream else 12.0)
    print(summary(profile(args.router, rate, warmup, args.seconds, args.jetstream)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
