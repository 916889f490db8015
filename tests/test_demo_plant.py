"""The simulated plant makes what it says it makes: every event it labels fresh, duplicate,
out of order or bad gets that outcome from examples/manufacturing.yaml, so the demo's
"sent / seen" comparison is a real check of the router and not of the plant."""

from __future__ import annotations

from collections import Counter

import pytest

from millstream import Router
from millstream.demo.plant import ERP_BAD, TELEMETRY_BAD, Plant, PlantReport
from tests.conftest import EXAMPLES

STATUS_OF = {
    "fresh": "routed",
    "duplicate": "duplicate",
    "out_of_order": "stale",
    "bad": "dead_letter",
}


def test_every_event_gets_the_outcome_the_plant_labelled_it_with() -> None:
    plant = Plant(seed=11, duplicate_share=0.1, out_of_order_share=0.1, bad_share=0.1)
    router = Router.from_config(EXAMPLES / "manufacturing.yaml")
    report = PlantReport(duration_s=0, telemetry_rate=0, erp_rate=0)
    wrong = Counter()
    now = 1_795_767_300_000
    for i in range(12_000):
        now += 1
        ev = plant.erp(now) if i % 3 == 0 else plant.telemetry(now)
        report.record(ev)
        out = router.process_one(ev.subject, ev.payload, now_ms=now)
        if out.status != STATUS_OF[ev.kind] or out.reason != ev.reason:
            wrong[(ev.kind, ev.bad_kind, out.status, out.reason)] += 1
    assert not wrong
    # every kind of bad event occurred, on both streams
    kinds = {k for k in report.by_kind if ".bad." in k}
    assert kinds == {f"telemetry.bad.{k}" for k in TELEMETRY_BAD} | {
        f"odoo.bad.{k}" for k in ERP_BAD
    }
    assert report.out_of_order > 0
    assert set(report.by_model) == {
        "stock.move",
        "stock.quant",
        "mrp.production",
        "sale.order",
        "stock.picking",
        "quality.alert",
    }


@pytest.mark.parametrize("share", [0.0, 0.05, 0.2])
def test_shares_are_honoured(share: float) -> None:
    plant = Plant(seed=3, duplicate_share=share, out_of_order_share=share, bad_share=share)
    kinds = Counter(plant.erp(1_795_767_300_000 + i).kind for i in range(5_000))
    for kind in ("duplicate", "out_of_order", "bad"):
        assert kinds[kind] == pytest.approx(share * 5_000, abs=5_000 * 0.02)


def test_same_seed_same_events() -> None:
    a, b = Plant(seed=5), Plant(seed=5)
    now = 1_795_767_300_000
    assert [a.telemetry(now + i) for i in range(500)] == [b.telemetry(now + i) for i in range(500)]
    assert [a.erp(now + i) for i in range(200)] == [b.erp(now + i) for i in range(200)]


def test_twenty_machines_in_two_plants_with_mixed_units() -> None:
    plant = Plant()
    assert len(plant.machines) == 20
    assert {m.split("/")[0] for m in plant.machines} == {"dus", "ham"}
    assert {"dus/press-07", "ham/cnc-12"} <= set(plant.machines)
    units = {
        ev.payload.split(b'"unit":"')[1].split(b'"')[0]
        for ev in (plant.telemetry(1_795_767_300_000 + i) for i in range(3_000))
        if ev.kind == "fresh"
    }
    assert {b"degC", b"degF", b"K", b"bar", b"kPa", b"psi", b"rpm"} <= units


@pytest.mark.parametrize(
    "shares",
    [
        {"bad_share": -0.1},
        {"duplicate_share": 1.5},
        {"duplicate_share": 0.6, "out_of_order_share": 0.3, "bad_share": 0.2},
    ],
)
def test_impossible_shares_are_refused(shares: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Plant(**shares)
