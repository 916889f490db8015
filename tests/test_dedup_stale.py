"""Dedup windows and capacity, the stale-update guard — with injected time, no sleeping."""

from __future__ import annotations

import json
from collections.abc import Callable

from millstream import Router

from .conftest import mini_config

T0 = 1_795_000_000_000


def telemetry(machine: str = "m1", ts: int = T0, value: float = 20.5) -> tuple[str, bytes]:
    body = {
        "machine": machine,
        "plant": "p1",
        "metric": "temp",
        "value": value,
        "unit": "degC",
        "ts": ts,
    }
    return "mes.line1.telemetry", json.dumps(body).encode()


def hold(write_date: str, stage: int = 1, priority: str = "1", _id: int = 7) -> tuple[str, bytes]:
    body = {
        "_id": _id,
        "_model": "quality.alert",
        "name": f"QA/{_id}",
        "priority": priority,
        "stage_id": stage,
        "write_date": write_date,
    }
    return "odoo.quality_alert", json.dumps(body, sort_keys=True).encode()


def test_duplicate_within_window_then_new_after(router: Router) -> None:
    ev = telemetry()
    assert router.process([ev], now_ms=T0)[0].status == "routed"
    dup = router.process([ev], now_ms=T0 + 9_990)[0]
    assert dup.status == "duplicate"
    assert dup.skipped[0][:2] == ("telemetry", "duplicate")
    assert router.process([ev], now_ms=T0 + 10_000)[0].status == "routed"


def test_duplicates_inside_one_batch(router: Router) -> None:
    a, b = telemetry("m1"), telemetry("m2")
    assert router.process([a, b, a, a, b], now_ms=T0).statuses() == [
        "routed",
        "routed",
        "duplicate",
        "duplicate",
        "duplicate",
    ]


def test_dedup_id_is_stable_across_routers(make_router: Callable[..., Router]) -> None:
    ev = telemetry()
    ids = {make_router().process([ev])[0].dedup_id for _ in range(3)}
    assert len(ids) == 1
    assert len(ids.pop() or "") == 32


def test_capacity_bounds_memory_and_forgets_oldest(make_router: Callable[..., Router]) -> None:
    r = make_router(
        mini_config().replace("window: 10s, capacity: 1000", "window: 1h, capacity: 100")
    )
    events = [telemetry(ts=T0 + i) for i in range(1_000)]
    assert r.process(events, now_ms=T0).counts()["routed"] == 1_000
    mem = {m["route"]: m for m in r.memory()}["telemetry"]
    assert 0 < mem["dedup_keys"] <= 100
    assert mem["dedup_bytes"] / mem["dedup_keys"] <= 64 or mem["dedup_keys"] < 64
    # the newest keys are remembered, the oldest were evicted
    assert r.process([events[-1]], now_ms=T0 + 1)[0].status == "duplicate"
    assert r.process([events[0]], now_ms=T0 + 1)[0].status == "routed"


def test_stale_update_is_dropped_and_newer_passes(router: Router) -> None:
    newer = hold("2026-11-27 08:15:05", stage=4)
    older = hold("2026-11-27 08:15:02", stage=1)
    assert router.process([newer])[0].destinations == ["quality.hold.closed"]
    out = router.process([older])[0]
    # the older write arrived late: it must not reopen the hold
    assert out.status == "stale"
    assert out.destinations == []
    assert router.process([hold("2026-11-27 08:16:00", stage=1)])[0].status == "routed"


def test_stale_guard_is_per_entity(router: Router) -> None:
    assert router.process([hold("2026-11-27 09:00:00", _id=1)])[0].status == "routed"
    assert router.process([hold("2026-11-27 08:00:00", _id=2)])[0].status == "routed"


def test_stale_on_one_route_does_not_block_another(router: Router) -> None:
    # `urgent` has no stale guard: a late but urgent update still raises the alert, while the
    # `holds` route (with the guard) drops it.
    router.process([hold("2026-11-27 08:15:05", stage=1, priority="1")])
    out = router.process([hold("2026-11-27 08:15:02", stage=1, priority="3")])[0]
    assert out.status == "routed"
    assert out.routes == ["urgent"]
    assert out.skipped[0][:2] == ("holds", "stale")


def test_rejected_event_leaves_no_dedup_trace(router: Router) -> None:
    # Fan-out: `holds` would accept this event but `urgent`... all routes are decided before
    # any state changes, so a dead letter never makes its corrected replay look duplicate.
    bad = telemetry(machine="m.1")
    assert router.process([bad])[0].reason == "subject_rejected"
    assert router.memory()[0]["dedup_keys"] == 0


def test_outcomes_do_not_depend_on_thread_count() -> None:
    from millstream import parse_config

    from .conftest import MINI

    events = [telemetry(f"m{i % 50}", ts=T0 + i // 3) for i in range(2_000)]
    events += [
        hold(f"2026-11-27 08:{i % 60:02d}:00", stage=1 + 3 * (i % 2), _id=i % 7) for i in range(500)
    ]
    results = []
    for threads in (1, 2, 4):
        r = Router(parse_config(MINI), clock=lambda: T0, threads=threads)
        assert r.threads == threads
        out = r.process(events)
        results.append([(o.status, o.destinations, o.data, o.reason) for o in out])
    assert results[0] == results[1] == results[2]
    statuses = {s for s, *_ in results[0]}
    assert {"routed", "duplicate", "stale"} <= statuses
