"""Config validation: mistakes name the file, the line, the key path and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from millstream import ConfigError, load_config
from millstream.cli import main
from millstream.config import (
    compile_plan,
    compile_plane,
    parse_config,
    parse_duration_ms,
    subject_covered,
    subjects_overlap,
)

from .conftest import EXAMPLES, MINI

# (id, replace-this, with-this, expected fragments of the message)
MISTAKES = [
    (
        "bad_lane",
        "lane: bulk",
        "lane: slow",
        ["routes[0].lane", "'critical', 'standard' or 'bulk'"],
    ),
    (
        "unknown_key",
        "lane: bulk",
        "lane: bulk\n    priority: 3",
        ["routes[0].priority", "Extra inputs"],
    ),
    ("bad_window", "window: 10s", "window: soon", ["routes[0].dedup.window", "not a duration"]),
    (
        "unknown_mapping",
        "mapping: telemetry",
        "mapping: telemetri",
        ["sources[0].mapping", "no mapping named 'telemetri'"],
    ),
    (
        "unknown_canonical_field",
        "      plant: plant\n",
        "      plantt: plant\n",
        ["mappings.telemetry", "no field(s) plantt"],
    ),
    (
        "bad_subject",
        'subjects: ["mes.*.telemetry"]',
        'subjects: ["mes.*x.telemetry"]',
        ["sources[0].subjects[0]", "wildcards must be whole tokens"],
    ),
    (
        "wildcard_in_destination",
        'to: "alerts.quality"',
        'to: "alerts.*"',
        ["routes[2].to", "must be literal"],
    ),
    (
        "destination_field_unknown",
        'to: "quality.hold.{status}"',
        'to: "quality.hold.{colour}"',
        ["routes[1]", "{colour} is not a canonical field"],
    ),
    (
        "unknown_unit_table",
        "unit: {path: unit, unit_name: temp}",
        "unit: {path: unit, unit_name: pressure}",
        ["mappings.telemetry.fields.unit", "no unit table 'pressure'"],
    ),
    (
        "two_inputs",
        "priority: {path: priority, type: integer}",
        "priority: {path: priority, const: 1}",
        ["mappings.hold.fields.priority", "exactly one of"],
    ),
    (
        "bad_max_depth",
        "max_depth: 8",
        "max_depth: 1000",
        ["limits.max_depth", "less than or equal to 128"],
    ),
    (
        "at_least_once_route_outside_every_stream",
        '  QUALITY: {subjects: ["quality.>"]}',
        '  QUALITY: {subjects: ["quality.audit.>"]}',
        ["routes[1].to", "quality.hold.*", "under 'streams:'", "manage: false"],
    ),
    (
        "source_stream_not_declared",
        "    mapping: hold\n",
        "    mapping: hold\n    jetstream: {stream: ODOO_IN}\n",
        ["sources[1].jetstream.stream", "'ODOO_IN' is not declared under 'streams:'"],
    ),
    (
        "source_subject_outside_its_stream",
        "    mapping: hold\n",
        "    mapping: hold\n    jetstream: {stream: QUALITY}\n",
        ["sources[1].subjects[0]", "odoo.quality_alert is not within stream QUALITY"],
    ),
    (
        "stream_overlaps_dead_letters",
        '  QUALITY: {subjects: ["quality.>"]}',
        '  QUALITY: {subjects: ["quality.>", "millstream.*.x"]}',
        ["streams.QUALITY.subjects[1]", "overlaps the dead-letter subjects millstream.dlq.>"],
    ),
    (
        "dead_letter_stream_declared",
        '  QUALITY: {subjects: ["quality.>"]}',
        '  QUALITY: {subjects: ["quality.>"]}\n  MILLSTREAM_DLQ: {subjects: ["dlq.>"]}',
        ["streams.MILLSTREAM_DLQ", "dead-letter stream", "do not declare it"],
    ),
    (
        "streams_overlap",
        '  QUALITY: {subjects: ["quality.>"]}',
        '  QUALITY: {subjects: ["quality.>"]}\n  HOLDS: {subjects: ["*.hold.open"]}',
        ["streams.QUALITY.subjects[0]", "overlaps *.hold.open of stream HOLDS"],
    ),
    (
        "bad_stream_name",
        "  QUALITY: {",
        "  QUAL.ITY: {",
        ["streams.QUAL.ITY", "letters, digits"],
    ),
    (
        "bad_stream_storage",
        '  QUALITY: {subjects: ["quality.>"]}',
        '  QUALITY: {subjects: ["quality.>"], storage: disk}',
        ["streams.QUALITY.storage", "'file' or 'memory'"],
    ),
    (
        "bad_backoff",
        "    mapping: hold\n",
        "    mapping: hold\n    jetstream: {stream: QUALITY, backoff: [1s, later]}\n",
        ["sources[1].jetstream.backoff[1]", "not a duration"],
    ),
    (
        "max_deliver_zero",
        "    mapping: hold\n",
        "    mapping: hold\n    jetstream: {stream: QUALITY, max_deliver: 0}\n",
        ["sources[1].jetstream.max_deliver", "greater than or equal to 1"],
    ),
    (
        "lane_queue_zero",
        "streams:\n",
        "lanes: {bulk: {queue: 0}}\nstreams:\n",
        ["lanes.bulk.queue", "greater than or equal to 1"],
    ),
    (
        "unknown_lane",
        "streams:\n",
        "lanes:\n  fast: {queue: 10}\nstreams:\n",
        ["lanes.fast", "Extra inputs"],
    ),
    (
        "publish_window_zero",
        "streams:\n",
        "nats: {publish_window: 0}\nstreams:\n",
        ["nats.publish_window", "greater than or equal to 1"],
    ),
    (
        "bad_state_snapshot",
        "streams:\n",
        "state: {snapshot_every: often}\nstreams:\n",
        ["state.snapshot_every", "not a duration"],
    ),
    (
        "negative_snapshot_pace",
        "streams:\n",
        "state: {snapshot_bytes_per_s: -1}\nstreams:\n",
        ["state.snapshot_bytes_per_s", "greater than or equal to 0"],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "fragments"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_mistake_is_located(tmp_path: Path, old: str, new: str, fragments: list[str]) -> None:
    assert old in MINI
    path = tmp_path / "plant.yaml"
    path.write_text(MINI.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:"), msg
    line = int(msg.split(":")[1])
    assert line > 1  # points into the file, not at its top
    for frag in fragments:
        assert frag in msg


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nroutes: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_config(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/millstream.yaml")


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("500ms", 500),
        ("10s", 10_000),
        ("5m", 300_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        (30, 30_000),
        ("1.5s", 1500),
    ],
)
def test_durations(value: object, ms: int) -> None:
    assert parse_duration_ms(value) == ms


def test_plan_version_changes_with_meaning() -> None:
    a = compile_plan(parse_config(MINI))
    b = compile_plan(parse_config(MINI.replace("window: 10s", "window: 20s")))
    assert a["version"] != b["version"]
    assert a["version"] == compile_plan(parse_config(MINI))["version"]


def test_cli_check_prints_routes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["check", str(EXAMPLES / "manufacturing.yaml")]) == 0
    out = capsys.readouterr().out
    config = load_config(EXAMPLES / "manufacturing.yaml")
    for r in config.routes:
        assert r.name in out
    for col in ("lane", "delivery", "destination", "dedup"):
        assert col in out
    assert "ok" in out


def test_cli_check_fails_with_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINI.replace("lane: bulk", "lane: slow"))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "routes[0].lane" in err


def test_routes_table_cells_line_up_with_headers() -> None:
    from millstream.describe import routes_table

    config = load_config(EXAMPLES / "manufacturing.yaml")
    table = routes_table(config)
    columns = {str(c.header): [str(x) for x in c.cells] for c in table.columns}
    for i, r in enumerate(config.routes):
        assert columns["route"][i] == r.name
        assert columns["lane"][i] == r.lane
        assert columns["delivery"][i] == r.delivery
        assert columns["destination"][i] == r.to
        assert columns["when"][i] == (r.when or "-")


def test_sources_table_shows_how_each_source_is_read() -> None:
    from millstream.describe import sources_table

    config = load_config(EXAMPLES / "manufacturing.yaml")
    columns = {str(c.header): [str(x) for x in c.cells] for c in sources_table(config).columns}
    inputs = dict(zip(columns["source"], columns["input"], strict=True))
    assert inputs["odoo-stock-move"] == "ODOO_IN/millstream-odoo-stock-move"
    assert inputs["mes-telemetry"] == "core"


def test_example_config_has_no_warnings() -> None:
    from millstream.config import config_warnings

    assert config_warnings(load_config(EXAMPLES / "manufacturing.yaml")) == []


@pytest.mark.parametrize(
    ("old", "new", "warning"),
    [
        (
            'subjects: ["mes.*.telemetry"]',
            'subjects: ["mes.*.telemetry", "odoo.*"]',
            "sources 'mes' and 'odoo_quality' overlap",
        ),
        ('to: "alerts.quality"', 'to: "mes.{hold_id}.telemetry"', "events would loop"),
    ],
    ids=["overlapping_sources", "route_loops_into_a_source"],
)
def test_check_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, warning: str
) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text(MINI.replace(old, new))
    assert main(["check", str(path)]) == 0
    assert warning in capsys.readouterr().err
    assert main(["check", "--strict", str(path)]) == 1


# (pattern, by, every subject matching `pattern` also matches `by`)
COVERAGE = [
    ("odoo.stock_move", "odoo.>", True),
    ("odoo.stock_move", "odoo.*", True),
    ("odoo.stock_move", "odoo.stock_move", True),
    ("odoo.stock_move", "odoo.sale_order", False),
    ("odoo", "odoo.>", False),  # `>` needs at least one more token
    ("odoo.*", "odoo.>", True),
    ("odoo.>", "odoo.>", True),
    ("odoo.>", "odoo.*", False),  # odoo.a.b is not in odoo.*
    ("odoo.*", "odoo.stock_move", False),  # odoo.sale_order is not
    ("odoo.*.x", "odoo.*.*", True),
    ("odoo.*.x", "*.*.x", True),
    ("odoo.*.x", "odoo.>", True),
    ("odoo.a.x", "odoo.*", False),  # deeper than `by`
    ("odoo.*", "odoo.*.*", False),  # shallower than `by`
    ("mfg.inventory.movement.*", "mfg.inventory.>", True),
    ("mfg.inventory.movement.*", "mfg.inventory.movement.done", False),
    (">", ">", True),
    ("a.b", ">", True),
    (">", "a.>", False),
    ("*", "*", True),
    ("*", ">", True),
    ("*.>", ">", True),
    ("a.>", "a.*.>", False),  # a.b is in a.>, not in a.*.>
    ("a.*.>", "a.>", True),
]


@pytest.mark.parametrize(("pattern", "by", "covered"), COVERAGE)
def test_subject_covered(pattern: str, by: str, covered: bool) -> None:
    assert subject_covered(pattern, by) is covered
    if covered:
        # Coverage implies overlap; the two helpers must never disagree on that.
        assert subjects_overlap(pattern, by)


EXAMPLE_ODOO_INPUT = {
    "source": "odoo-stock-move",
    "subjects": ["odoo.stock_move"],
    "queue_group": None,
    "jetstream": {
        "stream": "ODOO_IN",
        "durable": "millstream-odoo-stock-move",
        "batch": 1024,
        "max_deliver": 5,
        "backoff_ms": [1000, 5000, 30000],
    },
}
DEFAULT_LANES = {
    "critical": {"queue": 10_000, "batch": 64, "objective_ms": 10},
    "standard": {"queue": 50_000, "batch": 256, "objective_ms": 100},
    "bulk": {"queue": 100_000, "batch": 512, "objective_ms": 1000},
}


def test_compile_plane_for_the_example() -> None:
    config = load_config(EXAMPLES / "manufacturing.yaml")
    plane = compile_plane(config, "nats://127.0.0.1:4222")
    # The Rust side parses this with deny_unknown_fields: the key sets are the contract.
    assert set(plane) == {
        "url", "client_name", "inputs", "lanes", "publish_window", "state", "passthrough",
        "pretouch_bytes",
    }  # fmt: skip
    assert plane["url"] == "nats://127.0.0.1:4222"
    assert plane["client_name"] == "millstream-dus"
    assert plane["inputs"][0] == EXAMPLE_ODOO_INPUT
    assert [i["source"] for i in plane["inputs"]] == [s.name for s in config.sources]
    odoo = [i for i in plane["inputs"] if i["source"].startswith("odoo-")]
    assert len(odoo) == 6
    assert all(i["jetstream"]["stream"] == "ODOO_IN" for i in odoo)
    assert plane["inputs"][-1] == {
        "source": "mes-telemetry",
        "subjects": ["mes.*.*.telemetry"],
        "queue_group": None,
        "jetstream": None,
    }
    assert plane["lanes"] == DEFAULT_LANES
    assert plane["publish_window"] == 4096
    assert plane["state"] == {
        "bucket": "MILLSTREAM_STATE",
        "snapshot_every_ms": 5000,
        "snapshot_bytes_per_s": 16 * 1024 * 1024,
    }
    assert plane["passthrough"] is False
    assert plane["pretouch_bytes"] == 128 << 20
    assert json.loads(json.dumps(plane)) == plane


# (id, YAML added at the top of MINI, what compile_plane must show)
PLANE_SETTINGS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "one_lane_key",
        "lanes: {bulk: {queue: 5000}}",
        {"lanes": {**DEFAULT_LANES, "bulk": {"queue": 5000, "batch": 512, "objective_ms": 1000}}},
    ),
    (
        "lane_objective_duration",
        "lanes: {critical: {objective: 2ms, batch: 8}}",
        {
            "lanes": {
                **DEFAULT_LANES,
                "critical": {"queue": 10_000, "batch": 8, "objective_ms": 2},
            }
        },
    ),
    ("state_off", "state: {enabled: false}", {"state": None}),
    (
        "state_bucket",
        "state: {bucket: DUS_STATE, snapshot_every: 1m, snapshot_bytes_per_s: 0}",
        {
            "state": {
                "bucket": "DUS_STATE",
                "snapshot_every_ms": 60_000,
                "snapshot_bytes_per_s": 0,
            }
        },
    ),
    ("pretouch", "memory: {pretouch_mib: 64}", {"pretouch_bytes": 64 << 20}),
    ("pretouch_off", "memory: {pretouch_mib: 0}", {"pretouch_bytes": 0}),
    (
        "client_settings",
        "nats: {name: router-7, publish_window: 100}",
        {"client_name": "router-7", "publish_window": 100},
    ),
]


@pytest.mark.parametrize(
    ("yaml_text", "expected"), [p[1:] for p in PLANE_SETTINGS], ids=[p[0] for p in PLANE_SETTINGS]
)
def test_compile_plane_settings(yaml_text: str, expected: dict[str, Any]) -> None:
    plane = compile_plane(parse_config(yaml_text + "\n" + MINI), "nats://x:4222")
    for key, value in expected.items():
        assert plane[key] == value


def test_queue_group_applies_to_core_inputs_only() -> None:
    text = "nats: {queue_group: routers}\n" + MINI.replace(
        "    mapping: hold\n",
        "    mapping: hold\n    jetstream: {stream: ODOO, durable: holds, batch: 32,"
        " max_deliver: 3, backoff: [500ms, 2s]}\n",
    ).replace("streams:\n", 'streams:\n  ODOO: {subjects: ["odoo.>"], manage: false}\n')
    inputs = {i["source"]: i for i in compile_plane(parse_config(text), "nats://x")["inputs"]}
    assert inputs["mes"]["queue_group"] == "routers"
    assert inputs["mes"]["jetstream"] is None
    assert inputs["odoo_quality"]["queue_group"] is None
    assert inputs["odoo_quality"]["jetstream"] == {
        "stream": "ODOO",
        "durable": "holds",
        "batch": 32,
        "max_deliver": 3,
        "backoff_ms": [500, 2000],
    }


def test_plane_settings_do_not_change_the_plan_version() -> None:
    a = compile_plan(parse_config(MINI))
    b = compile_plan(parse_config("lanes: {bulk: {queue: 5}}\nnats: {publish_window: 7}\n" + MINI))
    assert a["version"] == b["version"]


def test_new_sections_have_documented_defaults() -> None:
    config = parse_config(MINI)
    assert config.nats.name == "millstream"
    assert config.nats.queue_group is None
    assert config.metrics.host == "127.0.0.1"
    assert config.metrics.port == 9464
    assert config.state.bucket == "MILLSTREAM_STATE"
    quality = config.streams["QUALITY"]
    assert (quality.storage, quality.duplicate_window, quality.max_age, quality.manage) == (
        "file",
        120_000,
        None,
        True,
    )
    off = parse_config("metrics: {port: null}\n" + MINI)
    assert off.metrics.port is None


def test_two_sources_cannot_share_a_durable() -> None:
    text = MINI.replace(
        "    mapping: hold\n",
        "    mapping: hold\n    jetstream: {stream: ODOO, durable: shared}\n",
    ).replace(
        '  - name: mes\n    subjects: ["mes.*.telemetry"]\n',
        '  - name: mes\n    subjects: ["odoo.mes.*.telemetry"]\n'
        "    jetstream: {stream: ODOO, durable: shared}\n",
    )
    text = text.replace("streams:\n", 'streams:\n  ODOO: {subjects: ["odoo.>"]}\n')
    assert "durable: shared" in text.split("odoo_quality")[1]
    with pytest.raises(ConfigError, match=r"sources\[1\]\.jetstream\.durable: source 'mes'"):
        parse_config(text)


def test_overlapping_filter_subjects_are_an_error() -> None:
    text = MINI.replace(
        'subjects: ["odoo.quality_alert"]',
        'subjects: ["odoo.quality_alert", "odoo.*"]\n    jetstream: {stream: ODOO}',
    ).replace("streams:\n", 'streams:\n  ODOO: {subjects: ["odoo.>"]}\n')
    with pytest.raises(ConfigError, match=r"sources\[1\]\.subjects\[1\]: odoo\.\* overlaps"):
        parse_config(text)
