"""The demo's live view of a running plane, and the table printed at the end.

Both read the dict `Plane.stats()` returns:

    {"events_in": int,
     "by_status": {"routed" | "duplicate" | "stale" | "dead_letter": int},
     "by_reason": {reason: int},
     "routes": {route: {"out", "duplicate", "stale", "dead_letter", "failed": int}},
     "lanes": {"critical" | "standard" | "bulk": {"depth", "capacity", "shed", "processed": int,
               "latency_bounds_ms": [float, ...],
               "latency_counts": [int, ...],   # per bound, not cumulative, then one +Inf bucket
               "latency_sum_ms": float}},
     "nats": {"connected": bool, "reconnects", "disconnects", "slow_consumer": int},
     "outputs": {"published", "acked", "failed", "naks", "dead_letters", "dead_letter_failed"},
     "inputs": {"received", "acked"}}

Counters are totals since the plane started; rates and latency percentiles in the live view
are over the last couple of seconds (differences between samples), so they follow the load
as it changes instead of averaging the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from millstream.demo.plant import PlantReport

Stats = Mapping[str, Any]
StatsFn = Callable[[], Stats]

LANES = ("critical", "standard", "bulk")
STATUSES = ("routed", "duplicate", "stale", "dead_letter")
LAG_WARN_S = 0.5


# --- the arithmetic ------------------------------------------------------------------------


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The `q` quantile (0..1) of a histogram, as Prometheus' `histogram_quantile` estimates
    it: linear interpolation inside the bucket the rank falls in, the first bucket starting at
    0. `counts` has one count per bound (not cumulative) plus a last +Inf bucket. None when the
    histogram is empty; `math.inf` when the rank falls in the +Inf bucket (the latency is over
    the last bound, by an unknown amount)."""
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(bounds)} bounds need {len(bounds) + 1} counts, not {len(counts)}")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], not {q}")
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0
    for i, c in enumerate(counts):
        if c > 0 and below + c >= rank:
            if i == len(bounds):
                return math.inf
            lower = bounds[i - 1] if i > 0 else 0.0
            upper = bounds[i]
            return lower + (upper - lower) * max(rank - below, 0.0) / c
        below += c
    return math.inf  # unreachable when counts are non-negative


def counter_delta(cur: float, prev: float) -> float:
    """How much a counter grew; a counter that went down was reset (the plane restarted), so
    it grew by its whole current value, as Prometheus' `rate` assumes."""
    return cur - prev if cur >= prev else cur


def counter_rate(cur: float, prev: float, dt_s: float) -> float | None:
    """Per-second growth of a counter between two samples `dt_s` apart; None without time."""
    if dt_s <= 0:
        return None
    return counter_delta(cur, prev) / dt_s


def counts_delta(cur: Sequence[int], prev: Sequence[int]) -> list[int]:
    """Bucket counts observed between two samples of a histogram. A bucket that went down, or
    a change of layout, means the histogram was reset: the current counts are all new."""
    if len(cur) != len(prev) or any(c < p for c, p in zip(cur, prev, strict=True)):
        return list(cur)
    return [c - p for c, p in zip(cur, prev, strict=True)]


# --- what one refresh shows ----------------------------------------------------------------


@dataclass(frozen=True)
class LaneFrame:
    name: str
    rate: float | None
    depth: int
    capacity: int
    shed: int
    processed: int
    p50_ms: float | None
    p99_ms: float | None
    last_bound_ms: float | None


@dataclass(frozen=True)
class Frame:
    elapsed_s: float
    events_in: int
    in_rate: float | None
    by_status: dict[str, int]
    top_reasons: list[tuple[str, int]]
    lanes: list[LaneFrame]
    outputs: dict[str, int]
    nats: dict[str, Any]


def _lane(stats: Stats, name: str) -> Mapping[str, Any]:
    lane: Mapping[str, Any] = stats.get("lanes", {}).get(name, {})
    return lane


def _int_dict(d: Mapping[str, Any] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (d or {}).items()}


@dataclass
class Window:
    """Samples of the stats over the last `window_s` seconds: rates and latency percentiles
    come from the difference between the newest sample and the oldest one kept."""

    window_s: float = 2.0
    _samples: deque[tuple[float, Stats]] = field(default_factory=deque)

    def add(self, t: float, stats: Stats) -> Frame:
        self._samples.append((t, stats))
        while len(self._samples) > 2 and self._samples[1][0] <= t - self.window_s:
            self._samples.popleft()
        t0, base = self._samples[0]
        first = len(self._samples) == 1
        dt = t - t0

        def rate(cur: float, prev: float) -> float | None:
            return None if first else counter_rate(cur, prev, dt)

        lanes = []
        for name in LANES:
            lane, prev = _lane(stats, name), _lane(base, name)
            bounds = [float(b) for b in lane.get("latency_bounds_ms", [])]
            counts = [int(c) for c in lane.get("latency_counts", [])]
            if not first:
                counts = counts_delta(counts, [int(c) for c in prev.get("latency_counts", [])])
            p50 = p99 = None
            if bounds and len(counts) == len(bounds) + 1:
                p50 = histogram_quantile(0.50, bounds, counts)
                p99 = histogram_quantile(0.99, bounds, counts)
            lanes.append(
                LaneFrame(
                    name=name,
                    rate=rate(lane.get("processed", 0), prev.get("processed", 0)),
                    depth=int(lane.get("depth", 0)),
                    capacity=int(lane.get("capacity", 0)),
                    shed=int(lane.get("shed", 0)),
                    processed=int(lane.get("processed", 0)),
                    p50_ms=p50,
                    p99_ms=p99,
                    last_bound_ms=bounds[-1] if bounds else None,
                )
            )
        reasons = sorted(_int_dict(stats.get("by_reason")).items(), key=lambda kv: (-kv[1], kv[0]))
        return Frame(
            elapsed_s=t,
            events_in=int(stats.get("events_in", 0)),
            in_rate=rate(stats.get("events_in", 0), base.get("events_in", 0)),
            by_status={s: int(stats.get("by_status", {}).get(s, 0)) for s in STATUSES},
            top_reasons=[kv for kv in reasons if kv[1] > 0],
            lanes=lanes,
            outputs=_int_dict(stats.get("outputs")),
            nats=dict(stats.get("nats", {})),
        )


# --- formatting ------------------------------------------------------------------------------


def fmt_rate(r: float | None) -> str:
    if r is None:
        return "-"
    if r >= 10_000:
        return f"{r / 1000:.0f}k/s"
    if r >= 1_000:
        return f"{r / 1000:.1f}k/s"
    return f"{r:.0f}/s"


def fmt_ms(ms: float | None, last_bound_ms: float | None = None) -> str:
    if ms is None:
        return "-"
    if math.isinf(ms):
        return f">{last_bound_ms:g} ms" if last_bound_ms is not None else "overflow"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 100:
        return f"{ms:.1f} ms"
    return f"{ms:.0f} ms"


def _nats_state(nats: Mapping[str, Any]) -> str:
    if not nats:
        return "nats ?"
    state = "connected" if nats.get("connected") else "DISCONNECTED"
    extra = [
        f"{k.replace('_', ' ')} {int(nats.get(k, 0))}"
        for k in ("reconnects", "slow_consumer")
        if nats.get(k)
    ]
    return "nats " + state + (f" ({', '.join(extra)})" if extra else "")


def _plant_line(plant: PlantReport) -> str:
    return (
        f"plant sent {plant.sent:,} ({fmt_rate(plant.rate('telemetry'))} telemetry, "
        f"{fmt_rate(plant.rate('erp'))} odoo): {plant.duplicates:,} duplicates, "
        f"{plant.out_of_order:,} out of order, {plant.bad:,} bad; "
        f"PubAcks {plant.acked:,} ok, {plant.ack_failed:,} failed"
    )


def render(frame: Frame, plant: PlantReport | None = None, *, title: str = "") -> RenderableType:
    """One refresh of the live view."""
    head = Text()
    head.append(f"{frame.elapsed_s:5.1f} s  ", style="bold")
    head.append(f"in {frame.events_in:,} ({fmt_rate(frame.in_rate)})  ")
    st = frame.by_status
    head.append(f"routed {st['routed']:,}  ", style="green")
    head.append(f"duplicate {st['duplicate']:,}  stale {st['stale']:,}  ")
    head.append(f"dead letter {st['dead_letter']:,}", style="red" if st["dead_letter"] else "")
    head.append(f"   {_nats_state(frame.nats)}", style="dim")

    lanes = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    lanes.add_column("lane")
    for col in ("events/s", "queue", "shed", "p50", "p99"):
        lanes.add_column(col, justify="right")
    for lane in frame.lanes:
        queue = f"{lane.depth:,}/{lane.capacity:,}" if lane.capacity else f"{lane.depth:,}"
        lanes.add_row(
            lane.name,
            fmt_rate(lane.rate),
            queue,
            f"{lane.shed:,}",
            fmt_ms(lane.p50_ms, lane.last_bound_ms),
            fmt_ms(lane.p99_ms, lane.last_bound_ms),
            style="yellow" if lane.shed else None,
        )

    lines: list[RenderableType] = [head, lanes]
    if frame.top_reasons:
        reasons = ", ".join(f"{r} {n:,}" for r, n in frame.top_reasons[:4])
        more = len(frame.top_reasons) - 4
        lines.append(Text(f"dead letters: {reasons}" + (f", +{more} more" if more > 0 else "")))
    o = frame.outputs
    lines.append(
        Text(
            f"outputs: published {o.get('published', 0):,}  acked {o.get('acked', 0):,}  "
            f"failed {o.get('failed', 0):,}  naks {o.get('naks', 0):,}  "
            f"dead letters written {o.get('dead_letters', 0):,}"
            + (f" ({o['dead_letter_failed']:,} failed)" if o.get("dead_letter_failed") else ""),
            style="red" if o.get("failed") or o.get("dead_letter_failed") else "",
        )
    )
    if plant is not None:
        lines.append(Text(_plant_line(plant), style="dim"))
    return Panel(Group(*lines), title=title or None, title_align="left", expand=False)


def plain_line(frame: Frame, plant: PlantReport | None = None) -> str:
    """One line for logs (not a terminal): the same figures as the live view."""
    st = frame.by_status
    parts = [
        f"t={frame.elapsed_s:.1f}s in={frame.events_in} ({fmt_rate(frame.in_rate)})",
        f"routed={st['routed']} duplicate={st['duplicate']} stale={st['stale']} "
        f"dead_letter={st['dead_letter']}",
    ]
    for lane in frame.lanes:
        parts.append(
            f"{lane.name} {fmt_rate(lane.rate)} q={lane.depth} "
            f"p99={fmt_ms(lane.p99_ms, lane.last_bound_ms)}"
            + (f" shed={lane.shed}" if lane.shed else "")
        )
    o = frame.outputs
    parts.append(f"out acked={o.get('acked', 0)} failed={o.get('failed', 0)}")
    if frame.top_reasons:
        parts.append("dlq " + ",".join(f"{r}={n}" for r, n in frame.top_reasons[:3]))
    parts.append(_nats_state(frame.nats))
    if plant is not None:
        parts.append(f"plant sent={plant.sent} acked={plant.acked}")
    return " | ".join(parts)


# --- the live view --------------------------------------------------------------------------


class LiveView:
    """Samples `stats()` about four times a second and shows it: a rich `Live` panel on a
    terminal, else (CI, a pipe) a plain line every `plain_every_s`.

        view = LiveView(plane.stats)
        task = asyncio.create_task(view.run(stop))
        report = await simulate(nc, js, duration_s=30, progress=view.plant_progress)
        stop.set(); await task
    """

    def __init__(
        self,
        stats: StatsFn,
        *,
        console: Console | None = None,
        refresh_s: float = 0.25,
        plain_every_s: float = 2.0,
        window_s: float = 2.0,
        title: str = "millstream demo",
    ) -> None:
        self._stats = stats
        self.console = console or Console()
        self.refresh_s = refresh_s
        self.plain_every_s = plain_every_s
        self.title = title
        self._window = Window(window_s)
        self._plant: PlantReport | None = None
        self._t0 = time.monotonic()
        self.frame: Frame | None = None
        """The latest frame shown."""
        self.error: str | None = None
        """The last error `stats()` raised, if any (the view keeps going)."""

    def plant_progress(self, report: PlantReport) -> None:
        """Pass as `simulate(progress=...)` to show what the plant has sent."""
        self._plant = report

    def sample(self) -> Frame | None:
        try:
            stats = self._stats()
        # stats() belongs to the plane; a failure there (plane stopping, reloading) must not
        # take the demo down with it, so show it and keep the last frame
        except Exception as e:
            self.error = f"stats() failed: {type(e).__name__}: {e}"
            return self.frame
        self.error = None
        self.frame = self._window.add(time.monotonic() - self._t0, stats)
        return self.frame

    def renderable(self) -> RenderableType:
        if self.frame is None:
            return Text(self.error or "waiting for the first stats ...")
        body = render(self.frame, self._plant, title=self.title)
        return Group(body, Text(self.error, style="red")) if self.error else body

    async def run(self, stop: asyncio.Event) -> None:
        """Show the stats until `stop` is set, then once more so the last figures stay."""
        self._t0 = time.monotonic()
        if not self.console.is_terminal:
            await self._run_plain(stop)
            return
        with Live(
            self.renderable(), console=self.console, auto_refresh=False, transient=False
        ) as live:
            while True:
                self.sample()
                live.update(self.renderable(), refresh=True)
                if stop.is_set():
                    break
                await _wait(stop, self.refresh_s)

    async def _run_plain(self, stop: asyncio.Event) -> None:
        self.sample()  # a baseline, so the first line already has rates
        while True:
            await _wait(stop, self.plain_every_s)
            frame = self.sample()
            if frame is not None:
                self.console.print(
                    plain_line(frame, self._plant), markup=False, highlight=False, soft_wrap=True
                )
            if self.error:
                self.console.print(self.error, markup=False, highlight=False)
            if stop.is_set():
                return


async def _wait(stop: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=timeout)


# --- the end of the run -------------------------------------------------------------------


def _diff_cell(sent: int, seen: int) -> Text:
    if sent == seen:
        return Text("✓", style="green")
    return Text(f"Δ {seen - sent:+,}", style="yellow")


def summary_table(stats: Stats, report: PlantReport | None, elapsed_s: float) -> Table:
    """What each route did, and what the plant sent against what the router saw.

    A route's `in` is every event that matched it: out + duplicate + stale + dead letter
    (`failed` counts outputs that were not acknowledged). Events dead-lettered before
    routing (malformed, schema, mapping) belong to no route, so the routes' dead letters add
    up to fewer than the router's."""
    routes = Table(
        title="routes", box=box.SIMPLE_HEAD, title_justify="left", show_footer=True, pad_edge=False
    )
    cols = ("in", "out", "duplicate", "stale", "dead\nletter", "failed")
    keys = ("in", "out", "duplicate", "stale", "dead_letter", "failed")
    totals = dict.fromkeys(keys, 0)
    rows = []
    for name, r in stats.get("routes", {}).items():
        row = {k: int(r.get(k, 0)) for k in keys if k != "in"}
        row["in"] = row["out"] + row["duplicate"] + row["stale"] + row["dead_letter"]
        for k in keys:
            totals[k] += row[k]
        rows.append((str(name), row))
    # Route names and counts must never be cut to "…", even piped (80 columns): a two-line
    # header and no edge padding fit the example config; bigger counts fold onto two lines.
    routes.add_column("route", footer="total", no_wrap=True)
    for col, k in zip(cols, keys, strict=True):
        routes.add_column(col, justify="right", footer=f"{totals[k]:,}", overflow="fold")
    for name, row in rows:
        routes.add_row(name, *(f"{row[k]:,}" for k in keys))

    st = _int_dict(stats.get("by_status"))
    events_in = int(stats.get("events_in", 0))
    compare = Table(
        title="plant sent / router saw" if report is not None else "router",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    compare.add_column("")
    compare.add_column("sent", justify="right")
    compare.add_column("seen", justify="right")
    compare.add_column("", justify="left")

    def compare_row(label: str, sent: int | None, seen: int) -> None:
        if report is None or sent is None:
            compare.add_row(label, "", f"{seen:,}", "")
        else:
            compare.add_row(label, f"{sent:,}", f"{seen:,}", _diff_cell(sent, seen))

    rp = report
    compare_row("events", rp.sent if rp else None, events_in)
    compare_row("new -> routed", rp.fresh if rp else None, st.get("routed", 0))
    compare_row("duplicates -> dropped", rp.duplicates if rp else None, st.get("duplicate", 0))
    compare_row("out of order -> stale", rp.out_of_order if rp else None, st.get("stale", 0))
    compare_row("bad -> dead letter", rp.bad if rp else None, st.get("dead_letter", 0))
    seen_reasons = _int_dict(stats.get("by_reason"))
    expected = dict(rp.expected_reasons) if rp else {}
    reasons = sorted(set(seen_reasons) | set(expected), key=lambda r: (-seen_reasons.get(r, 0), r))
    if reasons:
        compare.add_section()
        for reason in reasons:
            compare_row(
                f"  {reason}", expected.get(reason, 0) if rp else None, seen_reasons.get(reason, 0)
            )

    compare.add_section()
    in_rate = events_in / elapsed_s if elapsed_s > 0 else 0.0
    if rp is not None:
        compare.add_row(
            "events/s",
            f"{rp.rate('all'):,.0f}",
            f"{in_rate:,.0f}",
            Text(
                f"offered {rp.telemetry_rate:,.0f} telemetry + {rp.erp_rate:,.0f} odoo; "
                f"seen = average over all {elapsed_s:.1f} s",
                style="dim",
            ),
        )
        compare.add_row(
            "odoo PubAcks",
            f"{rp.erp:,}",
            f"{rp.acked:,}",
            Text(f"{rp.ack_failed:,} failed", style="red") if rp.ack_failed else "",
        )
    else:
        compare.add_row("events/s", "", f"{in_rate:,.0f}", "")
    grid = Table.grid(padding=(1, 0))
    grid.add_column()
    grid.add_row(routes)
    grid.add_row(compare)
    lag = max(rp.telemetry_lag_s, rp.erp_lag_s) if rp is not None else 0.0
    if lag > LAG_WARN_S:
        grid.add_row(
            Text(
                f"the plant fell up to {lag:.1f} s behind its schedule: the offered rate is "
                "more than it can publish here, so the router saw less load than asked for",
                style="yellow",
            )
        )
    o = _int_dict(stats.get("outputs"))
    problems = o.get("failed", 0) or o.get("dead_letter_failed", 0)
    grid.add_row(
        Text(
            f"outputs: published {o.get('published', 0):,}, acked {o.get('acked', 0):,}, "
            f"failed {o.get('failed', 0):,}, naks {o.get('naks', 0):,}; dead letters written "
            f"{o.get('dead_letters', 0):,}, failed to write {o.get('dead_letter_failed', 0):,}",
            style="red" if problems else "",
        )
    )
    grid.add_row(
        Text(
            f"over {elapsed_s:.1f} s. A route's `in` = out + duplicate + stale + dead letter; "
            "events dead-lettered before routing (malformed, schema, mapping) belong to no route.",
            style="dim",
        )
    )
    return grid
