"""`millstream bench core`: the in-process core against the same pipeline in pure Python.

One process, one generated mix (`millstream.bench.gen`), timed alternately:

- `millstream`: `Router.process` over batches on one worker thread (`threads=1`), a fresh
  `Router` per repeat (so dedup and stale state start empty each time), `now_ms` injected: the
  arrival time of each batch's last event. This is the like-for-like figure (the baseline runs
  on one core too) and the one `ratio_vs_python` uses;
- `millstream_threads_<n>` (machines with more than one core): the same with one worker
  thread per core, the Router's default: throughput of the whole machine, not cost per event;
- `python_baseline`: `millstream.bench.baseline.Baseline.process` over the same batches, a fresh
  `Baseline` per repeat.

Before timing, both run the whole mix once and every event's status must agree, so the two
are known to do the same work (`tests/test_bench_baseline.py` checks outcomes byte for byte).
The result is the median of the repeats (`runs` lists each repeat's ns/event). Dedup memory
comes from `Router.memory()`: after the mix, and at capacity (a telemetry route limited to
`capacity` keys fed `capacity_events` distinct samples), the figure to provision by and the one
reported as `dedup_bytes_per_key`.

    millstream bench core [--json PATH] [--events N] [--repeats N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from millstream.config import Config, load_config
from millstream.errors import ConfigError

Batch = tuple[list[tuple[str, bytes]], int]

EXAMPLE_CONFIG = Path("examples") / "manufacturing.yaml"
TARGET_NS_PER_EVENT = 1_000
TARGET_RATIO = 5.0


def find_config(path: str | Path | None = None) -> Path:
    """The config to benchmark: `path`, else `examples/manufacturing.yaml` in the current
    directory or in the source checkout this package runs from."""
    if path is not None:
        return Path(path)
    here = Path(__file__).resolve()
    for candidate in (Path.cwd() / EXAMPLE_CONFIG, here.parents[3] / EXAMPLE_CONFIG):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"cannot find {EXAMPLE_CONFIG} here or next to the package; pass --config PATH "
        "(the pure-Python baseline implements that example config)"
    )


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rustc: str | None = subprocess.run(
            ["rustc", "--version"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rustc = None
    import msgspec

    from millstream import _core

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "rustc": rustc,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "millstream_core": _core.__version__,
        "msgspec": msgspec.__version__,
    }


def _batches(events: list[tuple[str, bytes]], batch_size: int) -> list[Batch]:
    from millstream.bench.gen import arrival_ms

    return [
        (events[i : i + batch_size], arrival_ms(min(i + batch_size, len(events)) - 1))
        for i in range(0, len(events), batch_size)
    ]


def _time_core(config: Config, batches: list[Batch], threads: int) -> int:
    from millstream.router import Router

    router = Router(config, threads=threads)
    process = router.process
    gc.collect()
    t0 = time.perf_counter_ns()
    for events, now_ms in batches:
        process(events, now_ms=now_ms)
    return time.perf_counter_ns() - t0


def _time_baseline(config: Config, batches: list[Batch]) -> int:
    from millstream.bench.baseline import Baseline

    process = Baseline(config).process
    gc.collect()
    t0 = time.perf_counter_ns()
    for events, now_ms in batches:
        process(events, now_ms)
    return time.perf_counter_ns() - t0


def _verify(config: Config, batches: list[Batch]) -> tuple[dict[str, int], dict[str, float]]:
    """Run both once; every event's status must agree. Returns the outcome counts and the
    dedup memory of the core after the mix."""
    from millstream.bench.baseline import Baseline
    from millstream.router import Router

    router, baseline = Router(config, threads=1), Baseline(config)
    core_statuses: list[str] = []
    base_statuses: list[str] = []
    for events, now_ms in batches:
        core_statuses += router.process(events, now_ms=now_ms).statuses()
        base_statuses += [o[0] for o in baseline.process(events, now_ms)]
    differ = sum(a != b for a, b in zip(core_statuses, base_statuses, strict=True))
    if differ:
        raise RuntimeError(
            f"the pure-Python baseline and the core disagree on {differ} of "
            f"{len(core_statuses)} events: the comparison would be meaningless"
        )
    return dict(sorted(Counter(core_statuses).items())), dedup_memory(router.memory())


def dedup_memory(memory: list[dict[str, Any]]) -> dict[str, float]:
    """Keys, bytes and bytes per key over the routes that remember dedup keys."""
    used = [m for m in memory if m["dedup_keys"]]
    keys = sum(m["dedup_keys"] for m in used)
    size = sum(m["dedup_bytes"] for m in used)
    return {
        "keys": keys,
        "bytes": size,
        "bytes_per_key": round(size / keys, 1) if keys else 0.0,
    }


def dedup_at_capacity(
    config: Config, *, capacity: int = 250_000, events: int = 300_000
) -> dict[str, float]:
    """Fill the telemetry route's dedup cache past `capacity` with distinct samples and report
    the worst bytes per key seen once it is full (one key leaves for each new one, so the
    cache stays at its capacity)."""
    from millstream.bench.gen import arrival_ms, unique_telemetry
    from millstream.router import Router

    routes = [
        r.model_copy(update={"dedup": r.dedup.model_copy(update={"capacity": capacity})})
        if r.name == "telemetry-history" and r.dedup is not None
        else r
        for r in config.routes
    ]
    router = Router(config.model_copy(update={"routes": routes}), threads=1)
    samples = unique_telemetry(events)
    worst: dict[str, float] = {"keys": 0, "bytes": 0, "bytes_per_key": 0.0}
    step = 10_000
    for i in range(0, len(samples), step):
        router.process(samples[i : i + step], now_ms=arrival_ms(i + step - 1))
        if i + step >= capacity:
            m = dedup_memory(router.memory())
            if m["bytes_per_key"] > worst["bytes_per_key"]:
                worst = m
    worst["capacity"] = capacity
    return worst


def run_core_bench(
    n_events: int = 200_000,
    batch_size: int = 1000,
    repeats: int = 5,
    seed: int = 20261127,
    *,
    config_path: str | Path | None = None,
    capacity: int = 250_000,
    capacity_events: int = 300_000,
) -> dict[str, Any]:
    """Generate the mix once, verify the baseline agrees with the core, then time both
    `repeats` times, alternating. Returns the result document (see the module docstring);
    `dedup_bytes_per_key` is measured at capacity (or after the mix if `capacity_events` is 0).
    """
    from millstream.bench.gen import generate_mix

    path = find_config(config_path)
    config = load_config(path)
    machine = machine_info()
    mix = generate_mix(n_events, seed)
    batches = _batches(mix.events, batch_size)
    outcomes, after_mix = _verify(config, batches)
    cores = os.cpu_count() or 1
    threads = {"millstream": 1, "python_baseline": 1}
    if cores > 1:
        threads[f"millstream_threads_{cores}"] = cores
    runs: dict[str, list[int]] = {name: [] for name in threads}
    for _ in range(repeats):
        for name, n_threads in threads.items():
            if name == "python_baseline":
                runs[name].append(_time_baseline(config, batches))
            else:
                runs[name].append(_time_core(config, batches, n_threads))
    n = len(mix.events)
    results: list[dict[str, Any]] = []
    for name, times in runs.items():
        median = statistics.median(times)
        results.append(
            {
                "name": name,
                "threads": threads[name],
                "events_per_s": round(n / (median / 1e9)),
                "ns_per_event": round(median / n, 1),
                "runs": [round(t / n, 1) for t in times],
            }
        )
    at_capacity = (
        dedup_at_capacity(config, capacity=capacity, events=capacity_events)
        if capacity_events
        else None
    )
    summary = mix.summary()
    summary["batch_size"] = batch_size
    summary["repeats"] = repeats
    summary["outcomes"] = outcomes
    summary["dedup_after_mix"] = after_mix
    summary["dedup_at_capacity"] = at_capacity
    return {
        "benchmark": "core",
        "machine": machine,
        "config": str(path),
        "events": n,
        "mix": summary,
        "results": results,
        "ratio_vs_python": round(results[1]["ns_per_event"] / results[0]["ns_per_event"], 2),
        "dedup_bytes_per_key": (at_capacity or after_mix)["bytes_per_key"],
    }


# --- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `millstream bench core`."""
    parser.add_argument("--json", metavar="PATH", help="also write the result document here")
    parser.add_argument(
        "--events", type=int, default=200_000, help="events in the mix (default 200000)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="events per batch (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=20261127, help="seed of the generated mix")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="the example config (default: examples/manufacturing.yaml, found automatically)",
    )
    parser.add_argument(
        "--capacity-events",
        type=int,
        default=300_000,
        help="distinct samples pushed through a 250k-key dedup cache to measure its memory "
        "at capacity (0 skips it; default 300000)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed `args`, print a table, optionally write JSON."""
    from rich.console import Console
    from rich.table import Table

    out = Console()
    with out.status("generating the mix and timing the core and the Python baseline..."):
        result = run_core_bench(
            n_events=args.events,
            batch_size=args.batch_size,
            repeats=args.repeats,
            seed=args.seed,
            config_path=args.config,
            capacity_events=args.capacity_events,
        )
    m = result["machine"]
    mix = result["mix"]
    table = Table(
        title=f"millstream bench core: {result['events']} events, batches of "
        f"{mix['batch_size']}, median of {mix['repeats']}",
        caption=f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, load {m['load_avg_1m']}",
    )
    table.add_column("pipeline", no_wrap=True)
    table.add_column("threads", justify="right")
    table.add_column("ns/event", justify="right")
    table.add_column("events/s", justify="right")
    table.add_column("runs (ns/event)")
    table.add_column("vs python", justify="right")
    base_ns = result["results"][1]["ns_per_event"]
    for r in result["results"]:
        table.add_row(
            r["name"],
            str(r["threads"]),
            f"{r['ns_per_event']:,.0f}",
            f"{r['events_per_s']:,}",
            " ".join(f"{x:,.0f}" for x in r["runs"]),
            f"{base_ns / r['ns_per_event']:.2f}x",
        )
    out.print(table)
    out.print(
        f"mix: {mix['telemetry']} telemetry, {mix['odoo']} Odoo, {mix['duplicate']} duplicates, "
        f"{mix['stale']} stale, {mix['bad']} bad; mean {mix['bytes_mean']} bytes; "
        f"outcomes {mix['outcomes']}"
    )
    after = mix["dedup_after_mix"]
    line = f"dedup memory: {after['bytes_per_key']} B/key after the mix ({after['keys']} keys)"
    cap = mix["dedup_at_capacity"]
    if cap:
        line += f", {cap['bytes_per_key']} B/key at capacity ({cap['keys']} of {cap['capacity']})"
    out.print(line)
    core_ns = result["results"][0]["ns_per_event"]
    for what, ok, detail in (
        (
            f"core <= {TARGET_NS_PER_EVENT} ns/event",
            core_ns <= TARGET_NS_PER_EVENT,
            f"{core_ns:,.0f}",
        ),
        (
            f"core >= {TARGET_RATIO:g}x python",
            result["ratio_vs_python"] >= TARGET_RATIO,
            f"{result['ratio_vs_python']}x",
        ),
        (
            "dedup <= 64 B/key",
            result["dedup_bytes_per_key"] <= 64,
            f"{result['dedup_bytes_per_key']}",
        ),
    ):
        mark = "[green]met[/green]" if ok else "[red]missed[/red]"
        out.print(f"target {what}: {mark} ({detail})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m millstream.bench.core [options]`."""
    parser = argparse.ArgumentParser(prog="millstream bench core", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
