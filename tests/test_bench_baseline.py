"""The pure-Python baseline of `millstream bench core` does the same work as the core: the same
outcome for every sample case and for every event of a generated mix, the same canonical
constraints as the pydantic models, the same reason for each class of bad input."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import yaml

from millstream import Outcome, Router
from millstream.bench import gen
from millstream.bench.baseline import (
    ATTRIBUTES,
    CANONICAL_STRUCTS,
    DATA,
    DESTINATIONS,
    REASON,
    STATUS,
    Baseline,
    BaselineConfigError,
)
from millstream.bench.baseline import Outcome as BaselineOutcome
from millstream.canonical import CANONICAL_MODELS
from millstream.config import Config, load_config

from .conftest import EXAMPLES

CASES: list[dict[str, Any]] = yaml.safe_load((EXAMPLES / "events" / "cases.yaml").read_text())
NOW = 1_795_767_400_000


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(EXAMPLES / "manufacturing.yaml")


def core_view(o: Outcome) -> tuple[Any, ...]:
    attrs = o.attributes
    ce = None
    if attrs is not None:
        ce = tuple(
            attrs.get(k)
            for k in ("id", "source", "type", "dataschema", "time", "subject", "partitionkey")
        )
    return (o.status, tuple(o.destinations), o.data, o.reason, ce)


def baseline_view(o: BaselineOutcome) -> tuple[Any, ...]:
    return (o[STATUS], o[DESTINATIONS], o[DATA], o[REASON], o[ATTRIBUTES])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_sample_case_same_as_core(config: Config, case: dict[str, Any]) -> None:
    payload = (EXAMPLES / "events" / case["file"]).read_bytes()
    core = Router(config).process_one(case["subject"], payload, now_ms=NOW)
    base = Baseline(config).process_one(case["subject"], payload, NOW)
    assert baseline_view(base) == core_view(core), base[4]
    assert base[STATUS] == case["expect"]["status"]


def test_generated_mix_same_as_core(config: Config) -> None:
    mix = gen.generate_mix(20_000, seed=7)
    router, baseline = Router(config), Baseline(config)
    core_counts: Counter[str] = Counter()
    base_counts: Counter[str] = Counter()
    differences = []
    for i in range(0, len(mix.events), 1000):
        batch = mix.events[i : i + 1000]
        now = gen.arrival_ms(i + len(batch) - 1)
        core = router.process(batch, now_ms=now)
        base = baseline.process(batch, now)
        core_counts.update(core.counts())
        base_counts.update(Counter(o[STATUS] for o in base))
        for j, b in enumerate(base):
            c = core[j]
            if baseline_view(b) != core_view(c):
                differences.append((mix.kinds[i + j], batch[j], core_view(c), b))
    assert {k: v for k, v in base_counts.items() if v} == {
        k: v for k, v in core_counts.items() if v
    }
    assert differences == []
    # The mix exercises every path: each status, and each kind of bad event.
    assert set(base_counts) == {"routed", "duplicate", "stale", "dead_letter"}
    assert {k for k in mix.kinds if k.startswith("bad.")} == {f"bad.{b}" for b in gen.BAD_KINDS}


def test_generated_kinds_match_outcomes(config: Config) -> None:
    """What the generator says it made is what the core makes of it."""
    mix = gen.generate_mix(5_000, seed=11)
    router = Router(config)
    expect = {
        "telemetry": {"routed"},
        "stale": {"stale"},
        "duplicate": {"duplicate", "stale"},  # a re-sent old write can be stale by now
        "bad.malformed_json": {"malformed_json"},
        "bad.duplicate_key": {"duplicate_key"},
        "bad.nan": {"non_finite_number"},
        "bad.unknown_unit": {"unknown_unit"},
        "bad.unmapped_state": {"unmapped_value"},
        "bad.subject_injection": {"subject_rejected"},
    }
    for i in range(0, len(mix.events), 500):
        batch = mix.events[i : i + 500]
        out = router.process(batch, now_ms=gen.arrival_ms(i + len(batch) - 1))
        for j in range(len(batch)):
            kind, o = mix.kinds[i + j], out[j]
            got = o.reason or o.status
            allowed = expect.get(kind, {"routed"})
            assert got in allowed, (kind, batch[j], got, o.detail)


def test_generator_is_deterministic_and_realistic() -> None:
    a = gen.generate_mix(3_000, seed=5)
    assert a.events == gen.generate_mix(3_000, seed=5).events
    assert a.events != gen.generate_mix(3_000, seed=6).events
    s = a.summary()
    fresh = s["telemetry"] + s["odoo"]
    assert 0.80 < s["telemetry"] / fresh < 0.90
    assert 0.03 < s["duplicate"] / s["events"] < 0.07
    assert 0.005 < s["bad"] / s["events"] < 0.02
    sizes = [len(p) for (_, p), k in zip(a.events, a.kinds, strict=True) if k == "telemetry"]
    assert min(sizes) >= 200
    assert max(sizes) <= 600
    fresh_events = [e for e, k in zip(a.events, a.kinds, strict=True) if k != "duplicate"]
    assert len(set(fresh_events)) == len(fresh_events)
    odoo = [
        json.loads(p)
        for (subj, p), k in zip(a.events, a.kinds, strict=True)
        if k.startswith("odoo.")
    ]
    assert all(list(body) == sorted(body) for body in odoo)


# msgspec reports constraints in JSON Schema terms too; compare them with pydantic's.
_CONSTRAINTS = ("minLength", "minimum", "maximum", "pattern", "enum", "type")


def _constraints(prop: dict[str, Any]) -> set[tuple[str, str]]:
    """The value constraints of a property, as comparable (keyword, JSON) pairs. An enum
    implies its type (msgspec leaves `type` out of enums, pydantic writes it)."""
    out = set()
    for branch in prop.get("anyOf", [prop]):
        for k in _CONSTRAINTS:
            if k == "type" and "enum" in branch:
                continue
            if k in branch:
                value = sorted(branch[k]) if k == "enum" else branch[k]
                out.add((k, json.dumps(value)))
    return out


@pytest.mark.parametrize("name", sorted(CANONICAL_STRUCTS))
def test_canonical_structs_match_pydantic(name: str) -> None:
    import msgspec

    struct = CANONICAL_STRUCTS[name]
    theirs = CANONICAL_MODELS[name].model_json_schema(mode="serialization")
    (_, defs) = msgspec.json.schema_components([struct])
    ours = defs[struct.__name__]
    assert list(struct.__struct_fields__) == sorted(theirs["properties"])  # serde_json order
    assert set(ours.get("required", [])) == set(theirs.get("required", []))
    for field, prop in theirs["properties"].items():
        assert _constraints(ours["properties"][field]) == _constraints(prop), field


BAD_INPUTS: list[bytes] = [
    b" " * 70_000,
    b"",
    b"  \n ",
    b'{"a": "\xff"}',
    b'{"a": }',
    b'{"a": 1',
    b'{"a": 1} x',
    b'{"a": 1}{}',
    b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}",
    b'{"a": 1, "a": 2}',
    b'{"a": 1 , "a" : 2}',
    b'{"a": {"b": 1, "b": 1}}',
    b'{"a": [{"b": 1, "b": 1}]}',
    b'{"t": "say \\"hi\\"", "t": "x"}',
    b'{"t": "C:\\\\", "u": 1, "u": 2}',
    b'{"a": NaN}',
    b'{"a": -Infinity}',
    b'{"a": 1e400}',
    b'{"a": 123456789012345678901234}',
    b'{"a": -9223372036854775809}',
    b'{"a": "\\ud800"}',
    b"[1, 2]",
    b'"text"',
    # valid, and must stay valid
    b'{"plant": "dus", "machine": "m1", "metric": "x", "value": 1, "unit": "degC", '
    b'"ts": 1795767302123, "big": 18446744073709551615, "f": 1e19}',
    b'{"plant":"dus","machine":"m2","metric":"x","value":1,"unit":"degC","ts":1795767302124,'
    b'"t":"a \\"quoted\\" : value","n":{"k":[1,"two",{"x":null}]}}',
]


@pytest.mark.parametrize("payload", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
def test_decode_classification_same_as_core(config: Config, payload: bytes) -> None:
    subject = "mes.dus.m1.telemetry"
    core = Router(config).process_one(subject, payload, now_ms=NOW)
    base = Baseline(config).process_one(subject, payload, NOW)
    assert (base[STATUS], base[REASON]) == (core.status, core.reason), (base[4], core.detail)


def test_refuses_a_config_it_does_not_implement(config: Config) -> None:
    routes = [
        r.model_copy(update={"to": "mfg.telemetry.{plant}.{metric}"})
        if r.name == "telemetry-history"
        else r
        for r in config.routes
    ]
    with pytest.raises(BaselineConfigError, match="route telemetry-history"):
        Baseline(config.model_copy(update={"routes": routes}))
