"""Properties: no input makes the core raise or panic; dedup keys are stable; mapping is
deterministic."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millstream import Router, parse_config, reason_codes

from .conftest import MINI

ROUTER = Router(parse_config(MINI), clock=lambda: 1_795_000_000_000)
SUBJECTS = st.sampled_from(["mes.l1.telemetry", "odoo.quality_alert", "other.subject", "mes.x.y.z"])
CODES = set(reason_codes())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
telemetry_like = st.fixed_dictionaries(
    {
        "machine": st.text(max_size=70) | st.integers(),
        "plant": st.text(max_size=10),
        "metric": st.sampled_from(["temp", "rpm"]),
        "value": st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
        "unit": st.sampled_from(["degC", "degF", "K", ""]),
        "ts": st.integers(min_value=-(2**70), max_value=2**70),
    }
)


def check(out: Any) -> None:
    assert out.status in ("routed", "duplicate", "stale", "dead_letter")
    if out.status == "dead_letter":
        assert out.reason in CODES
        assert out.reason != "internal_error", out.detail
    else:
        json.loads(out.data)
        for d in out.destinations:
            assert all(tok and "*" not in tok and ">" not in tok for tok in d.split("."))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(subject=SUBJECTS, payload=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(subject: str, payload: bytes) -> None:
    check(ROUTER.process([(subject, payload)])[0])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(subject=SUBJECTS, doc=json_values)
def test_arbitrary_json_never_raises(subject: str, doc: object) -> None:
    check(ROUTER.process([(subject, json.dumps(doc).encode())])[0])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(doc=telemetry_like)
def test_mapping_is_deterministic_and_dedup_keys_stable(doc: dict[str, Any]) -> None:
    payload = json.dumps(doc).encode()
    a = Router(parse_config(MINI)).process([("mes.l1.telemetry", payload)], now_ms=1)[0]
    b = Router(parse_config(MINI)).process([("mes.l1.telemetry", payload)], now_ms=2)[0]
    check(a)
    assert (a.status, a.reason, a.data, a.destinations, a.dedup_id, a.id) == (
        b.status,
        b.reason,
        b.data,
        b.destinations,
        b.dedup_id,
        b.id,
    )
