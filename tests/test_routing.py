"""Routing: subject wildcards, type filters, CEL predicates, fan-out, destination templates."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from millstream import PlanError, Router, parse_config

from .conftest import MINI, mini_config
from .test_dedup_stale import hold, telemetry


def test_destination_rendered_from_canonical_fields(router: Router) -> None:
    out = router.process([telemetry("press-07")])[0]
    assert out.destinations == ["plant.p1.press-07"]
    assert out.lane == "bulk"
    assert out.deliveries[0].delivery == "best_effort"


@pytest.mark.parametrize(
    ("stage", "priority", "routes"),
    [
        (1, "3", ["holds", "urgent"]),  # open and urgent: fan-out
        (1, "2", ["holds", "urgent"]),
        (1, "1", ["holds"]),
        (4, "3", ["holds"]),  # closed: the predicate says no
    ],
)
def test_predicate_fan_out(router: Router, stage: int, priority: str, routes: list[str]) -> None:
    out = router.process([hold("2026-11-27 08:15:02", stage=stage, priority=priority)])[0]
    assert out.status == "routed"
    assert out.routes == routes
    assert out.lane == "critical"


def test_no_route_is_a_dead_letter(make_router: Callable[..., Router]) -> None:
    text = MINI.replace('match: {subjects: ["mes.>"]}', 'match: {subjects: ["mes.nowhere.>"]}')
    out = make_router(text).process([telemetry()])[0]
    assert out.reason == "no_route"


def test_predicate_runtime_error_is_a_dead_letter(make_router: Callable[..., Router]) -> None:
    text = MINI.replace("priority >= 2 && status == 'open'", "priority / 0 > 1")
    out = make_router(text).process([hold("2026-11-27 08:15:02")])[0]
    assert out.reason == "predicate_error"
    assert out.route == "urgent"


def test_predicate_that_does_not_compile_is_refused_at_load() -> None:
    with pytest.raises(PlanError, match="route urgent: predicate does not compile"):
        Router(parse_config(MINI.replace("priority >= 2 && status == 'open'", "priority >>> 2")))


def test_cloudevents_attributes(router: Router) -> None:
    out = router.process([telemetry(ts=1_795_000_000_123)])[0]
    assert out.attributes == {
        "specversion": "1.0",
        "id": "m1-temp-2026-11-18T11:06:40.123Z",
        "source": "/millstream/sources/mes",
        "type": "com.millstream.machine_telemetry.v1",
        "datacontenttype": "application/json",
        "dataschema": "urn:millstream:schema:machine_telemetry:v1",
        "time": "2026-11-18T11:06:40.123Z",
    }


def test_unit_conversion_and_canonical_unit(router: Router) -> None:
    body = json.loads(telemetry()[1])
    body.update(value=212, unit="degF")
    out = router.process([("mes.l.telemetry", json.dumps(body).encode())])[0]
    data = json.loads(out.data)
    assert data["value"] == pytest.approx(100.0)
    assert data["unit"] == "degC"


def test_first_matching_source_reads_the_subject(make_router: Callable[..., Router]) -> None:
    extra = (
        mini_config()
        .replace('subjects: ["mes.*.telemetry"]', 'subjects: ["mes.*.telemetry", "plc.>"]')
        .replace('match: {subjects: ["mes.>"]}', 'match: {subjects: ["mes.>", "plc.>"]}')
    )
    out = make_router(extra).process([("plc.a.b", telemetry()[1])])[0]
    assert out.source == "mes"
    assert out.status == "routed"


def test_one_route_reads_each_mapping_by_its_own_fields(
    make_router: Callable[..., Router],
) -> None:
    """A route that takes events of two mappings renders each from that mapping's own
    entity: the gateway's mapping has two fields more, so every field the route reads sits
    at a different place in its entities (the core settles those places when the plan is
    compiled), and `ce.*` comes from each event's own attributes."""
    gateway = (
        "  gateway:\n"
        "    canonical: machine_telemetry\n"
        '    id: "gw-{machine_id}-{metric}-{observed_at}"\n'
        "    fields:\n"
        "      line: {const: L9}\n"
        "      quality: {const: good}\n"
        "      machine_id: machine\n"
        "      plant: plant\n"
        "      metric: metric\n"
        "      value: {path: value, type: number, convert: {table: temp, from_path: unit}}\n"
        "      unit: {path: unit, unit_name: temp}\n"
        "      observed_at: {path: ts, type: timestamp}\n"
    )
    text = MINI.replace(
        "sources:\n",
        gateway + "sources:\n  - name: gw\n"
        '    subjects: ["gw.*.telemetry"]\n    mapping: gateway\n',
    )
    text += (
        "  - name: by-plant\n"
        '    match: {subjects: [">"], types: [machine_telemetry]}\n'
        '    to: "site.{plant}.{machine_id}.{metric}"\n'
        '    dedup: {key: "{plant}/{machine_id}/{ce.source}/{ce.id}", window: 1h}\n'
    )
    r = make_router(text)
    subject, body = telemetry("press-07")
    mes, gw = r.process([(subject, body), ("gw.line1.telemetry", body)])
    assert mes.destinations == ["plant.p1.press-07", "site.p1.press-07.temp"]
    assert gw.destinations == ["site.p1.press-07.temp"]
    assert json.loads(gw.data)["line"] == "L9"
    # the same sample through the other source is another event (its own ce.source and
    # ce.id in the key); through the same source again, a duplicate
    again = r.process([("gw.line1.telemetry", body)])[0]
    assert again.status == "duplicate"
    assert [route for route, _, _ in again.skipped] == ["by-plant"]
