"""Config validation: mistakes name the file, the line, the key path and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from millstream import ConfigError, load_config
from millstream.cli import main
from millstream.config import compile_plan, parse_config, parse_duration_ms

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
