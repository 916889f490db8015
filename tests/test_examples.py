"""Every sample event in examples/events through the example config, with hand-worked
expectations from examples/events/cases.yaml."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from millstream import Router
from millstream.canonical import CANONICAL_MODELS

from .conftest import EXAMPLES

CASES: list[dict[str, Any]] = yaml.safe_load((EXAMPLES / "events" / "cases.yaml").read_text())


@pytest.fixture(scope="module")
def example_router() -> Router:
    return Router.from_config(EXAMPLES / "manufacturing.yaml", clock=lambda: 1_795_000_000_000)


def test_every_example_source_has_cases() -> None:
    config = Router.from_config(EXAMPLES / "manufacturing.yaml").config
    subjects = {c["subject"] for c in CASES}
    for src in config.sources:
        assert any(
            s == pat or (pat.count("*") and len(s.split(".")) == len(pat.split(".")))
            for s in subjects
            for pat in src.subjects
        ), f"no sample event for source {src.name}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_example_event(example_router: Router, case: dict[str, Any]) -> None:
    payload = (EXAMPLES / "events" / case["file"]).read_bytes()
    # A fresh timestamp per case keeps dedup from interfering between unrelated cases.
    out = example_router.process_one(case["subject"], payload)
    expect = case["expect"]
    assert out.status == expect["status"], (out, out.detail)
    if expect["status"] == "dead_letter":
        assert out.reason == expect["reason"], out.detail
        assert out.destinations == []
        assert out.data == b""
        assert out.dead_letter_subject == f"millstream.dlq.{expect['reason']}"
        return
    assert out.canonical_type == expect["type"]
    assert out.routes == expect["routes"]
    assert out.destinations == expect["to"]
    data = json.loads(out.data)
    assert data == expect["data"]
    # The output is a valid instance of the canonical pydantic model: Python and Rust agree.
    model = CANONICAL_MODELS[expect["type"]]
    model.model_validate_json(out.data)
    attrs = out.attributes
    assert attrs is not None
    assert attrs["specversion"] == "1.0"
    assert attrs["type"] == model.ce_type()
    assert attrs["dataschema"] == model.dataschema()
    assert attrs["id"] == out.id


def test_redelivered_odoo_record_is_a_duplicate(example_router: Router) -> None:
    case = next(
        c for c in CASES if c["subject"] == "odoo.stock_move" and c["expect"]["status"] == "routed"
    )
    payload = (EXAMPLES / "events" / case["file"]).read_bytes()
    r = Router.from_config(EXAMPLES / "manufacturing.yaml", clock=lambda: 1_795_000_000_000)
    first, again = r.process([(case["subject"], payload), (case["subject"], payload)])
    assert first.status == "routed"
    assert again.status == "duplicate"
    assert again.destinations == []
    assert again.id == first.id
