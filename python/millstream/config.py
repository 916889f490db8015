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
from millstream.errors import ConfigError

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


SubjectPattern = Annotated[str, BeforeValidator(lambda v: _check_subject_pattern(str(v)))]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Model):
    """Decode limits; anything over them is a dead letter, never a crash."""

    max_bytes: int = Field(65_536, ge=2, le=16 * 1024 * 1024)
    max_depth: int = Field(32, ge=1, le=128)


class DeadLetterConfig(_Model):
    """Where rejected events go (decision 7). The subject is `{subject_prefix}.{reason}`."""

    subject_prefix: str = "millstream.dlq"
    stream: str = Field("MILLSTREAM_DLQ", pattern=r"^[A-Za-z0-9_-]+$")


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


class SourceConfig(_Model):
    """Where events come from and how they are read."""

    name: str = Field(pattern=_NAME)
    subjects: list[SubjectPattern] = Field(min_length=1)
    profile: Profile = "json"
    mapping: str
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    schema_file: Path | None = None
    source_uri: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RouteMatch(_Model):
    subjects: list[SubjectPattern] = Field(default_factory=lambda: [">"], min_length=1)
    types: list[str] = Field(default_factory=list)


class DedupConfig(_Model):
    """Drop an event whose key was seen within `window` (decision 6)."""

    key: str
    window: DurationMs = 600_000
    capacity: int = Field(1_000_000, ge=1, le=100_000_000)


class StaleConfig(_Model):
    """Drop an update whose `version` is older than the newest seen for the same `key`."""

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
    url: str | None = None


class Config(_Model):
    """A whole Millstream configuration file."""

    version: Literal[1] = 1
    name: str = "millstream"
    nats: NatsConfig = Field(default_factory=NatsConfig)
    limits: Limits = Field(default_factory=Limits)
    dead_letter: DeadLetterConfig = Field(default_factory=DeadLetterConfig)
    units: dict[str, UnitTable] = Field(default_factory=dict)
    mappings: dict[str, MappingConfig]
    sources: list[SourceConfig] = Field(min_length=1)
    routes: list[RouteConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        _unique([s.name for s in self.sources], "sources")
        _unique([r.name for r in self.routes], "routes")
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
        return self


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
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{where}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        problems = []
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
        raise ConfigError("\n".join(problems)) from None
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
