"""The demo view's arithmetic (percentiles from histogram buckets, rates from counter
samples) and the end-of-run summary, on hand-made stats dicts."""

from __future__ import annotations

import asyncio
import io
import math
from collections import Counter
from typing import Any

import pytest
from rich.console import Console

from millstream.demo.plant import PlantReport
from millstream.demo.view import (
    LiveView,
    Window,
    counter_rate,
    counts_delta,
    fmt_ms,
    histogram_quantile,
    plain_line,
    summary_table,
)

BOUNDS = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


@pytest.mark.parametrize(
    ("q", "counts", "expected"),
    [
        # nothing observed: no estimate rather than 0 ms
        (0.5, [0, 0, 0, 0, 0, 0, 0, 0], None),
        # all in the first bucket: interpolated from 0
        (0.5, [10, 0, 0, 0, 0, 0, 0, 0], 0.05),
        (0.99, [100, 0, 0, 0, 0, 0, 0, 0], 0.099),
        # rank 50 of 100 is the 30th of 80 in (0.1, 0.25]: 0.1 + 0.15 * 30 / 80
        (0.5, [20, 80, 0, 0, 0, 0, 0, 0], 0.15625),
        # empty buckets in between are skipped, not interpolated into
        (0.99, [50, 0, 0, 0, 0, 0, 50, 0], 9.9),
        # rank exactly on a bucket's upper edge
        (0.5, [50, 50, 0, 0, 0, 0, 0, 0], 0.1),
        # the rank falls in +Inf: over the last bound, by an unknown amount
        (0.99, [90, 0, 0, 0, 0, 0, 0, 10], math.inf),
        (0.9, [90, 0, 0, 0, 0, 0, 0, 10], 0.1),
        (1.0, [0, 0, 0, 4, 0, 0, 0, 0], 1.0),
    ],
)
def test_histogram_quantile(q: float, counts: list[int], expected: float | None) -> None:
    got = histogram_quantile(q, BOUNDS, counts)
    if expected is None or math.isinf(expected):
        assert got == expected
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("q", "counts", "error"),
    [
        (0.5, [1, 2, 3], "7 bounds need 8 counts, not 3"),  # no +Inf bucket
        (1.5, [0] * 8, "quantile must be within"),
    ],
)
def test_histogram_quantile_rejects(q: float, counts: list[int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        histogram_quantile(q, BOUNDS, counts)


@pytest.mark.parametrize(
    ("cur", "prev", "dt", "expected"),
    [
        (3000, 1000, 2.0, 1000.0),
        (1000, 1000, 0.25, 0.0),
        (50, 1000, 1.0, 50.0),  # the plane restarted: the counter began again at 0
        (10, 0, 0.0, None),  # no time between the samples
    ],
)
def test_counter_rate(cur: int, prev: int, dt: float, expected: float | None) -> None:
    assert counter_rate(cur, prev, dt) == expected


@pytest.mark.parametrize(
    ("cur", "prev", "expected"),
    [
        ([5, 7, 1], [2, 7, 0], [3, 0, 1]),
        ([1, 0, 0], [4, 0, 0], [1, 0, 0]),  # reset
        ([1, 2, 3, 4], [1, 2, 3], [1, 2, 3, 4]),  # other layout (a reload changed the bounds)
    ],
)
def test_counts_delta(cur: list[int], prev: list[int], expected: list[int]) -> None:
    assert counts_delta(cur, prev) == expected


def lane(processed: int, counts: list[int], depth: int = 0, shed: int = 0) -> dict[str, Any]:
    return {
        "depth": depth,
        "capacity": 1024,
        "shed": shed,
        "processed": processed,
        "latency_bounds_ms": BOUNDS,
        "latency_counts": counts,
        "latency_sum_ms": 0.0,
    }


def stats(
    events_in: int = 0,
    *,
    bulk: dict[str, Any] | None = None,
    routes: dict[str, dict[str, int]] | None = None,
    by_status: dict[str, int] | None = None,
    by_reason: dict[str, int] | None = None,
    outputs: dict[str, int] | None = None,
) -> dict[str, Any]:
    empty = lane(0, [0] * 8)
    return {
        "events_in": events_in,
        "by_status": by_status or {"routed": 0, "duplicate": 0, "stale": 0, "dead_letter": 0},
        "by_reason": by_reason or {},
        "routes": routes or {},
        "lanes": {"critical": empty, "standard": empty, "bulk": bulk or empty},
        "nats": {"connected": True, "reconnects": 0, "disconnects": 0, "slow_consumer": 0},
        "outputs": outputs
        or {
            "published": 0,
            "acked": 0,
            "failed": 0,
            "naks": 0,
            "dead_letters": 0,
            "dead_letter_failed": 0,
        },
        "inputs": {"received": events_in, "acked": 0},
    }


def test_window_rates_come_from_deltas_and_percentiles_from_recent_buckets() -> None:
    w = Window(window_s=2.0)
    first = w.add(0.0, stats(1000, bulk=lane(900, [0, 0, 0, 0, 0, 0, 0, 100])))
    # one sample: no rate yet; the percentile is what the histogram holds so far
    assert first.in_rate is None
    assert first.lanes[2].rate is None
    assert first.lanes[2].p99_ms == math.inf

    # 1 s later: 2000 more events in, 1000 more through bulk, all fast
    f = w.add(1.0, stats(3000, bulk=lane(1900, [1000, 0, 0, 0, 0, 0, 0, 100])))
    assert f.in_rate == pytest.approx(2000.0)
    assert f.lanes[2].rate == pytest.approx(1000.0)
    # the slow 100 were before the window: recent p99 is fast, not > 10 ms
    assert f.lanes[2].p99_ms == pytest.approx(0.099)
    assert f.lanes[0].p99_ms is None  # critical saw nothing
    assert f.lanes[2].name == "bulk"

    # samples older than the window stop counting: 3 s on, rate is over the last 2 s only
    w.add(2.0, stats(5000, bulk=lane(2900, [2000, 0, 0, 0, 0, 0, 0, 100])))
    f = w.add(3.0, stats(5000, bulk=lane(2900, [2000, 0, 0, 0, 0, 0, 0, 100])))
    assert f.in_rate == pytest.approx(1000.0)  # (5000 - 3000) / 2 s


def test_fmt_ms_names_the_overflow_bound() -> None:
    assert fmt_ms(math.inf, 10.0) == ">10 ms"
    assert fmt_ms(0.25) == "250 µs"
    assert fmt_ms(None) == "-"


ROUTE_STATS = stats(
    10_480,
    routes={
        "telemetry-history": {
            "out": 9_512,
            "duplicate": 473,
            "stale": 0,
            "dead_letter": 31,
            "failed": 0,
        },
        "inventory-movements": {
            "out": 187,
            "duplicate": 11,
            "stale": 6,
            "dead_letter": 0,
            "failed": 3,
        },
    },
    by_status={"routed": 9_830, "duplicate": 484, "stale": 6, "dead_letter": 160},
    by_reason={"malformed_json": 71, "subject_rejected": 58, "unknown_unit": 31},
    outputs={
        "published": 9_699,
        "acked": 9_696,
        "failed": 3,
        "naks": 0,
        "dead_letters": 160,
        "dead_letter_failed": 0,
    },
)


def report() -> PlantReport:
    return PlantReport(
        duration_s=5.0,
        telemetry_rate=2000.0,
        erp_rate=50.0,
        elapsed_s=5.0,
        sent=10_480,
        telemetry=10_230,
        erp=250,
        fresh=9_830,
        duplicates=484,
        out_of_order=7,
        bad=159,
        acked=249,
        ack_failed=1,
        expected_reasons=Counter(
            {"malformed_json": 71, "subject_rejected": 58, "unknown_unit": 30}
        ),
    )


def rendered(renderable: Any) -> str:
    console = Console(record=True, width=160, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_summary_table_per_route_and_sent_against_seen() -> None:
    text = rendered(summary_table(ROUTE_STATS, report(), 5.0))
    lines = text.splitlines()

    # in = out + duplicate + stale + dead letter
    telemetry = next(line for line in lines if "telemetry-history" in line).split()
    assert telemetry[1:] == ["10,016", "9,512", "473", "0", "31", "0"]
    movements = next(line for line in lines if "inventory-movements" in line).split()
    assert movements[1:] == ["204", "187", "11", "6", "0", "3"]
    total = next(line for line in lines if line.split()[:1] == ["total"]).split()
    assert total[1:] == ["10,220", "9,699", "484", "6", "31", "3"]

    def cells(label: str) -> list[str]:
        line = next(line for line in lines if line.strip().startswith(label))
        return line[len(line) - len(line.lstrip()) + len(label) :].split()

    assert cells("events") == ["10,480", "10,480", "✓"]
    assert cells("duplicates -> dropped") == ["484", "484", "✓"]
    assert cells("out of order -> stale") == ["7", "6", "Δ", "-1"]
    assert cells("bad -> dead letter") == ["159", "160", "Δ", "+1"]
    assert cells("unknown_unit") == ["30", "31", "Δ", "+1"]
    assert cells("malformed_json") == ["71", "71", "✓"]
    assert cells("odoo PubAcks")[:2] == ["250", "249"]
    assert "1 failed" in text
    assert "dead letters written 160" in text
    assert "acked 9,696" in text


def test_summary_table_says_when_the_plant_could_not_keep_up() -> None:
    assert "behind its schedule" not in rendered(summary_table(ROUTE_STATS, report(), 5.0))
    slow = report()
    slow.telemetry_lag_s = 2.4
    assert "fell up to 2.4 s behind its schedule" in rendered(summary_table(ROUTE_STATS, slow, 5.0))


def test_summary_table_without_a_plant_report() -> None:
    text = rendered(summary_table(ROUTE_STATS, None, 2.0))
    assert "router" in text
    assert "5,240" in text  # events/s = 10,480 / 2 s
    assert "Δ" not in text


def test_plain_line_carries_the_figures() -> None:
    w = Window()
    w.add(0.0, stats(0))
    frame = w.add(2.0, ROUTE_STATS)
    line = plain_line(frame, report())
    assert "in=10480 (5.2k/s)" in line
    assert "dead_letter=160" in line
    assert "dlq malformed_json=71,subject_rejected=58,unknown_unit=31" in line
    assert "plant sent=10480" in line


async def test_live_view_prints_plain_lines_off_a_terminal_and_survives_stats_errors() -> None:
    out = io.StringIO()
    calls = 0

    def flaky() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("plane is reloading")
        return stats(calls * 100)

    view = LiveView(flaky, console=Console(file=out, width=300), plain_every_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(view.run(stop))
    await asyncio.sleep(0.15)
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    text = out.getvalue()
    assert "stats() failed: RuntimeError: plane is reloading" in text
    assert text.count("t=") >= 3
    assert view.frame is not None and view.frame.events_in == calls * 100
