"""Bad input never crashes anything: each class ends as a dead letter with its own reason."""

from __future__ import annotations

import pytest

from millstream import Router, reason_codes

GOOD_T = (
    b'{"machine": "m1", "plant": "p1", "metric": "temp", "value": 20.5, "unit": "degC", '
    b'"ts": 1795000000000}'
)
GOOD_Q = (
    b'{"_id": 7, "_model": "quality.alert", "name": "QA/7", "priority": "3", "stage_id": 1, '
    b'"write_date": "2026-11-27 08:15:02"}'
)

T = "mes.line1.telemetry"
Q = "odoo.quality_alert"

# (id, subject, payload, reason)
BAD = [
    ("too_large", T, b'{"pad": "' + b"x" * 5000 + b'"}', "too_large"),
    ("empty", T, b"", "empty_document"),
    ("whitespace_only", T, b" \n\t ", "empty_document"),
    ("invalid_utf8", T, b'{"machine": "m\xc3\x28"}', "invalid_utf8"),
    ("truncated", T, GOOD_T[:-5], "malformed_json"),
    ("not_json", T, b"machine=m1 value=3", "malformed_json"),
    ("trailing_garbage", T, GOOD_T + b" {}", "trailing_data"),
    ("too_deep", T, b'{"a": ' + b"[" * 20 + b"]" * 20 + b"}", "too_deep"),
    ("duplicate_key", T, b'{"machine": "m1", "machine": "m2"}', "duplicate_key"),
    ("nan", T, GOOD_T.replace(b"20.5", b"NaN"), "non_finite_number"),
    ("infinity", T, GOOD_T.replace(b"20.5", b"-Infinity"), "non_finite_number"),
    ("huge_exponent", T, GOOD_T.replace(b"20.5", b"1e999"), "non_finite_number"),
    (
        "integer_overflow",
        T,
        GOOD_T.replace(b"1795000000000", b"179500000000000000000000"),
        "integer_overflow",
    ),
    ("lone_surrogate", T, GOOD_T.replace(b'"m1"', b'"m\\ud800"'), "invalid_unicode_escape"),
    ("array_top_level", T, b"[" + GOOD_T + b"]", "not_an_object"),
    ("unknown_subject", "nobody.listens.here", GOOD_T, "unknown_source"),
    ("schema_violation", Q, GOOD_Q.replace(b"quality.alert", b"stock.move"), "schema_violation"),
    ("type_mismatch", T, GOOD_T.replace(b"20.5", b'"warm"'), "type_mismatch"),
    ("unknown_unit", T, GOOD_T.replace(b"degC", b"furlong"), "unknown_unit"),
    ("unmapped_value", Q, GOOD_Q.replace(b'"stage_id": 1', b'"stage_id": 9'), "unmapped_value"),
    ("invalid_timestamp", T, GOOD_T.replace(b"1795000000000", b'"yesterday"'), "invalid_timestamp"),
    ("canonical_invalid", Q, GOOD_Q.replace(b'"3"', b'"7"'), "canonical_invalid"),
    ("missing_required", T, GOOD_T.replace(b'"plant": "p1", ', b""), "canonical_invalid"),
    ("subject_injection_dot", T, GOOD_T.replace(b'"m1"', b'"m1.evil"'), "subject_rejected"),
    ("subject_injection_wildcard", T, GOOD_T.replace(b'"m1"', b'">"'), "subject_rejected"),
    ("subject_injection_space", T, GOOD_T.replace(b'"m1"', b'"m1 x"'), "subject_rejected"),
    (
        "subject_token_too_long",
        T,
        GOOD_T.replace(b'"m1"', b'"' + b"m" * 65 + b'"'),
        "subject_rejected",
    ),
]


def test_good_inputs_route(router: Router) -> None:
    assert router.process_one(T, GOOD_T).status == "routed"
    assert router.process_one(Q, GOOD_Q).status == "routed"


@pytest.mark.parametrize(
    ("subject", "payload", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_is_a_dead_letter(
    router: Router, subject: str, payload: bytes, reason: str
) -> None:
    out = router.process_one(subject, payload)
    assert out.status == "dead_letter"
    assert out.reason == reason, out.detail
    assert out.detail  # a human-readable why, never empty
    assert out.destinations == []
    assert out.dead_letter_subject == f"millstream.dlq.{reason}"


def test_at_least_twelve_classes_and_all_are_known_codes() -> None:
    reasons = {b[3] for b in BAD}
    assert len(reasons) >= 12
    assert reasons <= set(reason_codes())


def test_bad_events_in_a_batch_do_not_disturb_good_ones(router: Router) -> None:
    batch = [(T, GOOD_T)] + [(b[1], b[2]) for b in BAD] + [(Q, GOOD_Q)]
    out = router.process(batch)
    assert len(out) == len(batch)
    assert out[0].status == "routed"
    assert out[-1].status == "routed"
    assert out.statuses()[1:-1] == ["dead_letter"] * len(BAD)
    assert router.stats()["by_status"]["dead_letter"] == len(BAD)
