"""Millstream configuration: YAML -> pydantic models -> a compiled plan for the Rust core.

Pure pydantic, no I/O at import. `load_config(path)` reads a file and raises `ConfigError`
naming the file, the key path, the YAML line and what is wrong.

The rule for templates (`{name}` placeholders): a mapping's *field* specs read the **source
payload**; everything else (mapping `id`/`subject`/`partitionkey`, route `to`, dedup and stale
keys) reads the **canonical entity**, plus `ce.id`, `ce.type`, `ce.source`, `ce.subject`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from millstream.canonical import CANONICAL_MODELS
from millstream.errors import ConfigError, ConfigProblem

Lane = Literal["critical", "standard", "bulk"]
Delivery = Literal["best_effort", "at_least_once"]
Profile = Literal["json", "odoo_webhook"]
FieldType = Literal["string", "integer", "number", "boolean", "timestamp"]
TimestampFormat = Literal["auto", "rfc3339", "odoo", "epoch_ms", "epoch_s"]

_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_\-*>]+$|^\{[^{}]+\}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def parse_duration_ms(value: object) -> int:
    """`"500ms"`, `"10s"`, `"5m"`, `"2h"`, `"1d"`, or a number of seconds -> milliseconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '10m'")
    if isinstance(value, int | float):
        ms = int(value * 1000)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        ms = int(float(m.group(1)) * _UNIT_MS[m.group(2)])
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. '500ms', '10s', '5m', '2h', '1d')")
    if ms <= 0:
        raise ValueError("a duration must be positive")
    return ms


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]


def format_duration(ms: int) -> str:
    """Milliseconds in the largest whole unit a config would use: 7d, 2m, 1500ms."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def template_names(template: str) -> list[str]:
    """The placeholder names of a template, e.g. `"a.{b}.{c}"` -> `["b", "c"]`."""
    names = _PLACEHOLDER.findall(template)
    stray = _PLACEHOLDER.sub("", template)
    if "{" in stray or "}" in stray:
        raise ValueError(f"unbalanced braces in template {template!r}")
    for n in names:
        if not n or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", n):
            raise ValueError(f"bad placeholder {{{n}}} in template {template!r}")
    return names


def _check_subject_pattern(pattern: str) -> str:
    tokens = pattern.split(".")
    for i, tok in enumerate(tokens):
        if not tok:
            raise ValueError(f"subject {pattern!r} has an empty token")
        if tok == ">" and i != len(tokens) - 1:
            raise ValueError(f"subject {pattern!r}: '>' may only be the last token")
        if ("*" in tok or ">" in tok) and tok not in ("*", ">"):
            raise ValueError(f"subject {pattern!r}: wildcards must be whole tokens")
        if not re.fullmatch(r"[A-Za-z0-9_\-*>]+", tok):
            raise ValueError(f"subject {pattern!r}: token {tok!r} has characters NATS forbids")
    return pattern


def subjects_overlap(a: str, b: str) -> bool:
    """Whether some subject matches both NATS patterns."""
    ta, tb = a.split("."), b.split(".")
    for x, y in zip(ta, tb, strict=False):
        if ">" in (x, y):
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(ta) == len(tb)


def subject_covered(pattern: str, by: str) -> bool:
    """Whether every subject matching the NATS pattern `pattern` also matches `by`.

    Exact for one covering pattern: `a.*` is covered by `a.>` and by `*.*`, `a.>` is not
    covered by `a.*` (it also matches `a.b.c`), and `a.*` is not covered by `a.b`.
    """
    tp, tb = pattern.split("."), by.split(".")
    for i, b in enumerate(tb):
        if b == ">":
            # `>` matches one or more remaining tokens, whatever they are.
            return i < len(tp)
        if i >= len(tp):
            return False
        p = tp[i]
        if p == ">":
            # `pattern` goes on to any depth; `by` stops at a fixed one.
            return False
        if b != "*" and p != b:
            # A literal in `by` needs the same literal in `pattern` (a `*` there would let
            # other tokens through).
            return False
    return len(tp) == len(tb)


SubjectPattern = Annotated[str, BeforeValidator(lambda v: _check_subject_pattern(str(v)))]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Model):
    """Decode limits; anything over them is a dead letter, never a crash."""

    max_bytes: int = Field(65_536, ge=2, le=16 * 1024 * 1024)
    max_depth: int = Field(32, ge=1, le=128)


_STREAM_NAME = r"^[A-Za-z0-9_-]+$"


class DeadLetterConfig(_Model):
    """Where rejected events go (decision 7). The subject is `{subject_prefix}.{reason}`; the
    stream (on `{subject_prefix}.>`) is always provisioned and need not be declared."""

    subject_prefix: str = "millstream.dlq"
    stream: str = Field("MILLSTREAM_DLQ", pattern=_STREAM_NAME)

    @property
    def subjects(self) -> list[str]:
        return [f"{self.subject_prefix}.>"]


class UnitEntry(_Model):
    """`canonical = value * factor + offset`, expressed in unit `to`."""

    to: str
    factor: float = 1.0
    offset: float = 0.0


class UnitTable(_Model):
    units: dict[str, UnitEntry]

    @model_validator(mode="before")
    @classmethod
    def _bare_mapping(cls, data: Any) -> Any:
        # A table is written as a plain mapping of source unit -> entry.
        if isinstance(data, Mapping) and "units" not in data:
            return {"units": {str(k): v for k, v in data.items()}}
        return data


class Convert(_Model):
    """Unit conversion of a number through a unit table.

    The source unit comes from another payload field (`from_path`, e.g. Odoo's `product_uom`)
    or is fixed (`from`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    table: str
    from_path: str | None = None
    from_unit: str | None = Field(None, alias="from")

    @model_validator(mode="after")
    def _one_source(self) -> Convert:
        if (self.from_path is None) == (self.from_unit is None):
            raise ValueError("give exactly one of 'from_path' and 'from'")
        return self


class FieldSpec(_Model):
    """How one canonical field is computed from the source payload.

    Exactly one of `path`, `template`, `const`. Then, in order: Odoo `false` -> empty,
    many2one part, value map, cast to `type`, unit conversion, `default` when empty.
    """

    path: str | None = None
    template: str | None = None
    const: Any = None
    type: FieldType = "string"
    format: TimestampFormat = "auto"
    many2one: Literal["id", "name"] = "id"
    map: dict[str, Any] | None = None
    map_default: Any = Field(default=None)
    convert: Convert | None = None
    unit_name: str | None = None
    default: Any = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `field: some.path` is shorthand for `field: {path: some.path}`.
        if isinstance(data, str):
            return {"path": data}
        return data

    @model_validator(mode="after")
    def _exactly_one_input(self) -> FieldSpec:
        given = [k for k in ("path", "template", "const") if k in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of 'path', 'template', 'const'")
        if self.template is not None:
            template_names(self.template)
        return self


class MappingConfig(_Model):
    """Maps a source payload onto one canonical entity type."""

    canonical: str
    fields: dict[str, FieldSpec]
    id: str | None = None
    subject: str | None = None
    time: str | None = None
    partitionkey: str | None = None

    @field_validator("canonical")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if v not in CANONICAL_MODELS:
            raise ValueError(f"unknown canonical type {v!r}; known: {', '.join(CANONICAL_MODELS)}")
        return v

    @model_validator(mode="after")
    def _fields_exist(self) -> MappingConfig:
        model = CANONICAL_MODELS[self.canonical]
        known = set(model.model_fields)
        unknown = sorted(set(self.fields) - known)
        if unknown:
            raise ValueError(
                f"{self.canonical} has no field(s) {', '.join(unknown)}; "
                f"its fields are {', '.join(sorted(known))}"
            )
        for attr in ("id", "subject", "partitionkey"):
            tmpl = getattr(self, attr)
            if tmpl is not None:
                _check_canonical_refs(tmpl, known, attr)
        if self.time is not None and self.time not in known:
            raise ValueError(f"time: {self.canonical} has no field {self.time!r}")
        return self


def _check_canonical_refs(template: str, known: set[str], where: str) -> None:
    for name in template_names(template):
        if name.startswith("ce.") or name == "ce":
            if name not in ("ce.id", "ce.type", "ce.source", "ce.subject"):
                raise ValueError(f"{where}: unknown attribute {{{name}}}")
        elif name.split(".")[0] not in known:
            raise ValueError(f"{where}: {{{name}}} is not a canonical field")


class SourceJetStream(_Model):
    """Read a source from a JetStream stream through a durable pull consumer instead of a
    core NATS subscription. For producers that never resend (Odoo webhooks): the event is
    stored before Millstream sees it, and acked only once every route has handled it.

    After `max_deliver` deliveries an event that still fails is dead-lettered by Millstream
    (the consumer itself redelivers without limit, so Millstream sees the last attempt).
    `backoff[i]` is the delay before redelivery after the (i+1)-th failed attempt; the last
    entry repeats."""

    stream: str = Field(pattern=_STREAM_NAME)
    durable: str | None = Field(None, pattern=_STREAM_NAME)
    # Messages per pull request. The plane keeps one request open at a time (see
    # `ingest::pull_loop`), so each batch ends with a round trip for the next; 1024 spreads it
    # over four times the messages of the earlier 256, worth about 4% on the benchmark's
    # JetStream path (BENCHMARKS.md, session 20).
    batch: int = Field(1024, ge=1, le=10_000)
    max_deliver: int = Field(5, ge=1, le=1000)
    ack_wait: DurationMs = 30_000
    backoff: list[DurationMs] = Field(default_factory=lambda: [1000, 5000, 30_000], min_length=1)


class SourceConfig(_Model):
    """Where events come from and how they are read."""

    name: str = Field(pattern=_NAME)
    subjects: list[SubjectPattern] = Field(min_length=1)
    profile: Profile = "json"
    mapping: str
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    schema_file: Path | None = None
    source_uri: str | None = None
    jetstream: SourceJetStream | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def durable(self) -> str | None:
        """The durable consumer this source reads through, if it reads JetStream."""
        if self.jetstream is None:
            return None
        return self.jetstream.durable or f"millstream-{self.name}"


class RouteMatch(_Model):
    subjects: list[SubjectPattern] = Field(default_factory=lambda: [">"], min_length=1)
    types: list[str] = Field(default_factory=list)


class DedupConfig(_Model):
    """Drop an event whose key was seen within `window` (decision 6)."""

    key: str
    window: DurationMs = 600_000
    capacity: int = Field(1_000_000, ge=1, le=100_000_000)


class StaleConfig(_Model):
    """Drop an update whose `version` is older than the newest seen for the same `key`.
    At `capacity` keys, the least recently updated key is forgotten for each new one."""

    key: str
    version: str
    capacity: int = Field(1_000_000, ge=1, le=100_000_000)


class RouteConfig(_Model):
    name: str = Field(pattern=_NAME)
    match: RouteMatch = Field(default_factory=RouteMatch)
    when: str | None = None
    lane: Lane = "standard"
    delivery: Delivery = "best_effort"
    to: str
    dedup: DedupConfig | None = None
    stale: StaleConfig | None = None

    @field_validator("to")
    @classmethod
    def _subject_template(cls, v: str) -> str:
        template_names(v)
        for tok in v.split("."):
            if not _SUBJECT_TOKEN.match(tok) or "*" in tok or ">" in tok:
                raise ValueError(
                    f"destination {v!r}: token {tok!r} must be literal [A-Za-z0-9_-] "
                    "or one whole {placeholder}"
                )
        return v


class NatsConfig(_Model):
    """The NATS connection shared by the control plane and the data plane."""

    url: str | None = None
    name: str = Field("millstream", min_length=1)
    # Core-NATS sources subscribe in this queue group, so several instances share the load.
    queue_group: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    # At most this many output publishes await their JetStream PubAck at once.
    publish_window: int = Field(4096, ge=1, le=1_000_000)


StorageKind = Literal["file", "memory"]


class StreamSpec(_Model):
    """A JetStream stream that sources read from or at_least_once routes publish to.

    `manage: true` (default): Millstream creates it, or updates it to these settings.
    `manage: false`: it is managed elsewhere; Millstream only checks that it exists."""

    subjects: list[SubjectPattern] = Field(min_length=1)
    max_age: DurationMs | None = None
    max_bytes: int | None = Field(None, ge=1)
    storage: StorageKind = "file"
    duplicate_window: DurationMs = 120_000
    manage: bool = True

    @model_validator(mode="after")
    def _window_within_age(self) -> StreamSpec:
        # JetStream refuses a duplicate window longer than max_age.
        if self.max_age is None or self.duplicate_window <= self.max_age:
            return self
        if "duplicate_window" in self.model_fields_set:
            raise ValueError(
                f"duplicate_window ({format_duration(self.duplicate_window)}) must not be "
                f"longer than max_age ({format_duration(self.max_age)})"
            )
        return self.model_copy(update={"duplicate_window": self.max_age})


class LaneSpec(_Model):
    """One lane's bounded queue, batch size and latency objective (decision 5)."""

    queue: int = Field(ge=1, le=10_000_000)
    batch: int = Field(ge=1, le=10_000)
    objective: DurationMs


_LANE_DEFAULTS: dict[str, dict[str, Any]] = {
    "critical": {"queue": 10_000, "batch": 64, "objective": "10ms"},
    "standard": {"queue": 50_000, "batch": 256, "objective": "100ms"},
    "bulk": {"queue": 100_000, "batch": 512, "objective": "1s"},
}


def _lane_default(lane: str) -> LaneSpec:
    return LaneSpec.model_validate(_LANE_DEFAULTS[lane])


class LanesConfig(_Model):
    """Per-lane settings; any lane or key left out keeps its default."""

    critical: LaneSpec = Field(default_factory=lambda: _lane_default("critical"))
    standard: LaneSpec = Field(default_factory=lambda: _lane_default("standard"))
    bulk: LaneSpec = Field(default_factory=lambda: _lane_default("bulk"))

    @model_validator(mode="before")
    @classmethod
    def _partial(cls, data: Any) -> Any:
        # `lanes: {bulk: {queue: 5000}}` overrides one key of one lane.
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for lane, d in _LANE_DEFAULTS.items():
            given = out.get(lane)
            if isinstance(given, Mapping):
                out[lane] = {**d, **given}
        return out


class StateConfig(_Model):
    """Dedup and stale-guard state, snapshotted to a JetStream object store bucket so it
    survives restarts (decision 6)."""

    bucket: str = Field("MILLSTREAM_STATE", pattern=_STREAM_NAME)
    snapshot_every: DurationMs = 5000
    # Periodic snapshots reach the object store at most this fast (0: at once), so a big
    # delta or a full two-million-key route (48 MB) is not one burst nats-server stores
    # while events wait. At the default a full route takes 3 s. Drain's last save is not
    # paced.
    snapshot_bytes_per_s: int = Field(16 * 1024 * 1024, ge=0)
    enabled: bool = True


class MemoryConfig(_Model):
    """The data plane's heap."""

    # MiB faulted in before routing starts, so the first load does not wait for the pages
    # the router's buffers grow into (as the JVM's -XX:+AlwaysPreTouch does for its heap).
    # On a VM whose memory the host backs lazily, a router offered 25k events/s right after
    # start stalled for 0.3-2 s without it (BENCHMARKS.md, session 11). 0: off. The memory
    # stays resident either way once used: freed memory is kept (see `Plane.stats()`).
    pretouch_mib: int = Field(128, ge=0, le=1 << 20)


class MetricsConfig(_Model):
    """The Prometheus endpoint (`/metrics`); `port: null` turns it off."""

    host: str = "127.0.0.1"
    port: int | None = Field(9464, ge=0, le=65_535)


class SubscribeConfig(_Model):
    """Router.Subscribe: per-subscriber buffering (issue 5)."""

    # Response batches read ahead per subscriber: its bounded buffer.
    buffer: int = Field(16, ge=1, le=4096)
    # A subscriber that leaves its buffer full this long cannot keep up: it is ended with
    # RESOURCE_EXHAUSTED (JetStream keeps the events; it may resume from its last sequence).
    max_stall: DurationMs = 2_000
    # Events per response when the request does not say.
    max_batch: int = Field(500, ge=1, le=10_000)
    # Key-value bucket of durable cursors (created on first use).
    cursor_bucket: str = "MILLSTREAM_CURSORS"


class GrpcTlsConfig(_Model):
    """TLS for the gRPC port. With `client_ca`, clients must present a certificate signed by
    it (mutual TLS). Relative paths are read from the config file's directory."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class GrpcAuthConfig(_Model):
    """Bearer tokens mapped to roles (producer, consumer, admin); see docs/grpc.md.

    Authentication is on unless `mode: none` says otherwise, so a gRPC section without
    tokens is an error rather than an open port."""

    mode: Literal["tokens", "none"] = "tokens"
    # A YAML file `tokens: [{name, token | token_sha256, roles}]`; relative to the config file.
    tokens_file: Path | None = None
    # An environment variable holding `name:role+role:token` entries separated by commas.
    tokens_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class GrpcRateLimit(_Model):
    """A token bucket per token identity: `requests_per_s` refill, `burst` capacity. A call
    counts once, however many messages its streams carry (as Envoy's local rate limit)."""

    requests_per_s: float = Field(gt=0)
    burst: int = Field(ge=1)


class GrpcConfig(_Model):
    """The gRPC services (Router, Admin, health, reflection) in the router's process."""

    host: str = "127.0.0.1"
    # 0 picks a free port (tests); the bound port is logged and in the ready file.
    port: int = Field(50051, ge=0, le=65_535)
    subscribe: SubscribeConfig = Field(default_factory=SubscribeConfig)
    # None: plaintext (a warning when the host is not loopback).
    tls: GrpcTlsConfig | None = None
    # Tokens are required unless `auth: {mode: none}` is explicit.
    auth: GrpcAuthConfig = Field(default_factory=GrpcAuthConfig)
    # None: no rate limit.
    rate_limit: GrpcRateLimit | None = None
    # Largest message received or sent; a bigger one fails its call with RESOURCE_EXHAUSTED.
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=2**31 - 1)

    @model_validator(mode="after")
    def _secure_by_default(self) -> GrpcConfig:
        has_tokens = self.auth.tokens_file is not None or self.auth.tokens_env is not None
        if self.auth.mode == "tokens" and not has_tokens:
            raise _at(
                ("grpc", "auth"),
                "the gRPC services need bearer tokens unless authentication is turned off: "
                "set 'tokens_file' or 'tokens_env', or 'mode: none' (trusted networks only)",
            )
        if self.auth.mode == "none" and has_tokens:
            raise _at(("grpc", "auth"), "'mode: none' would ignore the tokens given")
        if self.rate_limit is not None and self.auth.mode == "none":
            raise _at(("grpc", "rate_limit"), "the limit is per token: it needs auth tokens")
        return self


class Config(_Model):
    """A whole Millstream configuration file."""

    version: Literal[1] = 1
    name: str = "millstream"
    nats: NatsConfig = Field(default_factory=NatsConfig)
    limits: Limits = Field(default_factory=Limits)
    dead_letter: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    streams: dict[str, StreamSpec] = Field(default_factory=dict)
    lanes: LanesConfig = Field(default_factory=LanesConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    # None: no gRPC server
    grpc: GrpcConfig | None = None
    units: dict[str, UnitTable] = Field(default_factory=dict)
    mappings: dict[str, MappingConfig]
    sources: list[SourceConfig] = Field(min_length=1)
    routes: list[RouteConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        _unique([s.name for s in self.sources], "sources")
        _unique([r.name for r in self.routes], "routes")
        self._check_streams()
        for i, src in enumerate(self.sources):
            if src.mapping not in self.mappings:
                raise _at(("sources", i, "mapping"), f"no mapping named {src.mapping!r}")
            if src.schema_ is not None and src.schema_file is not None:
                raise _at(("sources", i), "give 'schema' or 'schema_file', not both")
        for mname, m in self.mappings.items():
            for fname, f in m.fields.items():
                for table in (f.convert.table if f.convert else None, f.unit_name):
                    if table is not None and table not in self.units:
                        raise _at(("mappings", mname, "fields", fname), f"no unit table {table!r}")
        for i, r in enumerate(self.routes):
            types = r.match.types
            for t in types:
                if t not in CANONICAL_MODELS:
                    raise _at(("routes", i, "match", "types"), f"unknown canonical type {t!r}")
            # Route templates read the canonical entity: every type the route can see must
            # have the fields it names.
            reachable = {
                self.mappings[s.mapping].canonical
                for s in self.sources
                if any(subjects_overlap(a, b) for a in s.subjects for b in r.match.subjects)
            }
            candidates = sorted(reachable & set(types)) if types else sorted(reachable)
            for where, tmpl in (
                ("to", r.to),
                ("dedup.key", r.dedup.key if r.dedup else None),
                ("stale.key", r.stale.key if r.stale else None),
                ("stale.version", "{" + r.stale.version + "}" if r.stale else None),
            ):
                if tmpl is None:
                    continue
                for t in candidates:
                    try:
                        _check_canonical_refs(tmpl, set(CANONICAL_MODELS[t].model_fields), where)
                    except ValueError as e:
                        hint = "" if types else " (set match.types to narrow the route)"
                        raise _at(("routes", i), f"{e} of {t}{hint}") from None
        self._check_at_least_once()
        return self

    def _check_streams(self) -> None:
        dlq = self.dead_letter
        names = list(self.streams)
        for n, (name, spec) in enumerate(self.streams.items()):
            if not re.fullmatch(_STREAM_NAME, name):
                raise _at(
                    ("streams", name),
                    f"stream name {name!r} may only contain letters, digits, '_' and '-'",
                )
            if name == dlq.stream:
                raise _at(
                    ("streams", name),
                    f"{name} is the dead-letter stream, which Millstream provisions itself on "
                    f"{dlq.subjects[0]}; do not declare it",
                )
            for j, subj in enumerate(spec.subjects):
                if subjects_overlap(subj, dlq.subjects[0]):
                    raise _at(
                        ("streams", name, "subjects", j),
                        f"{subj} overlaps the dead-letter subjects {dlq.subjects[0]} "
                        f"(stream {dlq.stream}); JetStream lets one subject be in one stream",
                    )
                for other in names[n + 1 :]:
                    hit = next(
                        (o for o in self.streams[other].subjects if subjects_overlap(subj, o)), None
                    )
                    if hit is not None:
                        raise _at(
                            ("streams", name, "subjects", j),
                            f"{subj} overlaps {hit} of stream {other}; JetStream lets one "
                            "subject be in one stream",
                        )
        consumers: dict[tuple[str, str], str] = {}
        for i, src in enumerate(self.sources):
            js = src.jetstream
            if js is None:
                continue
            if js.stream not in self.streams:
                declared = ", ".join(self.streams) or "none"
                raise _at(
                    ("sources", i, "jetstream", "stream"),
                    f"stream {js.stream!r} is not declared under 'streams:' (declared: {declared})",
                )
            covering = self.streams[js.stream].subjects
            for j, subj in enumerate(src.subjects):
                if not any(subject_covered(subj, c) for c in covering):
                    raise _at(
                        ("sources", i, "subjects", j),
                        f"{subj} is not within stream {js.stream}'s subjects "
                        f"({', '.join(covering)}), so its consumer would never see it",
                    )
                for k in range(j):
                    if subjects_overlap(subj, src.subjects[k]):
                        raise _at(
                            ("sources", i, "subjects", j),
                            f"{subj} overlaps {src.subjects[k]}: a JetStream consumer's filter "
                            "subjects must not overlap",
                        )
            key = (js.stream, src.durable or "")
            if key in consumers:
                raise _at(
                    ("sources", i, "jetstream", "durable"),
                    f"source {consumers[key]!r} already reads stream {js.stream} through "
                    f"durable {key[1]!r}; two sources cannot share a consumer",
                )
            consumers[key] = src.name

    def _check_at_least_once(self) -> None:
        for i, r in enumerate(self.routes):
            if r.delivery != "at_least_once":
                continue
            # Any placeholder can render to any single token.
            dest = _PLACEHOLDER.sub("*", r.to)
            if any(subject_covered(dest, c) for s in self.streams.values() for c in s.subjects):
                continue
            raise _at(
                ("routes", i, "to"),
                f"at_least_once route {r.name!r} publishes to {r.to!r} ({dest}), which no "
                "declared stream stores, so there would be no PubAck to wait for: declare a "
                "stream covering it under 'streams:' (with 'manage: false' if it is managed "
                "elsewhere)",
            )


class _LocatedError(ValueError):
    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc


def _at(loc: tuple[str | int, ...], msg: str) -> _LocatedError:
    return _LocatedError(loc, msg)


def _unique(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise _at((where, i, "name"), f"duplicate name {n!r}")
        seen.add(n)


# --- loading -------------------------------------------------------------------------------


def _line_index(
    node: yaml.Node, path: tuple[str | int, ...], out: dict[tuple[Any, ...], int]
) -> None:
    """Remember the YAML line of every key path so errors can point at it."""
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[(*path, key)] = k.start_mark.line + 1
            _line_index(v, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, (*path, i), out)


def _nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_config(text, source=str(path), base_dir=path.parent)


def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate a YAML document; errors name `source`, the key path and the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f":{line}" if line is not None else ""
        raise ConfigError(
            f"{source}{where}: not valid YAML: {e}",
            (ConfigProblem((), f"not valid YAML: {e}", line),),
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        problems = []
        located = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _LocatedError):
                loc = ctx_err.loc
                msg = str(ctx_err)
            else:
                msg = err["msg"].removeprefix("Value error, ")
            line = _nearest_line(lines, loc)
            at = f"{source}:{line}" if line else source
            problems.append(f"{at}: {_fmt_loc(loc)}: {msg}")
            located.append(ConfigProblem(loc, msg, line))
        raise ConfigError("\n".join(problems), tuple(located)) from None
    if base_dir is not None:
        config = _resolve_schema_files(config, base_dir, source)
    return config


def _resolve_schema_files(config: Config, base_dir: Path, source: str) -> Config:
    sources = []
    for i, src in enumerate(config.sources):
        if src.schema_file is not None:
            p = src.schema_file if src.schema_file.is_absolute() else base_dir / src.schema_file
            try:
                schema = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ConfigError(f"{source}: sources[{i}].schema_file: {p}: {e}") from None
            src = src.model_copy(update={"schema_": schema, "schema_file": None})
        sources.append(src)
    return config.model_copy(update={"sources": sources})


# --- warnings ------------------------------------------------------------------------------


def config_warnings(config: Config) -> list[str]:
    """Legal but probably unintended: overlapping sources (the first one wins) and routes
    whose destinations a source reads (events would loop through the router)."""
    out = []
    for i, a in enumerate(config.sources):
        for b in config.sources[i + 1 :]:
            both = [(x, y) for x in a.subjects for y in b.subjects if subjects_overlap(x, y)]
            if both:
                x, y = both[0]
                out.append(
                    f"sources {a.name!r} and {b.name!r} overlap ({x} / {y}): "
                    f"{a.name!r} is listed first and takes those events"
                )
    for r in config.routes:
        # Any placeholder can render to any single token.
        dest = _PLACEHOLDER.sub("*", r.to)
        for src in config.sources:
            hit = next((x for x in src.subjects if subjects_overlap(dest, x)), None)
            if hit is not None:
                out.append(
                    f"route {r.name!r} publishes to {r.to!r}, which source {src.name!r} "
                    f"reads ({hit}): events would loop through the router"
                )
    return out


# --- compiling -----------------------------------------------------------------------------


def _split_path(path: str) -> list[str]:
    return path.split(".")


def compile_plan(config: Config) -> dict[str, Any]:
    """The JSON plan the Rust core compiles. Canonical JSON Schemas come from the pydantic
    models here, so the Python model stays the one source of truth."""
    mappings: dict[str, Any] = {}
    for name, m in config.mappings.items():
        model = CANONICAL_MODELS[m.canonical]
        fields = []
        for fname, f in m.fields.items():
            fields.append(
                {
                    "name": fname,
                    "path": _split_path(f.path) if f.path is not None else None,
                    "template": f.template,
                    "const": f.const,
                    "has_const": "const" in f.model_fields_set,
                    "type": f.type,
                    "format": f.format,
                    "many2one": f.many2one,
                    "map": f.map,
                    "map_default": f.map_default,
                    "has_map_default": "map_default" in f.model_fields_set,
                    "convert": None
                    if f.convert is None
                    else {
                        "table": f.convert.table,
                        "from_path": _split_path(f.convert.from_path)
                        if f.convert.from_path
                        else None,
                        "from_unit": f.convert.from_unit,
                    },
                    "unit_name": f.unit_name,
                    "default": f.default,
                    "has_default": "default" in f.model_fields_set,
                }
            )
        mappings[name] = {
            "canonical": m.canonical,
            "type": model.ce_type(),
            "dataschema": model.dataschema(),
            "schema": model.model_json_schema(mode="serialization"),
            "id": m.id,
            "subject": m.subject,
            "time": m.time,
            "partitionkey": m.partitionkey,
            "fields": fields,
        }
    plan: dict[str, Any] = {
        "name": config.name,
        "limits": config.limits.model_dump(),
        "dead_letter": config.dead_letter.model_dump(),
        "units": {
            t: {u: e.model_dump() for u, e in table.units.items()}
            for t, table in config.units.items()
        },
        "mappings": mappings,
        "sources": [
            {
                "name": s.name,
                "subjects": s.subjects,
                "profile": s.profile,
                "mapping": s.mapping,
                "schema": s.schema_,
                "source_uri": s.source_uri or f"/millstream/sources/{s.name}",
            }
            for s in config.sources
        ],
        "routes": [
            {
                "name": r.name,
                "subjects": r.match.subjects,
                "types": [CANONICAL_MODELS[t].ce_type() for t in r.match.types],
                "when": r.when,
                "lane": r.lane,
                "delivery": r.delivery,
                "to": r.to,
                "dedup": r.dedup.model_dump() if r.dedup else None,
                "stale": r.stale.model_dump() if r.stale else None,
            }
            for r in config.routes
        ],
    }
    body = json.dumps(plan, sort_keys=True, separators=(",", ":"))
    plan["version"] = hashlib.sha256(body.encode()).hexdigest()[:12]
    return plan


def compile_plane(config: Config, url: str, *, passthrough: bool = False) -> dict[str, Any]:
    """The runtime settings of the Rust data plane (`millstream._core.Plane`): where to
    connect, what to read, lane sizes, the publish window and state snapshots.

    Kept apart from the plan: the plan says what happens to an event, this says how the
    plane moves events, so changing a lane size does not change the plan version.
    `passthrough` switches every stage off (the relay baseline of the end-to-end benchmark).
    """
    inputs: list[dict[str, Any]] = []
    for s in config.sources:
        js = s.jetstream
        inputs.append(
            {
                "source": s.name,
                "subjects": list(s.subjects),
                # A durable consumer already spreads its messages over every instance
                # that pulls from it; a queue group is for core subscriptions only.
                "queue_group": config.nats.queue_group if js is None else None,
                "jetstream": None
                if js is None
                else {
                    "stream": js.stream,
                    "durable": s.durable,
                    "batch": js.batch,
                    "max_deliver": js.max_deliver,
                    "backoff_ms": list(js.backoff),
                },
            }
        )
    lanes = config.lanes
    return {
        "url": url,
        "client_name": config.nats.name,
        "inputs": inputs,
        "lanes": {
            name: {"queue": spec.queue, "batch": spec.batch, "objective_ms": spec.objective}
            for name, spec in (
                ("critical", lanes.critical),
                ("standard", lanes.standard),
                ("bulk", lanes.bulk),
            )
        },
        "publish_window": config.nats.publish_window,
        "state": {
            "bucket": config.state.bucket,
            "snapshot_every_ms": config.state.snapshot_every,
            "snapshot_bytes_per_s": config.state.snapshot_bytes_per_s,
        }
        if config.state.enabled
        else None,
        "passthrough": passthrough,
        "pretouch_bytes": config.memory.pretouch_mib << 20,
    }
