"""The Millstream pipeline for `examples/manufacturing.yaml`, in optimised pure Python.

This is what a careful team without Millstream would write, and the baseline the core's
performance budget is stated against (DESIGN.md: "at least 5x the same pipeline in optimised
pure Python (msgspec Structs, dicts) measured in the same run"). It is hand-written for the
example config, but it performs every stage the core performs, with the same results
(`tests/test_bench_baseline.py` proves it on every sample case and on a generated mix):

1. source selection by subject (NATS wildcards, compiled once, cached per subject);
2. decode within limits: size, UTF-8, depth, duplicate keys, NaN/Infinity, 64-bit integers;
3. source checks (the Odoo sources' JSON Schemas: required keys, `_model` and
   `picking_type_code` constants);
4. mapping: Odoo `false`, many2one, value maps, casts, unit tables, timestamps;
5. canonical validation: `msgspec.convert` into `msgspec.Struct` types whose constraints
   match the pydantic canonical models;
6. CloudEvents attributes, routing (subjects, types, predicates as Python lambdas equivalent
   to the CEL `when`), destination rendering with the `[A-Za-z0-9_-]{1,64}` token rule,
   stale guard (key -> newest version) and dedup (key -> time seen, window and capacity);
7. output bytes: `msgspec.json.encode` of the canonical Struct.

Speed-ups a careful engineer would take, and the core does not: subject -> handler, checked
subject tokens and formatted timestamp seconds are cached (bounded); the stale version comes
straight from the parsed `write_date` instead of re-parsing the RFC 3339 text.

Known differences, none of which the benchmark mix or the sample cases reach: dedup windows
are compared in milliseconds (the core rounds to 10 ms ticks); at capacity the dedup and stale
maps evict their oldest-inserted tenth (the core's dedup: the single oldest key; its stale
guard: the least recently seen tenth); Odoo
datetimes are parsed strictly as `YYYY-MM-DD HH:MM:SS[.f]` or `YYYY-MM-DD` (other spellings
may be judged differently); floats of 1e16 and more print as `1e16` (serde_json: `1e+16`); an event
with several bad fields is reported for the first in config order (the core: in name order)."""

from __future__ import annotations

import calendar
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from itertools import compress, islice
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NoReturn

import msgspec

from millstream.canonical import CANONICAL_MODELS
from millstream.config import Config, load_config

# --- outcomes -------------------------------------------------------------------------------

ROUTED: Final = "routed"
DUPLICATE: Final = "duplicate"
STALE: Final = "stale"
DEAD_LETTER: Final = "dead_letter"

Attributes = tuple[str, str, str, str, str | None, str | None, str | None]
"""CloudEvents attributes: id, source, type, dataschema, time, subject, partitionkey
(`specversion` is 1.0 and `datacontenttype` application/json for all)."""

Outcome = tuple[str, tuple[str, ...], bytes, str | None, str | None, Attributes | None]
"""One event's outcome, a plain tuple because it is built once per event:
(status, destination subjects, canonical JSON, reason, detail, CloudEvents attributes).
Routed, duplicate and stale outcomes carry data and attributes; dead letters a reason."""

STATUS, DESTINATIONS, DATA, REASON, DETAIL, ATTRIBUTES = range(6)


class Reject(Exception):
    """An event becomes a dead letter: `reason` is the core's reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _reject(reason: str, detail: str) -> NoReturn:
    raise Reject(reason, detail)


# --- canonical types: msgspec twins of millstream.canonical ----------------------------------
# Fields in alphabetical order (keyword-only), so `msgspec.json.encode` writes them in the same
# order as the core (serde_json maps are sorted). Timestamps are `str`: the mapping builds them
# as RFC 3339 itself, so re-validating their format would be work no careful engineer does.
# `tests/test_bench_baseline.py` checks these constraints against the pydantic models.

Identifier = Annotated[str, msgspec.Meta(min_length=1)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class _Canonical(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class MachineTelemetry(_Canonical, kw_only=True):
    line: str | None = None
    machine_id: Identifier
    metric: Identifier
    observed_at: str
    plant: Identifier
    quality: Literal["good", "uncertain", "bad"] = "good"
    unit: Identifier
    value: float


class InventoryMovement(_Canonical, kw_only=True):
    from_location: str | None = None
    moved_at: str | None = None
    movement_id: Identifier
    origin: str | None = None
    picking_id: str | None = None
    product_id: Identifier
    production_id: str | None = None
    quantity: NonNegative
    quantity_done: NonNegative | None = None
    reference: str | None = None
    status: Literal["planned", "waiting", "confirmed", "reserved", "done", "cancelled"]
    to_location: str | None = None
    uom: Identifier
    updated_at: str


class StockLevel(_Canonical, kw_only=True):
    level_id: str | None = None
    location_id: Identifier
    lot_id: str | None = None
    product_id: Identifier
    quantity: float
    reserved_quantity: float
    uom: str | None = None
    updated_at: str


class ProductionOrder(_Canonical, kw_only=True):
    bom_id: str | None = None
    finished_at: str | None = None
    name: Identifier
    order_id: Identifier
    origin: str | None = None
    planned_start: str | None = None
    product_id: Identifier
    quantity_planned: NonNegative
    quantity_producing: NonNegative
    status: Literal["draft", "confirmed", "in_progress", "to_close", "done", "cancelled"]
    uom: str | None = None
    updated_at: str


class SalesOrder(_Canonical, kw_only=True):
    amount_total: float
    commitment_date: str | None = None
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] | None = None
    customer_id: Identifier
    customer_ref: str | None = None
    name: Identifier
    order_id: Identifier
    ordered_at: str
    status: Literal["quotation", "quotation_sent", "confirmed", "cancelled"]
    updated_at: str


class GoodsReceipt(_Canonical, kw_only=True):
    destination_location: str | None = None
    name: Identifier
    origin: str | None = None
    receipt_id: Identifier
    received_at: str | None = None
    scheduled_at: str | None = None
    status: Literal["draft", "waiting", "confirmed", "ready", "received", "cancelled"]
    supplier_id: str | None = None
    updated_at: str


class QualityHold(_Canonical, kw_only=True):
    hold_id: Identifier
    lot_id: str | None = None
    name: Identifier
    priority: Annotated[int, msgspec.Meta(ge=0, le=3)]
    product_id: str | None = None
    stage: Identifier
    status: Literal["open", "closed"]
    team_id: str | None = None
    title: str | None = None
    updated_at: str


CANONICAL_STRUCTS: dict[str, type[_Canonical]] = {
    "machine_telemetry": MachineTelemetry,
    "inventory_movement": InventoryMovement,
    "stock_level": StockLevel,
    "production_order": ProductionOrder,
    "sales_order": SalesOrder,
    "goods_receipt": GoodsReceipt,
    "quality_hold": QualityHold,
}

# --- decode -----------------------------------------------------------------------------------

# Top-level values typed so msgspec checks the 64-bit integer range in C; anything it refuses
# goes to the exact (slow) classifier below, which also accepts what only it can tell apart
# (integers between 2^63 and 2^64 are valid for the core).
_I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_DECODER = msgspec.json.Decoder(
    dict[str, bool | _I64 | float | str | list[Any] | dict[str, Any] | None]
)
_CONTAINERS: Final = frozenset((list, dict))
_ENCODE = msgspec.json.Encoder().encode
_CONVERT = msgspec.convert
_ValidationError = msgspec.ValidationError


def decode(payload: bytes, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """Decode one payload into a JSON object within the limits, or raise `Reject` with the
    core's reason code.

    Duplicate keys: msgspec, like most fast parsers, silently keeps the last one, and re-parsing
    with the stdlib's `object_pairs_hook` costs ~7x the msgspec decode. So we count instead:
    when the payload has no escaped quote (`\\"`), every `"` delimits a key or a string value,
    so the number of `"` is exactly twice the keys plus string values *in the text*; the
    decoded tree has fewer of them if and only if some key was repeated (each repeat drops one
    key and the value it overwrote). Payloads with `\\"` (rare) take the exact stdlib path.
    """
    if len(payload) > max_bytes:
        _reject("too_large", f"{len(payload)} bytes, limit {max_bytes}")
    try:
        doc: dict[str, Any] = _DECODER.decode(payload)
    except _ValidationError:
        return _decode_exact(payload, max_depth)  # not an object, or a 64-bit+ integer
    except msgspec.DecodeError as e:
        _malformed(payload, str(e), max_depth)
        return _decode_exact(payload, max_depth)
    except UnicodeDecodeError as e:
        _reject("invalid_utf8", f"invalid UTF-8 at byte {e.start}")
    types = list(map(type, doc.values()))
    keys, strings = len(doc), types.count(str)
    if list in types or dict in types:
        for v in compress(doc.values(), map(_CONTAINERS.__contains__, types)):
            k, n = _count_tree(v, 2, max_depth)
            keys += k
            strings += n
    if payload.find(b"\\") >= 0 and payload.find(b'\\"') >= 0:
        _decode_exact(payload, max_depth)
    elif payload.count(b'"') != 2 * (keys + strings):
        _decode_exact(payload, max_depth)  # raises duplicate_key, naming the key
        _reject("duplicate_key", "duplicate key")  # pragma: no cover - counting is exact
    return doc


def _count_tree(root: list[Any] | dict[str, Any], depth: int, max_depth: int) -> tuple[int, int]:
    """Keys and string values in a decoded container at nesting level `depth` (the top-level
    object is level 1), refusing nesting deeper than `max_depth` containers."""
    keys = strings = 0
    stack: list[tuple[Any, int]] = [(root, depth)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            _reject("too_deep", "nesting deeper than the limit")
        values: Iterable[Any]
        if type(node) is dict:
            keys += len(node)
            values = node.values()
        else:
            values = node
        for v in values:
            t = type(v)
            if t is str:
                strings += 1
            elif t is dict or t is list:
                stack.append((v, depth + 1))
    return keys, strings


class _Dup(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Dup(k)
            seen.add(k)
    return d


def _checked_int(text: str) -> int:
    i = int(text)
    if not -(2**63) <= i <= 2**64 - 1:
        _reject("integer_overflow", f"integer {text} does not fit in 64 bits")
    return i


def _checked_float(text: str) -> float:
    f = float(text)
    if math.isinf(f):
        _reject("non_finite_number", "number out of range")
    return f


def _non_finite(text: str) -> NoReturn:
    _reject("non_finite_number", f"{text} is not a JSON number")


_NUMBER_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?(?:NaN|Infinity)|-?[0-9]+', re.ASCII)


def _scan_numbers(text: str) -> Reject | None:
    """The core's `scan_numbers`: NaN/Infinity or a >64-bit integer outside strings."""
    for m in _NUMBER_TOKEN.finditer(text):
        tok = m.group()
        if tok[0] == '"':
            continue
        end = m.end()
        if end < len(text) and text[end] in ".eE":
            continue
        bare = tok.lstrip("-")
        if bare.startswith(("NaN", "Infinity")):
            return Reject("non_finite_number", f"{tok} is not a JSON number")
        if not -(2**63) <= int(tok) <= 2**64 - 1:
            return Reject("integer_overflow", f"integer {tok} does not fit in 64 bits")
    return None


_DIGITS_TO_0 = bytes.maketrans(b"123456789", b"000000000")
_19_DIGITS = b"0" * 19  # the shortest integer that may not fit in 64 bits


def _malformed(payload: bytes, msg: str, max_depth: int) -> None:
    """Classify a payload msgspec found malformed from its message when that is unambiguous
    (the common case: a cut-off or garbled publish); return to take the exact path."""
    if (
        payload.find(b"\\") >= 0  # escapes: a bad \u escape has its own reason
        or payload.find(b"NaN") >= 0
        or payload.find(b"Infinity") >= 0
        or payload.translate(_DIGITS_TO_0).find(_19_DIGITS) >= 0  # maybe beyond 64 bits
        or payload.count(b"[") + payload.count(b"{") > max_depth  # maybe too deep
        or not payload.strip(b" \t\n\r\x0c")  # empty
    ):
        return
    if "trailing characters" in msg:
        _reject("trailing_data", msg)
    _reject("malformed_json", msg)


def _decode_exact(payload: bytes, max_depth: int) -> dict[str, Any]:
    """The slow, exact path: classify a payload msgspec refused (or may hide a duplicate key
    in) the way the core does."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        _reject("invalid_utf8", f"invalid UTF-8 at byte {e.start}")
    if not text.strip(" \t\n\r\x0c"):
        _reject("empty_document", "no JSON value")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_checked_int,
            parse_float=_checked_float,
            parse_constant=_non_finite,
        )
    except _Dup as e:
        _reject("duplicate_key", f"duplicate key {json.dumps(e.args[0])}")
    except RecursionError:
        _reject("too_deep", "nesting deeper than the limit")
    except json.JSONDecodeError as e:
        found = _scan_numbers(text)
        if found is not None:
            raise found from None
        if e.msg.startswith("Extra data"):
            _reject("trailing_data", e.msg)
        if "\\u" in e.msg or "escape" in e.msg:
            _reject("invalid_unicode_escape", e.msg)
        _reject("malformed_json", f"{e.msg} at line {e.lineno} column {e.colno}")
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        _reject("not_an_object", f"top level is {kind.get(type(value), 'a number')}")
    _count_tree(value, 1, max_depth)
    _check_surrogates(value)
    return value


def _check_surrogates(node: Any) -> None:
    # The stdlib accepts lone surrogate escapes ("\ud800"); JSON text and the core do not.
    if type(node) is str:
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            _reject("invalid_unicode_escape", "lone surrogate in a \\u escape")
    elif type(node) is dict:
        for k, v in node.items():
            _check_surrogates(k)
            _check_surrogates(v)
    elif type(node) is list:
        for v in node:
            _check_surrogates(v)


# --- mapping primitives (the core's `map::cast` and friends) -----------------------------------


def _float_text(x: float) -> str:
    """A float as serde_json prints it (shortest round-trip, `1e-7`, `1e+16`)."""
    s = _ENCODE(x).decode()
    if "e" in s and "e-" not in s:
        s = s.replace("e", "e+")
    return s


def _scalar_key(v: Any) -> str | None:
    """The text a value-map or unit-table lookup uses; None for arrays and objects."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is int:
        return str(v)
    if t is bool:
        return "true" if v else "false"
    if t is float:
        return _float_text(v)
    return None


def _as_str(v: Any, field: str) -> str:
    """Cast to string: numbers print as JSON numbers, booleans as true/false."""
    key = _scalar_key(v)
    if key is None:
        _reject("type_mismatch", f"{field}: {_shown(v)} is not a string")
    return key


def _shown(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    return s if len(s) <= 64 else s[:61] + "..."


def _as_number(v: Any, field: str) -> float:
    t = type(v)
    if t is float or t is int:
        return float(v)
    if t is str and "_" not in v:
        try:
            f = float(v)
        except ValueError:
            pass
        else:
            if math.isfinite(f):
                return f
    _reject("type_mismatch", f"{field}: {_shown(v)} is not a number")


def _many2one(v: Any) -> Any:
    """Odoo `[id, "name"]` -> id; anything else unchanged."""
    if type(v) is list and len(v) == 2 and type(v[0]) in (int, float) and type(v[1]) is str:
        return v[0]
    return v


def _odoo_str(v: Any, field: str) -> str | None:
    """An Odoo string field: `false`/null -> None, many2one -> its id, numbers -> text."""
    if v is None or v is False:
        return None
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is int:
        return str(v)
    return _as_str(_many2one(v), field)


def _convert(
    x: float,
    unit: Any,
    table: dict[Any, tuple[float, float, str]],
    field: str,
    *,
    odoo: bool = True,
) -> float:
    """`x * factor + offset` through a unit table; `unit` is the raw unit field."""
    if type(unit) is str or type(unit) is int:
        entry = table.get(unit)  # tables are keyed by str and by int (never bool/float)
    elif unit is None or (odoo and unit is False):
        _reject("unknown_unit", f"{field}: no unit given")
    else:
        key = _scalar_key(_many2one(unit) if odoo else unit)
        if key is None:
            _reject("unknown_unit", f"{field}: no unit given")
        entry = table.get(key)
    if entry is None:
        _reject("unknown_unit", f"{field}: unknown unit {_shown(_scalar_key(unit) or unit)}")
    y = x * entry[0] + entry[1]
    if not math.isfinite(y):
        _reject("type_mismatch", f"{field}: result is not a finite number")
    return y


def _unit_name(
    raw: Any, table: dict[Any, tuple[float, float, str]], field: str, *, odoo: bool = True
) -> str:
    """The canonical unit name of a raw unit value (already known non-empty)."""
    v = _many2one(raw) if odoo else raw
    _as_str(v, field)
    entry = table.get(v) if type(v) is str or type(v) is int else table.get(_scalar_key(v))
    if entry is None:
        _reject("unknown_unit", f"{field}: unknown unit {_shown(v)}")
    return entry[2]


def _odoo_qty(
    v: Any, unit: Any, table: dict[Any, tuple[float, float, str]], field: str
) -> float | None:
    if v is None or v is False:
        return None
    t = type(v)
    x = float(v) if t is float or t is int else _as_number(_many2one(v), field)
    return _convert(x, unit, table, field)


def _odoo_uom(raw: Any, table: dict[Any, tuple[float, float, str]], field: str) -> str | None:
    if raw is None or raw is False:
        return None
    return _unit_name(raw, table, field)


def _mapped(v: Any, table: dict[str, Any], field: str, default: Any = ...) -> Any:
    """A value map; without `default` an unknown value is a dead letter."""
    key = v if type(v) is str else _scalar_key(v)
    if key is None:
        _reject("type_mismatch", f"{field}: a value map needs a scalar")
    out = table.get(key, default)
    if out is ...:
        _reject("unmapped_value", f"{field}: no mapping for {json.dumps(key)}")
    return out


def _odoo_mapped_str(v: Any, table: dict[str, Any], field: str, default: Any = ...) -> str | None:
    if v is None or v is False:
        return None
    out = _mapped(_many2one(v), table, field, default)
    return None if out is None else _as_str(out, field)


# --- timestamps -------------------------------------------------------------------------------

_MAX_MS: Final = 253_402_300_800_000  # 10000-01-01: beyond it RFC 3339 has no year
_MS_SUFFIX: Final = ["Z"] + [f".{i:03d}Z" for i in range(1, 1000)]
_SECOND_TEXT: dict[int, str] = {}  # Unix second -> "YYYY-MM-DDTHH:MM:SS", bounded
_ODOO_SECONDS: dict[str, tuple[str, int]] = {}  # "YYYY-MM-DD HH:MM:SS" -> (RFC 3339 head, s)
_CACHE_MAX: Final = 100_000


def _second_text(s: int) -> str:
    text = _SECOND_TEXT.get(s)
    if text is None:
        if len(_SECOND_TEXT) >= _CACHE_MAX:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[s] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return text


def _fraction(ns: int) -> str:
    """chrono's SecondsFormat::AutoSi: no fraction, or 3, 6 or 9 digits, then Z."""
    if ns == 0:
        return "Z"
    if ns % 1_000_000 == 0:
        return f".{ns // 1_000_000:03d}Z"
    if ns % 1_000 == 0:
        return f".{ns // 1_000:06d}Z"
    return f".{ns:09d}Z"


def epoch_ms(v: Any, field: str) -> str:
    """A Unix-milliseconds timestamp (known non-empty) as RFC 3339 UTC."""
    if type(v) is int and 0 <= v < _MAX_MS:
        s, ms = divmod(v, 1000)
        return _second_text(s) + _MS_SUFFIX[ms]
    if type(v) is float or type(v) is int:
        ms_f = float(v)
    elif type(v) is str:
        try:
            ms_f = float(v.strip()) if "_" not in v else math.nan
        except ValueError:
            _reject("invalid_timestamp", f"{field}: {_shown(v)}: not an epoch number")
    else:
        _reject("invalid_timestamp", f"{field}: {_shown(v)}: not a timestamp")
    if not 0.0 <= ms_f < _MAX_MS:
        _reject("invalid_timestamp", f"{field}: {_shown(v)}: epoch time out of range")
    whole = math.floor(ms_f)
    sub_ns = math.floor((ms_f - whole) * 1e6 + 0.5) * 1000  # f64::round: half away from 0
    s, ns = divmod(int(whole) * 1_000_000 + sub_ns, 1_000_000_000)
    return _second_text(s) + _fraction(ns)


def odoo_datetime(v: Any, field: str) -> tuple[str, int]:
    """Odoo's naive UTC `YYYY-MM-DD HH:MM:SS[.ffffff]` (known non-empty) -> (RFC 3339 text,
    Unix microseconds). The microseconds are the stale guard's version."""
    if type(v) is not str:
        _reject("invalid_timestamp", f"{field}: {_shown(v)}: expected YYYY-MM-DD HH:MM:SS")
    hit = _ODOO_SECONDS.get(v[:19])
    if hit is None:
        hit = _odoo_seconds(v, field)
    n = len(v)
    if n == 19:
        return hit[0] + "Z", hit[1] * 1_000_000
    digits = v[20:]
    if v[19] != "." or not 0 < len(digits) <= 9 or not (digits.isascii() and digits.isdigit()):
        _reject("invalid_timestamp", f"{field}: {_shown(v)}: expected YYYY-MM-DD HH:MM:SS")
    if len(digits) == 6:  # Odoo's write_date: whole microseconds
        us = int(digits)
        if us % 1000:
            return hit[0] + "." + digits + "Z", hit[1] * 1_000_000 + us
        return hit[0] + _MS_SUFFIX[us // 1000], hit[1] * 1_000_000 + us
    ns = int(digits) * 10 ** (9 - len(digits))
    return hit[0] + _fraction(ns), hit[1] * 1_000_000 + ns // 1000


def _odoo_seconds(v: str, field: str) -> tuple[str, int]:
    if len(v) == 10:  # a bare date: midnight
        v = v + " 00:00:00"
    head = v[:19]
    ok = (
        len(head) == 19
        and head[4] == "-"
        and head[7] == "-"
        and head[10] == " "
        and head[13] == ":"
        and head[16] == ":"
    )
    digits = head[0:4] + head[5:7] + head[8:10] + head[11:13] + head[14:16] + head[17:19]
    if not (ok and digits.isascii() and digits.isdigit()):
        _reject("invalid_timestamp", f"{field}: {_shown(v)}: expected YYYY-MM-DD HH:MM:SS")
    try:
        t = time.struct_time(
            (
                int(head[0:4]),
                int(head[5:7]),
                int(head[8:10]),
                int(head[11:13]),
                int(head[14:16]),
                int(head[17:19]),
                0,
                0,
                0,
            )
        )
        secs = calendar.timegm(t)
        # timegm normalises out-of-range fields (Feb 30 -> Mar 2); a round trip catches them
        if time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs)) != head:
            raise ValueError(head)
    except (ValueError, OverflowError):
        _reject("invalid_timestamp", f"{field}: {_shown(v)}: expected YYYY-MM-DD HH:MM:SS")
    if len(_ODOO_SECONDS) >= _CACHE_MAX:
        _ODOO_SECONDS.clear()
    hit = _ODOO_SECONDS[head] = (head[:10] + "T" + head[11:], secs)
    return hit


def _odoo_ts(v: Any, field: str) -> str | None:
    if v is None or v is False:
        return None
    return odoo_datetime(_many2one(v), field)[0]


def _odoo_version(v: Any, field: str) -> tuple[str | None, int | None]:
    if v is None or v is False:
        return None, None
    text, us = odoo_datetime(_many2one(v), field)
    return text, us


# --- routing ----------------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII).fullmatch
_GOOD_TOKENS: set[str] = set()


def _tok(v: Any, field: str) -> str:
    """A rendered destination token: 1-64 of [A-Za-z0-9_-], or the event is a dead letter."""
    if type(v) is str and v in _GOOD_TOKENS:
        return v
    if v is None:
        _reject("subject_rejected", f"{field} is empty")
    text = _as_str(v, field)
    if _TOKEN(text) is None:
        _reject(
            "subject_rejected",
            f"{field} = {json.dumps(text[:80])} is not a safe subject token "
            "([A-Za-z0-9_-]{1,64})",
        )
    if len(_GOOD_TOKENS) >= _CACHE_MAX:
        _GOOD_TOKENS.clear()
    _GOOD_TOKENS.add(text)
    return text


def _key(v: Any, what: str, field: str) -> str:
    if v is None:
        _reject("key_missing", f"{what}: {field} is empty")
    return v if type(v) is str else _as_str(v, field)


class Dedup:
    """Keys seen within a window, bounded: key -> time seen (ms), in time order."""

    __slots__ = ("_capacity", "_last_sweep", "_seen", "_window")

    def __init__(self, window_ms: int, capacity: int) -> None:
        self._window = window_ms
        self._capacity = capacity
        self._seen: dict[str, int] = {}
        self._last_sweep: int | None = None

    def add(self, key: str, now_ms: int) -> bool:
        """Remember `key` as seen now; False (and nothing changes) if it was seen within the
        window, i.e. the event is a duplicate."""
        seen = self._seen
        last = seen.get(key)
        if last is not None and now_ms - last < self._window:
            return False
        if self._last_sweep is None:
            self._last_sweep = now_ms
        elif now_ms - self._last_sweep >= self._window:
            self._last_sweep = now_ms
            window = self._window
            seen = self._seen = {k: t for k, t in seen.items() if now_ms - t < window}
        if key in seen:
            del seen[key]  # re-inserted at the end: the dict stays in time order
        elif len(seen) >= self._capacity:
            for old in list(islice(seen, len(seen) // 10 + 1)):
                del seen[old]
        seen[key] = now_ms
        return True

    def __len__(self) -> int:
        return len(self._seen)


class StaleGuard:
    """Per entity key the newest version seen, bounded."""

    __slots__ = ("_capacity", "_newest")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._newest: dict[str, int] = {}

    def newer_than(self, key: str, version: int) -> int | None:
        newest = self._newest.get(key)
        return newest if newest is not None and newest > version else None

    def observe(self, key: str, version: int) -> None:
        newest = self._newest
        old = newest.get(key)
        if old is None:
            if len(newest) >= self._capacity:
                for k in list(islice(newest, len(newest) // 10 + 1)):
                    del newest[k]
            newest[key] = version
        elif version > old:
            newest[key] = version

    def __len__(self) -> int:
        return len(self._newest)


Entity = dict[str, Any]


class Route:
    """One route of the config, its templates written as Python."""

    __slots__ = ("dedup", "dedup_key", "name", "stale", "stale_key", "to", "types", "when")

    def __init__(
        self,
        name: str,
        types: frozenset[str],
        when: Callable[[Entity], bool] | None,
        to: Callable[[Entity], str],
        dedup: Dedup | None,
        dedup_key: Callable[[Entity], str] | None,
        stale: StaleGuard | None,
        stale_key: Callable[[Entity], str] | None,
    ) -> None:
        self.name = name
        self.types = types
        self.when = when
        self.to = to
        self.dedup = dedup
        self.dedup_key = dedup_key
        self.stale = stale
        self.stale_key = stale_key


def _id_key(field: str, what: str = "stale.key") -> Callable[[Entity], str]:
    return lambda e: _key(e[field], what, field)


def _dedup_at(field: str) -> Callable[[Entity], str]:
    return lambda e: (
        f"{_key(e[field], 'dedup.key', field)}@{_key(e['updated_at'], 'dedup.key', 'updated_at')}"
    )


# The example config's routes, as a careful engineer would hand-write them. Each entry:
# (to, when, CEL `when` it stands for, dedup key, stale key, Python to, Python when, ...).
_ROUTES: dict[
    str,
    tuple[
        str,
        str | None,
        str | None,
        str | None,
        Callable[[Entity], str],
        Callable[[Entity], bool] | None,
        Callable[[Entity], str] | None,
        Callable[[Entity], str] | None,
    ],
] = {
    "telemetry-history": (
        "mfg.telemetry.{plant}.{machine_id}.{metric}",
        None,
        "{plant}/{machine_id}/{metric}/{observed_at}",
        None,
        lambda e: (
            f"mfg.telemetry.{_tok(e['plant'], 'plant')}.{_tok(e['machine_id'], 'machine_id')}"
            f".{_tok(e['metric'], 'metric')}"
        ),
        None,
        lambda e: (
            f"{_key(e['plant'], 'dedup.key', 'plant')}/"
            f"{_key(e['machine_id'], 'dedup.key', 'machine_id')}/"
            f"{_key(e['metric'], 'dedup.key', 'metric')}/"
            f"{_key(e['observed_at'], 'dedup.key', 'observed_at')}"
        ),
        None,
    ),
    "inventory-movements": (
        "mfg.inventory.movement.{status}",
        None,
        "{movement_id}@{updated_at}",
        "{movement_id}",
        lambda e: f"mfg.inventory.movement.{_tok(e['status'], 'status')}",
        None,
        _dedup_at("movement_id"),
        _id_key("movement_id"),
    ),
    "stock-levels": (
        "mfg.inventory.level.{location_id}",
        None,
        "{level_id}@{updated_at}",
        "{level_id}",
        lambda e: f"mfg.inventory.level.{_tok(e['location_id'], 'location_id')}",
        None,
        _dedup_at("level_id"),
        _id_key("level_id"),
    ),
    "production-orders": (
        "mfg.production.order.{status}",
        None,
        "{order_id}@{updated_at}",
        "{order_id}",
        lambda e: f"mfg.production.order.{_tok(e['status'], 'status')}",
        None,
        _dedup_at("order_id"),
        _id_key("order_id"),
    ),
    "production-completed": (
        "mfg.production.completed",
        'status == "done"',
        "{order_id}@{updated_at}",
        "{order_id}",
        lambda e: "mfg.production.completed",
        lambda e: e["status"] == "done",
        _dedup_at("order_id"),
        _id_key("order_id"),
    ),
    "sales-orders": (
        "mfg.sales.order.{status}",
        None,
        "{order_id}@{updated_at}",
        "{order_id}",
        lambda e: f"mfg.sales.order.{_tok(e['status'], 'status')}",
        None,
        _dedup_at("order_id"),
        _id_key("order_id"),
    ),
    "goods-receipts": (
        "mfg.inbound.receipt.{status}",
        None,
        "{receipt_id}@{updated_at}",
        "{receipt_id}",
        lambda e: f"mfg.inbound.receipt.{_tok(e['status'], 'status')}",
        None,
        _dedup_at("receipt_id"),
        _id_key("receipt_id"),
    ),
    "quality-holds": (
        "mfg.quality.hold.{status}",
        None,
        "{hold_id}@{updated_at}",
        "{hold_id}",
        lambda e: f"mfg.quality.hold.{_tok(e['status'], 'status')}",
        None,
        _dedup_at("hold_id"),
        _id_key("hold_id"),
    ),
    "quality-alerts-urgent": (
        "mfg.alerts.quality",
        'priority >= 2 && status == "open"',
        "{hold_id}@{updated_at}",
        "{hold_id}",
        lambda e: "mfg.alerts.quality",
        lambda e: e["priority"] >= 2 and e["status"] == "open",
        _dedup_at("hold_id"),
        _id_key("hold_id"),
    ),
}


def _compile_subject(pattern: str) -> Callable[[list[str]], bool]:
    toks = pattern.split(".")

    def match(subject: list[str]) -> bool:
        for i, t in enumerate(toks):
            if i >= len(subject):
                return False
            if t == ">":
                return True
            if t != "*" and t != subject[i]:
                return False
        return len(subject) == len(toks)

    return match


# --- the pipeline -----------------------------------------------------------------------------

Table = dict[Any, tuple[float, float, str]]
Handler = Callable[[dict[str, Any]], tuple[Entity, int | None]]


class BaselineConfigError(ValueError):
    """The config is not the one this hand-written baseline implements."""


class Source:
    __slots__ = ("canonical", "ce_type", "dataschema", "handler", "name", "struct", "uri")

    def __init__(self, name: str, uri: str, canonical: str, handler: Handler) -> None:
        self.name = name
        self.uri = uri
        self.canonical = canonical
        model = CANONICAL_MODELS[canonical]
        self.ce_type = model.ce_type()
        self.dataschema = model.dataschema()
        self.struct = CANONICAL_STRUCTS[canonical]
        self.handler = handler


class Baseline:
    """The pipeline of `examples/manufacturing.yaml` with its dedup and stale state."""

    def __init__(self, config: Config) -> None:
        self._check(config)
        self.max_bytes = config.limits.max_bytes
        self.max_depth = config.limits.max_depth
        tables: dict[str, Table] = {}
        for name, t in config.units.items():
            table: Table = {}
            for unit, e in t.units.items():
                entry = (e.factor, e.offset, e.to)
                table[unit] = entry
                if unit.isdigit() and str(int(unit)) == unit:
                    table[int(unit)] = entry  # Odoo sends ids as JSON integers
            tables[name] = table
        self._odoo_uom = tables["odoo_uom"]
        self._mes_units = tables["mes_units"]
        maps = {
            m: {f: spec.map for f, spec in mc.fields.items()} for m, mc in config.mappings.items()
        }
        self._move_state = maps["odoo_stock_move"]["status"] or {}
        self._mo_state = maps["odoo_mrp_production"]["status"] or {}
        self._so_state = maps["odoo_sale_order"]["status"] or {}
        self._currency = maps["odoo_sale_order"]["currency"] or {}
        self._receipt_state = maps["odoo_receipt"]["status"] or {}
        self._qa_stage = maps["odoo_quality_alert"]["status"] or {}
        self._qa_stage_default = config.mappings["odoo_quality_alert"].fields["status"].map_default
        self._qa_priority = maps["odoo_quality_alert"]["priority"] or {}
        self._quality = maps["mes_telemetry"]["quality"] or {}
        self._quality_default = config.mappings["mes_telemetry"].fields["quality"].map_default
        handlers: dict[str, Handler] = {
            "odoo_stock_move": self._stock_move,
            "odoo_stock_quant": self._stock_quant,
            "odoo_mrp_production": self._mrp_production,
            "odoo_sale_order": self._sale_order,
            "odoo_receipt": self._receipt,
            "odoo_quality_alert": self._quality_alert,
            "mes_telemetry": self._telemetry,
        }
        self._sources = [
            (
                [_compile_subject(p) for p in s.subjects],
                Source(
                    s.name,
                    s.source_uri or f"/millstream/sources/{s.name}",
                    config.mappings[s.mapping].canonical,
                    handlers[s.mapping],
                ),
            )
            for s in config.sources
        ]
        self._routes: list[tuple[list[Callable[[list[str]], bool]], Route]] = []
        for r in config.routes:
            _, _, _, _, py_to, py_when, py_dedup, py_stale = _ROUTES[r.name]
            self._routes.append(
                (
                    [_compile_subject(p) for p in r.match.subjects],
                    Route(
                        r.name,
                        frozenset(CANONICAL_MODELS[t].ce_type() for t in r.match.types),
                        py_when,
                        py_to,
                        Dedup(r.dedup.window, r.dedup.capacity) if r.dedup else None,
                        py_dedup if r.dedup else None,
                        StaleGuard(r.stale.capacity) if r.stale else None,
                        py_stale if r.stale else None,
                    ),
                )
            )
        self._by_subject: dict[str, tuple[Source, tuple[Route, ...]] | None] = {}

    @staticmethod
    def _check(config: Config) -> None:
        """Refuse a config this hand-written pipeline does not implement."""
        want = {
            "odoo-stock-move": ("odoo_stock_move", "stock.move", None),
            "odoo-stock-quant": ("odoo_stock_quant", "stock.quant", None),
            "odoo-mrp-production": ("odoo_mrp_production", "mrp.production", None),
            "odoo-sale-order": ("odoo_sale_order", "sale.order", None),
            "odoo-receipt": ("odoo_receipt", "stock.picking", "incoming"),
            "odoo-quality-alert": ("odoo_quality_alert", "quality.alert", None),
            "mes-telemetry": ("mes_telemetry", None, None),
        }
        problems = []
        for s in config.sources:
            if s.name not in want or want[s.name][0] != s.mapping:
                problems.append(f"source {s.name}")
        for r in config.routes:
            spec = _ROUTES.get(r.name)
            if (
                spec is None
                or spec[0] != r.to
                or spec[1] != r.when
                or spec[2] != (r.dedup.key if r.dedup else None)
                or spec[3] != (r.stale.key if r.stale else None)
                or (r.stale is not None and r.stale.version != "updated_at")
            ):
                problems.append(f"route {r.name}")
        if problems:
            raise BaselineConfigError(
                "the pure-Python baseline is hand-written for examples/manufacturing.yaml; "
                f"it does not implement: {', '.join(problems)}"
            )

    @classmethod
    def from_config(cls, path: str | Path) -> Baseline:
        return cls(load_config(path))

    # -- per batch / per event ---------------------------------------------------------------

    def process(self, events: Iterable[tuple[str, bytes]], now_ms: int) -> list[Outcome]:
        """One outcome per event, in order."""
        one = self.process_one
        return [one(subject, payload, now_ms) for subject, payload in events]

    def _lookup(self, subject: str) -> tuple[Source, tuple[Route, ...]] | None:
        hit = self._by_subject.get(subject, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        toks = subject.split(".")
        found: tuple[Source, tuple[Route, ...]] | None = None
        for patterns, src in self._sources:
            if any(m(toks) for m in patterns):
                routes = tuple(
                    r
                    for patterns_r, r in self._routes
                    if any(m(toks) for m in patterns_r) and (not r.types or src.ce_type in r.types)
                )
                found = (src, routes)
                break
        if len(self._by_subject) >= _CACHE_MAX:
            self._by_subject.clear()
        self._by_subject[subject] = found
        return found

    def process_one(self, subject: str, payload: bytes, now_ms: int) -> Outcome:
        hit = self._by_subject.get(subject)
        if hit is None:
            hit = self._lookup(subject)
            if hit is None:
                return (
                    DEAD_LETTER,
                    (),
                    b"",
                    "unknown_source",
                    f"no source reads {subject!r}",
                    None,
                )
        src, routes = hit
        try:
            doc = decode(payload, self.max_bytes, self.max_depth)
            entity, version = src.handler(doc)
            try:
                canonical = _CONVERT(entity, src.struct)
            except _ValidationError as e:
                _reject("canonical_invalid", f"{src.canonical}: {e}")
            return self._route(src, routes, entity, canonical, version, now_ms)
        except Reject as r:
            return (DEAD_LETTER, (), b"", r.reason, r.detail, None)

    def _route(
        self,
        src: Source,
        routes: tuple[Route, ...],
        e: Entity,
        canonical: msgspec.Struct,
        version: int | None,
        now_ms: int,
    ) -> Outcome:
        canonical_type = src.canonical
        if canonical_type == "machine_telemetry":
            plant, machine = e["plant"], e["machine_id"]
            attrs: Attributes = (
                f"{plant}-{machine}-{e['metric']}-{e['observed_at']}",
                src.uri,
                src.ce_type,
                src.dataschema,
                e["observed_at"],
                machine,
                f"{plant}.{machine}",
            )
        else:
            attrs = self._odoo_attributes(src, e)
        if not routes:
            _reject("no_route", f"no route takes {canonical_type} from the subject")
        # Decide every route before touching dedup/stale state (as the core does).
        plans: list[tuple[Route, str, str | None, str | None]] = []
        stale_skip = False
        for r in routes:
            when = r.when
            if when is not None and not when(e):
                continue
            dest = r.to(e)
            skey = None
            if r.stale is not None and r.stale_key is not None:
                skey = r.stale_key(e)
                if version is None:
                    _reject("key_missing", "stale.version: updated_at is empty")
                if r.stale.newer_than(skey, version) is not None:
                    stale_skip = True
                    continue
            plans.append((r, dest, r.dedup_key(e) if r.dedup_key is not None else None, skey))
        if not plans and not stale_skip:
            _reject("no_route", f"no route takes {canonical_type} from the subject")
        dests: list[str] = []
        for r, dest, dkey, skey in plans:
            dedup = r.dedup
            if dedup is not None and dkey is not None and not dedup.add(dkey, now_ms):
                continue
            if r.stale is not None and skey is not None and version is not None:
                r.stale.observe(skey, version)
            dests.append(dest)
        status = ROUTED if dests else (STALE if stale_skip else DUPLICATE)
        return (status, tuple(dests), _ENCODE(canonical), None, None, attrs)

    _ODOO_IDS: Final = {
        "inventory_movement": ("odoo-stock.move", "movement_id", "movement_id", "movement_id"),
        "stock_level": ("odoo-stock.quant", "level_id", "product_id", "level_id"),
        "production_order": ("odoo-mrp.production", "order_id", "name", "order_id"),
        "sales_order": ("odoo-sale.order", "order_id", "name", "order_id"),
        "goods_receipt": ("odoo-stock.picking", "receipt_id", "name", "receipt_id"),
        "quality_hold": ("odoo-quality.alert", "hold_id", "name", "hold_id"),
    }

    def _odoo_attributes(self, src: Source, e: Entity) -> Attributes:
        prefix, id_field, subject_field, pk_field = self._ODOO_IDS[src.canonical]
        ident = e[id_field]
        if ident is None:
            _reject("key_missing", f"id: {id_field} is empty")
        updated = e["updated_at"]
        return (
            f"{prefix}-{ident}-{updated}",
            src.uri,
            src.ce_type,
            src.dataschema,
            updated,
            e[subject_field],
            e[pk_field],
        )

    # -- mappings (one per source; fields in the config's order, so the first failing field
    #    gives the same reason as in the core) -------------------------------------------------

    def _telemetry(self, d: dict[str, Any]) -> tuple[Entity, int | None]:
        g = d.get
        plant = g("plant")
        if plant is not None and type(plant) is not str:
            plant = _as_str(plant, "plant")
        machine = g("machine")
        if machine is not None and type(machine) is not str:
            machine = _as_str(machine, "machine_id")
        line = g("line")
        if line is not None and type(line) is not str:
            line = _as_str(line, "line")
        metric = g("metric")
        if metric is not None and type(metric) is not str:
            metric = _as_str(metric, "metric")
        raw_unit = g("unit")
        raw = g("value")
        value = None
        if raw is not None:
            x = raw if type(raw) is float else _as_number(raw, "value")
            value = _convert(x, raw_unit, self._mes_units, "value", odoo=False)
        unit = (
            None if raw_unit is None else _unit_name(raw_unit, self._mes_units, "unit", odoo=False)
        )
        q = g("quality")
        quality = (
            "good" if q is None else _mapped(q, self._quality, "quality", self._quality_default)
        )
        if quality is not None and type(quality) is not str:
            quality = _as_str(quality, "quality")
        ts = g("ts")
        observed = None if ts is None else epoch_ms(ts, "observed_at")
        return {
            "plant": plant,
            "machine_id": machine,
            "line": line,
            "metric": metric,
            "value": value,
            "unit": unit,
            "quality": "good" if quality is None else quality,
            "observed_at": observed,
        }, None

    @staticmethod
    def _odoo_source(d: dict[str, Any], model: str) -> None:
        # The source schema: required _model/_id/write_date, _model constant.
        if d.get("_model") != model or "_id" not in d or "write_date" not in d:
            _reject("schema_violation", f"/: body is not a {model} webhook with write_date")

    def _stock_move(self, d: dict[str, Any]) -> tuple[Entity, int | None]:
        self._odoo_source(d, "stock.move")
        g = d.get
        uoms = self._odoo_uom
        movement_id = _odoo_str(g("_id"), "movement_id")
        reference = _odoo_str(g("reference"), "reference")
        product_id = _odoo_str(g("product_id"), "product_id")
        uom_raw = g("product_uom")
        quantity = _odoo_qty(g("product_uom_qty"), uom_raw, uoms, "quantity")
        quantity_done = _odoo_qty(g("quantity"), uom_raw, uoms, "quantity_done")
        uom = _odoo_uom(uom_raw, uoms, "uom")
        from_location = _odoo_str(g("location_id"), "from_location")
        to_location = _odoo_str(g("location_dest_id"), "to_location")
        status = _odoo_mapped_str(g("state"), self._move_state, "status")
        origin = _odoo_str(g("origin"), "origin")
        picking_id = _odoo_str(g("picking_id"), "picking_id")
        production_id = _odoo_str(g("production_id"), "production_id")
        moved_at = _odoo_ts(g("date"), "moved_at")
        updated_at, version = _odoo_version(g("write_date"), "updated_at")
        return {
            "movement_id": movement_id,
            "reference": reference,
            "product_id": product_id,
            "quantity": quantity,
            "quantity_done": quantity_done,
            "uom": uom,
            "from_location": from_location,
            "to_location": to_location,
            "status": status,
            "origin": origin,
            "picking_id": picking_id,
            "production_id": production_id,
            "moved_at": moved_at,
            "updated_at": updated_at,
        }, version

    def _stock_quant(self, d: dict[str, Any]) -> tuple[Entity, int | None]:
        self._odoo_source(d, "stock.quant")
        g = d.get
        uoms = self._odoo_uom
        level_id = _odoo_str(g("_id"), "level_id")
        product_id = _odoo_str(g("product_id"), "product_id")
        location_id = _odoo_str(g("location_id"), "location_id")
        lot_id = _odoo_str(g("lot_id"), "lot_id")
        uom_raw = g("product_uom_id")
        quantity = _odoo_qty(g("quantity"), uom_raw, uoms, "quantity")
        reserved = _odoo_qty(g("reserved_quantity"), uom_raw, uoms, "reserved_quantity")
        uom = _odoo_uom(uom_raw, uoms, "uom")
        updated_at, version = _odoo_version(g("write_date"), "updated_at")
        return {
            "level_id": level_id,
            "product_id": product_id,
            "location_id": location_id,
            "lot_id": lot_id,
            "quantity": quantity,
            "reserved_quantity": reserved,
            "uom": uom,
            "updated_at": updated_at,
        }, version

    def _mrp_production(self, d: dict[str, Any]) -> tuple[Entity, int | None]:
        self._odoo_source(d, "mrp.production")
        g = d.get
        uoms = self._odoo_uom
        order_id = _odoo_str(g("_id"), "order_id")
        name = _odoo_str(g("name"), "name")
        product_id = _odoo_str(g("product_id"), "product_id")
        bom_id = _odoo_str(g("bom_id"), "bom_id")
        uom_raw = g("product_uom_id")
        planned = _odoo_qty(g("product_qty"), uom_raw, uoms, "quantity_planned")
        producing = _odoo_qty(g("qty_producing"), uom_raw, uoms, "quantity_producing")
        uom = _odoo_uom(uom_raw, uoms, "uom")
        status = _odoo_mapped_str(g("state"), self._mo_state, "status")
        planned_start = _odoo_ts(g("date_start"), "planned_start")
        finished_at = _odoo_ts(g("date_finished"), "finished_at")
        origin = _odoo_str(g("origin"), "origin")
        updated_at, version = _odoo_version(g("write_date"), "updated_at")
        return {
            "order_id": order_id,
            "name": name,
            "product_id": product_id,
            "bom_id": bom_id,
            "quantity_planned": planned,
            "quantity_producing": producing,
            "uom": uom,
            "status": status,
            "planned_start": planned_start,
            "finished_at": finished_at,
            "origin": origin,
            "updated_at": updated_at,
        }, version

    def _sale_order(self, d: dict[str, Any]) -> tuple[Entity, int | None]:
        self._odoo_source(d, "sale.order")
        g = d.get
        order_id = _odoo_str(g("_id"), "order_id")
        name = _odoo_str(g("name"), "name")
        customer_id = _odoo_str(g("partner_id"), "customer_id")
        status = _odoo_mapped_str(g("state"), self._so_state, "status")
        amount = g("amount_total")
        amount_total = (
            None
            if amount is None or amount is False
            else _as_number(_many2one(amount), "amount_total")
        )
        currency = _odoo_mapped_str(g("currency_id"), self._currency, "currency")
        ordered_at = _odoo_ts(g("date_order"), "ordered_at")
        commitment = _odoo_ts(g("commitment_date"), "commitment_date")
        customer_ref = _odoo_str(g("client_order_ref"), "customer_ref")
        updated_at, version = _odoo_version(g("write_date"), "updated_at")
        return {
            "order_id": order_id,
            "name": name,
            "customer_id": customer_id,
            "status": status,
            "amount_total": amount_total,
            "currency": currency,
            "ordered_at": ordered_at,
            "commitment_date": commitment,
            "customer_ref": customer_ref,
            "updated_at": updated_at,
        }, version

    def _receipt(self, d: dict[str, Any]) -> tuple[Entity, int | None]:
        self._odoo_source(d, "stock.picking")
        if d.get("picking_type_code") != "incoming":
            _reject("schema_violation", '/picking_type_code: "incoming" was expected')
        g = d.get
        receipt_id = _odoo_str(g("_id"), "receipt_id")
        name = _odoo_str(g("name"), "name")
        supplier_id = _odoo_str(g("partner_id"), "supplier_id")
        origin = _odoo_str(g("origin"), "origin")
        status = _odoo_mapped_str(g("state"), self._receipt_state, "status")
        scheduled_at = _odoo_ts(g("scheduled_date"), "scheduled_at")
        received_at = _odoo_ts(g("date_done"), "received_at")
        destination = _odoo_str(g("location_dest_id"), "destination_location")
        updated_at, version = _odoo_version(g("write_date"), "updated_at")
        return {
            "receipt_id": receipt_id,
            "name": name,
            "supplier_id": supplier_id,
            "origin": origin,
            "status": status,
            "scheduled_at": scheduled_at,
            "received_at": received_at,
            "destination_location": destination,
            "updated_at": updated_at,
        }, version

    def _quality_alert(self, d: dict[str, Any]) -> tuple[Entity, int | None]:
        self._odoo_source(d, "quality.alert")
        g = d.get
        hold_id = _odoo_str(g("_id"), "hold_id")
        name = _odoo_str(g("name"), "name")
        title = _odoo_str(g("title"), "title")
        product_id = _odoo_str(g("product_id"), "product_id")
        lot_id = _odoo_str(g("lot_id"), "lot_id")
        stage_raw = g("stage_id")
        stage = _odoo_str(stage_raw, "stage")
        status = _odoo_mapped_str(stage_raw, self._qa_stage, "status", self._qa_stage_default)
        priority = None
        p = g("priority")
        if p is not None and p is not False:
            mapped = _mapped(_many2one(p), self._qa_priority, "priority")
            priority = None if mapped is None else _as_int(mapped, "priority")
        team_id = _odoo_str(g("team_id"), "team_id")
        updated_at, version = _odoo_version(g("write_date"), "updated_at")
        return {
            "hold_id": hold_id,
            "name": name,
            "title": title,
            "product_id": product_id,
            "lot_id": lot_id,
            "stage": stage,
            "status": status,
            "priority": priority,
            "team_id": team_id,
            "updated_at": updated_at,
        }, version


def _as_int(v: Any, field: str) -> int:
    t = type(v)
    if t is int:
        return v  # type: ignore[no-any-return]
    if t is float and v == int(v) and abs(v) < 9.0e15:
        return int(v)
    if t is str:
        try:
            return int(v.strip())
        except ValueError:
            pass
    _reject("type_mismatch", f"{field}: {_shown(v)} is not an integer")
