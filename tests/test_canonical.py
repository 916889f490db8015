"""The canonical models: their JSON Schemas (what the Rust core enforces), validation of
good and bad entities, CloudEvents attributes, and the expected entities in the examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from millstream import canonical
from millstream.canonical import CANONICAL_MODELS, CanonicalModel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# type name -> (required fields, optional fields, enum fields with their exact values)
SPEC: dict[str, tuple[set[str], set[str], dict[str, list[str]]]] = {
    "machine_telemetry": (
        {"machine_id", "plant", "metric", "value", "unit", "observed_at"},
        {"line", "quality"},
        {"quality": ["good", "uncertain", "bad"]},
    ),
    "inventory_movement": (
        {"movement_id", "product_id", "quantity", "uom", "status", "updated_at"},
        {
            "reference",
            "from_location",
            "to_location",
            "origin",
            "picking_id",
            "production_id",
            "moved_at",
        },
        {"status": ["planned", "waiting", "confirmed", "reserved", "done", "cancelled"]},
    ),
    "stock_level": (
        {"product_id", "location_id", "quantity", "reserved_quantity", "updated_at"},
        {"lot_id", "uom"},
        {},
    ),
    "production_order": (
        {
            "order_id",
            "name",
            "product_id",
            "quantity_planned",
            "quantity_producing",
            "status",
            "updated_at",
        },
        {"uom", "planned_start", "finished_at", "origin"},
        {"status": ["draft", "confirmed", "in_progress", "to_close", "done", "cancelled"]},
    ),
    "sales_order": (
        {"order_id", "name", "customer_id", "status", "amount_total", "ordered_at", "updated_at"},
        {"currency", "commitment_date", "customer_ref"},
        {"status": ["quotation", "quotation_sent", "confirmed", "cancelled"]},
    ),
    "goods_receipt": (
        {"receipt_id", "name", "status", "updated_at"},
        {"supplier_id", "origin", "scheduled_at", "received_at", "destination_location"},
        {"status": ["draft", "waiting", "confirmed", "ready", "received", "cancelled"]},
    ),
    "quality_hold": (
        {"hold_id", "name", "stage", "status", "priority", "updated_at"},
        {"title", "product_id", "lot_id", "team_id"},
        {"status": ["open", "closed"]},
    ),
    "shipment_milestone": (
        {"shipment_id", "milestone", "occurred_at"},
        {"order_ref", "carrier", "tracking_number", "location"},
        {
            "milestone": [
                "picked",
                "packed",
                "shipped",
                "in_transit",
                "delivered",
                "exception",
            ]
        },
    ),
}

# Fields that hold an instant, per type.
TIMESTAMPS: dict[str, set[str]] = {
    "machine_telemetry": {"observed_at"},
    "inventory_movement": {"moved_at", "updated_at"},
    "stock_level": {"updated_at"},
    "production_order": {"planned_start", "finished_at", "updated_at"},
    "sales_order": {"ordered_at", "commitment_date", "updated_at"},
    "goods_receipt": {"scheduled_at", "received_at", "updated_at"},
    "quality_hold": {"updated_at"},
    "shipment_milestone": {"occurred_at"},
}

# One valid entity per type, as JSON (what the Rust core emits).
VALID: dict[str, dict[str, Any]] = {
    "machine_telemetry": {
        "machine_id": "press-07",
        "plant": "dus",
        "line": "L2",
        "metric": "oil_temp",
        "value": 82.5,
        "unit": "degC",
        "quality": "good",
        "observed_at": "2026-11-27T08:15:02.123Z",
    },
    "inventory_movement": {
        "movement_id": "4711",
        "reference": "WH/OUT/00311",
        "product_id": "42",
        "quantity": 48.0,
        "quantity_done": 48.0,
        "uom": "Units",
        "from_location": "8",
        "to_location": "5",
        "status": "done",
        "origin": "S00042",
        "picking_id": "311",
        "production_id": None,
        "moved_at": "2026-11-27T08:14:57Z",
        "updated_at": "2026-11-27T08:15:02Z",
    },
    "stock_level": {
        "level_id": "922",
        "product_id": "61",
        "location_id": "8",
        "lot_id": None,
        "quantity": -3.62873896,
        "reserved_quantity": 0.0,
        "uom": "kg",
        "updated_at": "2026-11-27T08:01:19Z",
    },
    "production_order": {
        "order_id": "17",
        "name": "WH/MO/00017",
        "product_id": "42",
        "bom_id": "9",
        "quantity_planned": 120.0,
        "quantity_producing": 40.0,
        "uom": "Units",
        "status": "in_progress",
        "planned_start": "2026-11-27T06:00:00Z",
        "finished_at": "2026-11-27T14:00:00Z",
        "origin": "S00042",
        "updated_at": "2026-11-27T08:20:45Z",
    },
    "sales_order": {
        "order_id": "42",
        "name": "S00042",
        "customer_id": "7",
        "status": "confirmed",
        "amount_total": 18445.0,
        "currency": "EUR",
        "ordered_at": "2026-11-26T15:30:00Z",
        "commitment_date": "2026-12-04T12:00:00Z",
        "customer_ref": "PO-BM-2026-0117",
        "updated_at": "2026-11-26T15:31:07.889127Z",
    },
    "goods_receipt": {
        "receipt_id": "305",
        "name": "WH/IN/00305",
        "supplier_id": "14",
        "origin": "P00017",
        "status": "ready",
        "scheduled_at": "2026-11-28T06:00:00Z",
        "received_at": None,
        "destination_location": "8",
        "updated_at": "2026-11-27T07:42:10Z",
    },
    "quality_hold": {
        "hold_id": "12",
        "name": "QA00012",
        "title": "Weld seam cracked at 90° bend",
        "product_id": "42",
        "lot_id": "23",
        "stage": "1",
        "status": "open",
        "priority": 3,
        "team_id": "1",
        "updated_at": "2026-11-27T09:25:51Z",
    },
    "shipment_milestone": {
        "shipment_id": "WH-OUT-00311",
        "order_ref": "S00042",
        "milestone": "in_transit",
        "carrier": "DHL",
        "tracking_number": "00340434161094042557",
        "location": "Hamburg hub",
        "occurred_at": "2026-11-28T05:12:00Z",
    },
}

# (type, description, field -> new value; `...` deletes the field)
INVALID: list[tuple[str, str, dict[str, Any]]] = [
    ("machine_telemetry", "missing value", {"value": ...}),
    ("machine_telemetry", "null value", {"value": None}),
    ("machine_telemetry", "unknown quality", {"quality": "GOOD"}),
    ("machine_telemetry", "missing timestamp", {"observed_at": ...}),
    ("machine_telemetry", "naive timestamp", {"observed_at": "2026-11-27T08:15:02"}),
    ("machine_telemetry", "not a timestamp", {"observed_at": "27.11.2026 08:15"}),
    ("machine_telemetry", "empty machine id", {"machine_id": ""}),
    ("machine_telemetry", "integer machine id", {"machine_id": 7}),
    ("inventory_movement", "odoo state instead of status", {"status": "assigned"}),
    ("inventory_movement", "negative quantity", {"quantity": -1.0}),
    ("inventory_movement", "negative quantity done", {"quantity_done": -0.5}),
    ("inventory_movement", "missing product", {"product_id": ...}),
    ("inventory_movement", "missing uom", {"uom": ...}),
    ("inventory_movement", "odoo false for empty", {"origin": False}),
    ("inventory_movement", "unknown field", {"company_id": "1"}),
    ("stock_level", "missing location", {"location_id": ...}),
    ("stock_level", "missing reserved quantity", {"reserved_quantity": ...}),
    ("production_order", "odoo state progress", {"status": "progress"}),
    ("production_order", "negative planned quantity", {"quantity_planned": -120.0}),
    ("production_order", "negative producing quantity", {"quantity_producing": -1.0}),
    ("production_order", "missing name", {"name": ...}),
    ("sales_order", "odoo state sale", {"status": "sale"}),
    ("sales_order", "currency not ISO 4217", {"currency": "eur"}),
    ("sales_order", "missing order date", {"ordered_at": ...}),
    ("sales_order", "missing customer", {"customer_id": ...}),
    ("goods_receipt", "odoo state done", {"status": "done"}),
    ("goods_receipt", "missing name", {"name": ...}),
    ("quality_hold", "priority above 3", {"priority": 4}),
    ("quality_hold", "negative priority", {"priority": -1}),
    ("quality_hold", "unknown status", {"status": "solved"}),
    ("quality_hold", "missing stage", {"stage": ...}),
    ("shipment_milestone", "unknown milestone", {"milestone": "lost"}),
    ("shipment_milestone", "missing shipment id", {"shipment_id": ...}),
]


def _schema(type_name: str) -> dict[str, Any]:
    return CANONICAL_MODELS[type_name].model_json_schema(mode="serialization")


def _mutated(type_name: str, changes: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(VALID[type_name])
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return data


def test_registry_is_complete() -> None:
    assert set(CANONICAL_MODELS) == set(SPEC)
    for name, model in CANONICAL_MODELS.items():
        assert issubclass(model, CanonicalModel)
        assert model.type_name == name
        assert model.version == 1
        assert model.__name__ in canonical.__all__
        assert getattr(canonical, model.__name__) is model
    assert {"CanonicalModel", "CANONICAL_MODELS"} <= set(canonical.__all__)


def test_base_forbids_extra_fields() -> None:
    assert CanonicalModel.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("type_name", sorted(SPEC))
def test_schema_required_and_optional_fields(type_name: str) -> None:
    required, optional, _ = SPEC[type_name]
    schema = _schema(type_name)
    assert set(schema["required"]) == required
    assert required | optional <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    # every field is documented: the schema is the contract consumers read
    assert schema.get("description")
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{type_name}.{name} has no description"


@pytest.mark.parametrize("type_name", sorted(SPEC))
def test_schema_enums(type_name: str) -> None:
    _, _, enums = SPEC[type_name]
    props = _schema(type_name)["properties"]
    for name, values in enums.items():
        assert props[name]["enum"] == values
        assert props[name]["type"] == "string"


@pytest.mark.parametrize("type_name", sorted(SPEC))
def test_schema_timestamps_are_date_time_strings(type_name: str) -> None:
    props = _schema(type_name)["properties"]
    for name in TIMESTAMPS[type_name]:
        prop = props[name]
        variants = prop.get("anyOf", [prop])
        assert {"type": "string", "format": "date-time"} in [
            {k: v for k, v in variant.items() if k in ("type", "format")} for variant in variants
        ], f"{type_name}.{name}"


@pytest.mark.parametrize(
    ("type_name", "field", "bounds"),
    [
        ("inventory_movement", "quantity", {"minimum": 0}),
        ("production_order", "quantity_planned", {"minimum": 0}),
        ("production_order", "quantity_producing", {"minimum": 0}),
        ("quality_hold", "priority", {"minimum": 0, "maximum": 3, "type": "integer"}),
        ("machine_telemetry", "value", {"type": "number"}),
        ("stock_level", "quantity", {"type": "number"}),
    ],
)
def test_schema_numeric_constraints(type_name: str, field: str, bounds: dict[str, Any]) -> None:
    prop = _schema(type_name)["properties"][field]
    assert {k: prop.get(k) for k in bounds} == bounds
    if type_name == "stock_level":
        assert "minimum" not in prop  # Odoo stock may go negative


@pytest.mark.parametrize("type_name", sorted(SPEC))
def test_ce_type_and_dataschema(type_name: str) -> None:
    model = CANONICAL_MODELS[type_name]
    assert model.ce_type() == f"com.millstream.{type_name}.v1"
    assert model.dataschema() == f"urn:millstream:schema:{type_name}:v1"


@pytest.mark.parametrize("type_name", sorted(SPEC))
def test_valid_example_validates_and_round_trips(type_name: str) -> None:
    model = CANONICAL_MODELS[type_name]
    entity = model.model_validate_json(json.dumps(VALID[type_name]))
    dumped = json.loads(entity.model_dump_json())
    assert set(dumped) == set(model.model_fields)
    for name in TIMESTAMPS[type_name]:
        if dumped[name] is not None:
            assert dumped[name].endswith("Z"), f"{type_name}.{name} is not UTC: {dumped[name]}"
    again = model.model_validate_json(json.dumps(dumped))
    assert again == entity


def test_optional_fields_default_to_null_and_quality_to_good() -> None:
    data = {k: v for k, v in VALID["machine_telemetry"].items() if k not in ("line", "quality")}
    entity = CANONICAL_MODELS["machine_telemetry"].model_validate(data)
    dumped = json.loads(entity.model_dump_json())
    assert dumped["line"] is None
    assert dumped["quality"] == "good"


def test_offset_timestamp_is_normalised_to_utc() -> None:
    data = dict(VALID["quality_hold"], updated_at="2026-11-27T10:25:51+01:00")
    entity = CANONICAL_MODELS["quality_hold"].model_validate_json(json.dumps(data))
    assert json.loads(entity.model_dump_json())["updated_at"] == "2026-11-27T09:25:51Z"


@pytest.mark.parametrize(
    ("type_name", "changes"),
    [(t, c) for t, _, c in INVALID],
    ids=[f"{t}: {d}" for t, d, _ in INVALID],
)
def test_invalid_entity_is_rejected(type_name: str, changes: dict[str, Any]) -> None:
    data = _mutated(type_name, changes)
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        CANONICAL_MODELS[type_name].model_validate_json(json.dumps(data))


def _routed_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(
        (EXAMPLES / "events" / "cases.yaml").read_text(encoding="utf-8")
    )
    return [c for c in cases if c["expect"]["status"] == "routed"]


@pytest.mark.parametrize("case", _routed_cases(), ids=lambda c: str(c["name"]))
def test_example_expectations_are_valid_entities(case: dict[str, Any]) -> None:
    """Every expected entity in examples/events/cases.yaml names every field of its type and
    validates, so a core that produces it passes its own canonical check."""
    expect = case["expect"]
    model = CANONICAL_MODELS[expect["type"]]
    assert set(expect["data"]) == set(model.model_fields)
    model.model_validate_json(json.dumps(expect["data"]))
