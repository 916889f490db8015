"""`simulate` against a real nats-server: what arrives is what the report says was sent, at
roughly the rate asked for, and the Odoo bodies are all in JetStream."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from millstream.demo.plant import PlantError, PlantReport, simulate

pytestmark = pytest.mark.integration


def is_json(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except ValueError:
        return False
    return True


async def odoo_in(nc: NATS) -> None:
    await nc.jetstream().add_stream(name="ODOO_IN", subjects=["odoo.>"])


async def test_what_arrives_matches_the_report(nc: NATS) -> None:
    await odoo_in(nc)
    js = nc.jetstream()
    seen: list[tuple[str, bytes]] = []

    async def collect(msg: Msg) -> None:
        if msg.subject.startswith(("mes.", "odoo.")):
            seen.append((msg.subject, msg.data))

    watcher = await nc.subscribe(">", cb=collect)
    await nc.flush()
    progress: list[int] = []

    report = await simulate(
        nc,
        js,
        duration_s=2.0,
        telemetry_rate=2000.0,
        erp_rate=400.0,
        duplicate_share=0.08,
        out_of_order_share=0.05,
        bad_share=0.03,
        progress=lambda r: progress.append(r.sent),
    )
    await nc.flush()
    for _ in range(100):
        if len(seen) >= report.sent:
            break
        await asyncio.sleep(0.05)
    await watcher.unsubscribe()

    # everything the report counts arrived, nothing more
    assert len(seen) == report.sent == report.telemetry + report.erp
    assert report.sent == report.fresh + report.duplicates + report.out_of_order + report.bad
    telemetry = [(s, p) for s, p in seen if s.startswith("mes.")]
    odoo = [(s, p) for s, p in seen if s.startswith("odoo.")]
    assert len(telemetry) == report.telemetry
    assert Counter(s.removeprefix("odoo.") for s, _ in odoo) == {
        m.replace(".", "_"): n for m, n in report.by_model.items()
    }
    assert {s.split(".")[1] for s, _ in telemetry} == {"dus", "ham"}
    assert all(s.endswith(".telemetry") and s.count(".") == 3 for s, _ in telemetry)

    # JetStream stored (and acknowledged) every Odoo body
    info = await js.stream_info("ODOO_IN")
    assert info.state.messages == report.erp == report.acked
    assert report.ack_failed == 0 and not report.errors

    # duplicates are byte-for-byte repeats; no fresh event repeats another (bad ones may: a
    # proxy's 502 page is always the same)
    for stream, msgs in (("telemetry", telemetry), ("odoo", odoo)):
        counts = Counter(m for m in msgs if is_json(m[1]))
        repeats = sum(n - 1 for n in counts.values())
        assert repeats == report.by_kind[f"{stream}.duplicate"] > 0

    # out of order: an older write_date of a record after a newer one
    newest: dict[tuple[str, int], str] = {}
    older = 0
    malformed = 0
    for _, payload in seen:
        try:
            body: Any = json.loads(payload)
        except ValueError:
            malformed += 1
            continue
        if not isinstance(body, dict) or "_model" not in body or "write_date" not in body:
            continue
        key = (body["_model"], body["_id"])
        if key in newest and body["write_date"] < newest[key]:
            older += 1
        else:
            newest[key] = body["write_date"]
    assert older == report.out_of_order > 0
    assert malformed == (
        report.by_kind["telemetry.bad.malformed_json"] + report.by_kind["odoo.bad.malformed_json"]
    )
    assert report.bad == sum(report.expected_reasons.values()) > 0

    # open loop at the asked rate: loose bounds, the machine is shared and noisy
    assert report.elapsed_s == pytest.approx(2.0, rel=0.5)
    assert report.telemetry == pytest.approx(4000, rel=0.5)
    assert report.erp == pytest.approx(800, rel=0.5)
    assert report.rate("telemetry") == pytest.approx(2000, rel=0.5)
    assert len(progress) >= 4 and progress == sorted(progress)


async def test_stop_ends_the_run_early(nc: NATS) -> None:
    await odoo_in(nc)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    # erp_rate 0.1: the next Odoo event is 10 s away when stop is set
    report: PlantReport = await asyncio.wait_for(
        simulate(
            nc, nc.jetstream(), duration_s=30.0, telemetry_rate=1000.0, erp_rate=0.1, stop=stop
        ),
        5,
    )
    assert 0 < report.telemetry < 1000
    assert report.elapsed_s < 2.0
    assert report.erp == report.acked == 1


async def test_odoo_subjects_without_a_stream_are_refused_up_front(nc: NATS) -> None:
    with pytest.raises(PlantError, match=r"no JetStream stream captures odoo\.stock_move"):
        await simulate(nc, nc.jetstream(), duration_s=1.0)
    # telemetry alone needs no stream
    report = await simulate(nc, nc.jetstream(), duration_s=0.2, erp_rate=0.0)
    assert report.erp == 0 and report.telemetry > 0
