"""A deterministic, realistic event mix for `examples/manufacturing.yaml`.

`generate(n, seed)` returns `n` `(subject, payload)` pairs as they would arrive on NATS:

- about 85% of the fresh events are MES telemetry samples (`mes.<plant>.<machine>.telemetry`,
  compact JSON, 200-600 bytes: the fields of `examples/events/telemetry_*.json` plus the
  gateway metadata a real OPC UA gateway adds), from ~440 sensor streams in five plants, each
  stream with a fixed unit (degC, degF, K, bar, psi, kPa, rpm);
- the rest are Odoo "Send Webhook Notification" bodies (`odoo.<model>`) for stock.move,
  stock.quant, mrp.production, sale.order, incoming stock.picking and quality.alert, shaped
  exactly like `examples/events/*.json`: `json.dumps(body, sort_keys=True)` of a
  `read(load=None)`, so `false` for empty, bare many2one ids (sale.order also sends
  `[id, "name"]` pairs, as in the examples), naive UTC datetimes, `write_date` with
  microseconds, non-ASCII escaped;
- about 5% are exact duplicates (a recent payload re-sent byte for byte), about 0.3% stale
  Odoo updates (an older write of a record arriving after a newer one), and about 1% bad
  events: malformed JSON, duplicate keys, NaN, an unknown unit, an unmapped Odoo state and
  subject-injection machine ids.

Every fresh event is distinct: a telemetry stream never repeats a timestamp and every Odoo
write of a record has a newer `write_date`, so only the duplicates are duplicates. Event `i`
"arrives" at `arrival_ms(i)` (10k events/s from 2026-11-27T08:15:00Z); pass that as `now_ms`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

Event = tuple[str, bytes]

T0_MS = 1_795_767_300_000
"""2026-11-27T08:15:00Z, the morning of the examples."""
EVENTS_PER_S = 10_000
"""Simulated arrival rate of the mix."""

TELEMETRY_SHARE = 0.85
DUPLICATE_SHARE = 0.05
STALE_SHARE = 0.003
BAD_SHARE = 0.01
BAD_KINDS = (
    "malformed_json",
    "duplicate_key",
    "nan",
    "unknown_unit",
    "unmapped_state",
    "subject_injection",
)
ODOO_MODELS = (
    # model, share of the Odoo events
    ("stock.move", 0.35),
    ("stock.quant", 0.25),
    ("mrp.production", 0.10),
    ("sale.order", 0.10),
    ("stock.picking", 0.10),
    ("quality.alert", 0.10),
)


def arrival_ms(index: int) -> int:
    """When event `index` of a generated mix arrives (Unix ms)."""
    return T0_MS + index * 1000 // EVENTS_PER_S


@dataclass(frozen=True)
class Mix:
    """A generated mix: the events and, per event, what the generator made it as."""

    events: list[Event]
    kinds: list[str]
    seed: int

    def counts(self) -> dict[str, int]:
        """Events per kind: `telemetry`, `odoo.<model>`, `duplicate`, `stale`, `bad.<kind>`."""
        return dict(sorted(Counter(self.kinds).items()))

    def summary(self) -> dict[str, Any]:
        """Counts by family (telemetry, odoo, duplicate, stale, bad) and by kind."""
        by_kind = self.counts()
        fam: Counter[str] = Counter()
        for kind, n in by_kind.items():
            fam[kind.split(".", 1)[0]] += n
        sizes = [len(p) for _, p in self.events]
        return {
            "seed": self.seed,
            "events": len(self.events),
            "bytes_mean": round(sum(sizes) / max(len(sizes), 1), 1),
            "telemetry": fam["telemetry"],
            "odoo": fam["odoo"],
            "duplicate": fam["duplicate"],
            "stale": fam["stale"],
            "bad": fam["bad"],
            "by_kind": by_kind,
        }


# --- MES telemetry -------------------------------------------------------------------------

# metric -> (quantity, low, high) in canonical units (degC, kPa, rpm)
_MACHINES: dict[str, list[tuple[str, str, float, float]]] = {
    "press": [
        ("oil_temp", "temp", 35.0, 70.0),
        ("hydraulic_pressure", "press", 8_000.0, 25_000.0),
        ("bearing_temp", "temp", 30.0, 85.0),
        ("main_motor_speed", "speed", 900.0, 1_800.0),
    ],
    "cnc": [
        ("spindle_speed", "speed", 2_000.0, 24_000.0),
        ("spindle_temp", "temp", 25.0, 60.0),
        ("coolant_pressure", "press", 200.0, 7_000.0),
        ("axis_x_motor_temp", "temp", 30.0, 75.0),
    ],
    "weld": [
        ("torch_temp", "temp", 20.0, 90.0),
        ("gas_pressure", "press", 100.0, 400.0),
        ("wire_feed_speed", "speed", 100.0, 1_500.0),
    ],
    "oven": [
        ("zone1_temp", "temp", 150.0, 900.0),
        ("zone2_temp", "temp", 150.0, 900.0),
        ("zone3_temp", "temp", 150.0, 900.0),
        ("chamber_pressure", "press", 95.0, 105.0),
    ],
    "comp": [
        ("outlet_pressure", "press", 600.0, 1_000.0),
        ("discharge_temp", "temp", 60.0, 110.0),
        ("motor_speed", "speed", 1_500.0, 3_600.0),
    ],
    "mold": [
        ("barrel_temp_zone1", "temp", 180.0, 300.0),
        ("barrel_temp_zone2", "temp", 180.0, 300.0),
        ("injection_pressure", "press", 50_000.0, 200_000.0),
        ("screw_speed", "speed", 20.0, 300.0),
    ],
}

# plant -> (lines, machines per type, temperature unit, pressure unit); "chi" is the US plant
_PLANTS: dict[str, tuple[list[str], dict[str, int], str, str]] = {
    "dus": (
        ["L1", "L2", "L3", "L4"],
        {"press": 8, "cnc": 12, "weld": 4, "oven": 2, "comp": 3},
        "degC",
        "bar",
    ),
    "ham": (["L1", "L2"], {"cnc": 16, "mold": 10, "comp": 2}, "degC", "kPa"),
    "muc": (["A", "B", "C"], {"press": 4, "weld": 12, "oven": 3, "comp": 2}, "degC", "bar"),
    "chi": (["L1", "L2", "L3"], {"press": 6, "cnc": 10, "mold": 6, "comp": 2}, "degF", "psi"),
    "brn": (["H1", "H2"], {"cnc": 8, "weld": 6, "oven": 2, "comp": 1}, "degC", "kPa"),
}

_DESCRIPTIONS = [
    "PT100 in tank return line",
    "redundant sensor B, calibrated 2026-09",
    "vibration-damped mount, replaced after MO WH/MO/00412",
    "read via OPC UA subscription, deadband 0.5%",
    "Siemens S7-1500 DB12.DBD40",
    "thermocouple type K, cold junction compensated",
    "4-20 mA loop, scaled in gateway",
    "Modbus TCP holding register 40021",
]
_BAD_UNITS = ["mbar", "inHg", "degR", "Pa", "mmH2O"]
_INJECTED_MACHINES = ["press.07", "*", ">", "cnc 12", "weld-01.>", "oven\r\nPUB x 1"]


def _to_unit(canonical: float, unit: str) -> float:
    """A canonical value (degC, kPa, rpm) expressed in the sensor's unit."""
    if unit == "degF":
        return canonical * 9.0 / 5.0 + 32.0
    if unit == "K":
        return canonical + 273.15
    if unit == "bar":
        return canonical / 100.0
    if unit == "psi":
        return canonical / 6.894757293168361
    return canonical


@dataclass
class _Stream:
    plant: str
    machine: str
    line: str | None
    metric: str
    unit: str
    low: float
    high: float
    decimals: int
    last_ts: int = 0
    sample_ms: int = 1000
    description: str = ""
    node: str = ""
    path: str = ""


# --- Odoo ----------------------------------------------------------------------------------

_PARTNERS = [
    (7, "Bergmann Maschinenbau GmbH"),
    (9, "Northwind Tools Inc."),
    (11, "Müller Präzisionstechnik GmbH"),
    (14, "Acme Steel Supply"),
    (18, "Škoda Components a.s."),
    (21, "Fabricación Ibérica S.L."),
    (26, "Nordic Fasteners AB"),
]
_QA_TITLES = [
    "Weld seam cracked at 90° bend",
    "Label misprint on outer carton",
    "Coolant contamination in line 2",
    "Maßabweichung an Bohrung Ø12",
    'Label "FRAGILE" missing on pallet',
    "Burr on flange face",
    "Surface porosity after powder coating",
    "Torque spec out of range on M8 bolts",
]
_ODOO_ACTIONS = {
    "stock.move": "Millstream: stock moves(#12)",
    "stock.quant": "Millstream: stock levels(#13)",
    "mrp.production": "Millstream: manufacturing orders(#14)",
    "sale.order": "Millstream: sales orders(#15)",
    "stock.picking": "Millstream: receipts(#16)",
    "quality.alert": "Millstream: quality alerts(#17)",
}
_WORKFLOWS = {
    "stock.move": ["draft", "confirmed", "partially_available", "assigned", "done"],
    "mrp.production": ["draft", "confirmed", "progress", "to_close", "done"],
    "sale.order": ["draft", "sent", "sale"],
    "stock.picking": ["draft", "waiting", "confirmed", "assigned", "done"],
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _odoo_dt(us: int) -> str:
    """Odoo's `str(datetime)` of a naive UTC datetime, from Unix microseconds: microseconds
    are printed when there are any."""
    t = _EPOCH + timedelta(microseconds=us)
    text = t.strftime("%Y-%m-%d %H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}"
    return text


def _whole_s(us: int) -> int:
    return us - us % 1_000_000


@dataclass
class _Record:
    model: str
    id: int
    fields: dict[str, Any]
    stage: int = 0
    last_write_us: int = 0


@dataclass
class _Generator:
    rng: random.Random
    streams: list[_Stream] = field(default_factory=list)
    records: dict[str, list[_Record]] = field(default_factory=dict)
    next_id: dict[str, int] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = self.rng
        for plant, (lines, machines, temp_unit, press_unit) in _PLANTS.items():
            for kind, count in machines.items():
                for n in range(1, count + 1):
                    machine = f"{kind}-{n:02d}"
                    line = rng.choice(lines) if rng.random() < 0.9 else None
                    for metric, quantity, low, high in _MACHINES[kind]:
                        if quantity == "temp":
                            # some sensors report Kelvin whatever the plant uses
                            unit = "K" if rng.random() < 0.15 else temp_unit
                        elif quantity == "press":
                            unit = "kPa" if rng.random() < 0.1 else press_unit
                        else:
                            unit = "rpm"
                        node_line = line or "NA"
                        self.streams.append(
                            _Stream(
                                plant=plant,
                                machine=machine,
                                line=line,
                                metric=metric,
                                unit=unit,
                                low=low,
                                high=high,
                                decimals=0 if unit == "rpm" else rng.choice([1, 2, 2, 3]),
                                sample_ms=rng.choice([100, 250, 500, 1000]),
                                description=rng.choice(_DESCRIPTIONS),
                                node=f"ns=2;s={plant.upper()}.{node_line}.{machine}.{metric}",
                                path=f"{plant.upper()}/{node_line}/{machine}/{metric}",
                            )
                        )
        self.next_id = {
            "stock.move": 5_000,
            "stock.quant": 900,
            "mrp.production": 100,
            "sale.order": 300,
            "stock.picking": 400,
            "quality.alert": 20,
        }
        self.records = {m: [] for m, _ in ODOO_MODELS}

    # -- telemetry --------------------------------------------------------------------------

    def telemetry_doc(self, now_ms: int) -> tuple[_Stream, dict[str, Any]]:
        rng = self.rng
        s = rng.choice(self.streams)
        ts = max(now_ms - rng.randint(5, 300), s.last_ts + 1)
        s.last_ts = ts
        canonical = rng.uniform(s.low, s.high)
        raw = round(_to_unit(canonical, s.unit), s.decimals)
        value: float | int = int(raw) if s.decimals == 0 and rng.random() < 0.5 else raw
        gw = f"gw-{s.plant}-{(s.line or 'x').lower()}"
        self.seq[gw] = self.seq.get(gw, 0) + 1
        doc: dict[str, Any] = {"plant": s.plant, "machine": s.machine}
        if s.line is not None:
            doc["line"] = s.line
        doc["metric"] = s.metric
        doc["value"] = value
        doc["unit"] = s.unit
        doc["ts"] = ts
        q = rng.random()
        status_code = 0
        if q < 0.93:
            doc["quality"] = "Good"
        elif q < 0.96:
            doc["quality"] = "Uncertain"
            status_code = 0x40000000
        elif q < 0.97:
            doc["quality"] = "Bad"
            status_code = 0x80000000
        elif q < 0.98:
            doc["quality"] = "UncertainLastUsableValue"
            status_code = 0x40900000
        # else: no quality at all (older gateway firmware), which means good
        doc["seq"] = self.seq[gw]
        doc["gw"] = gw
        doc["node"] = s.node
        doc["server_ts"] = ts + rng.randint(1, 20)
        doc["status_code"] = status_code
        # Optional metadata until the sample reaches a size drawn from 200-600 bytes.
        target = rng.randint(200, 600)
        size = len(json.dumps(doc, separators=(",", ":")))
        optional: list[tuple[str, Any]] = [
            ("path", s.path),
            ("sample_ms", s.sample_ms),
            ("shift", rng.choice("ABC")),
            ("order", f"WH/MO/{rng.randint(1, 999):05d}"),
            ("fw", rng.choice(["4.2.1", "4.3.0", "5.0.2"])),
            ("eu_range", [round(_to_unit(s.low, s.unit), 1), round(_to_unit(s.high, s.unit), 1)]),
            ("desc", s.description),
            ("asset", f"urn:acme:asset:{s.plant}:{s.machine}"),
            ("tags", ["oee", "energy"] if rng.random() < 0.5 else ["quality"]),
        ]
        rng.shuffle(optional)
        for key, val in optional:
            extra = len(json.dumps({key: val}, separators=(",", ":")))  # '{"k":v}' = ',"k":v'
            if size + extra > target:
                continue
            doc[key] = val
            size += extra
        if size < 200:
            pad = 200 - size - len(',"note":""')
            doc["note"] = (s.description + " " + s.node)[: max(pad, 0)].ljust(max(pad, 0), ".")
        return s, doc

    def telemetry(self, now_ms: int) -> Event:
        s, doc = self.telemetry_doc(now_ms)
        return f"mes.{s.plant}.{s.machine}.telemetry", _compact(doc)

    # -- Odoo -------------------------------------------------------------------------------

    def _write(self, rec: _Record, now_ms: int) -> str:
        """A new `write_date` for `rec`, strictly newer than the last one it sent."""
        # The bridge publishes 20-800 ms after the write. Most writes carry microseconds
        # (Odoo's write_date is Postgres now()); some are whole seconds (imports, crons).
        # Real writes are even microseconds, so a stale re-send (odd) can never equal one.
        rng = self.rng
        cand = max(now_ms * 1000 - rng.randint(20_000, 800_000), rec.last_write_us + 2)
        us = cand + (cand & 1)
        if rng.random() < 0.1 and (cand // 1_000_000) * 1_000_000 > rec.last_write_us:
            us = (cand // 1_000_000) * 1_000_000
        rec.last_write_us = us
        return _odoo_dt(us)

    def odoo(self, model: str, now_ms: int) -> Event:
        rng = self.rng
        pool = self.records[model]
        if not pool or rng.random() < 0.3:
            rec = self._create(model, now_ms)
            pool.append(rec)
            if len(pool) > 400:
                pool.pop(0)
        else:
            rec = rng.choice(pool[-200:])
            self._update(rec, now_ms)
        return _odoo_event(rec, self._write(rec, now_ms))

    def stale(self, now_ms: int) -> Event | None:
        """An older write of a record that already sent a newer one."""
        rng = self.rng
        models = [m for m, _ in ODOO_MODELS if self.records[m]]
        if not models:
            return None
        rec = rng.choice(self.records[rng.choice(models)][-200:])
        if rec.last_write_us == 0:
            return None
        old = (rec.last_write_us - rng.randint(1_000, 3_000_000)) | 1
        return _odoo_event(rec, _odoo_dt(old))

    def _create(self, model: str, now_ms: int) -> _Record:
        rng = self.rng
        rid = self.next_id[model]
        self.next_id[model] = rid + rng.randint(1, 3)
        now_us = now_ms * 1000
        f: dict[str, Any]
        if model == "stock.move":
            kind = rng.choice(["receipt", "delivery", "component", "finished"])
            uom = rng.choice([1, 1, 1, 2, 12, 13, 15])
            qty = {1: rng.randint(1, 500), 2: rng.randint(1, 50), 12: rng.randint(1, 2000)}.get(
                uom, rng.randint(10, 5000)
            )
            mo = rng.randint(1, 400)
            f = {
                "company_id": 1,
                "date": _odoo_dt(_whole_s(now_us + rng.randint(-8, 48) * 3_600_000_000)),
                "location_dest_id": {"receipt": 8, "delivery": 5, "component": 15, "finished": 8}[
                    kind
                ],
                "location_id": {"receipt": 4, "delivery": 8, "component": 8, "finished": 15}[kind],
                "origin": {
                    "receipt": f"P{rng.randint(1, 300):05d}",
                    "delivery": f"S{rng.randint(1, 900):05d}",
                    "component": f"WH/MO/{mo:05d}",
                    "finished": False if rng.random() < 0.3 else f"WH/MO/{mo:05d}",
                }[kind],
                "picking_id": rng.randint(100, 900) if kind in ("receipt", "delivery") else False,
                "product_id": rng.randint(40, 400),
                "product_uom": uom,
                "product_uom_qty": float(qty),
                "production_id": mo if kind == "finished" else False,
                "quantity": 0.0,
                "reference": {
                    "receipt": f"WH/IN/{rng.randint(1, 900):05d}",
                    "delivery": f"WH/OUT/{rng.randint(1, 900):05d}",
                    "component": f"WH/MO/{mo:05d}",
                    "finished": f"WH/MO/{mo:05d}",
                }[kind],
                "state": "draft",
            }
        elif model == "stock.quant":
            uom = rng.choice([1, 1, 12, 13, 15])
            on_hand = round(rng.uniform(-20, 5000), rng.choice([0, 1, 3]))
            f = {
                "location_id": rng.choice([8, 8, 8, 12, 14, 20]),
                "lot_id": rng.randint(1, 500) if rng.random() < 0.5 else False,
                "product_id": rng.randint(40, 400),
                "product_uom_id": uom,
                "quantity": on_hand,
                "reserved_quantity": round(max(on_hand, 0) * rng.random() * 0.5, 1),
            }
        elif model == "mrp.production":
            uom = rng.choice([1, 1, 2])
            planned = float(rng.randint(1, 50) * (1 if uom == 2 else 10))
            f = {
                "bom_id": rng.randint(1, 60) if rng.random() < 0.8 else False,
                "date_finished": _odoo_dt(_whole_s(now_us + rng.randint(2, 30) * 3_600_000_000)),
                "date_start": _odoo_dt(_whole_s(now_us + rng.randint(0, 24) * 3_600_000_000)),
                "name": f"WH/MO/{rid:05d}",
                "origin": f"S{rng.randint(1, 900):05d}" if rng.random() < 0.6 else False,
                "product_id": rng.randint(40, 400),
                "product_qty": planned,
                "product_uom_id": uom,
                "qty_producing": 0.0,
                "state": "draft",
            }
        elif model == "sale.order":
            pid, pname = rng.choice(_PARTNERS)
            cur = rng.choice([1, 1, 1, 2])
            pairs = rng.random() < 0.3
            f = {
                "amount_total": round(rng.uniform(100, 90_000), 2),
                "client_order_ref": f"PO-{rng.randint(1000, 9999)}-{rng.randint(1, 99)}"
                if rng.random() < 0.6
                else False,
                "commitment_date": _odoo_dt(_whole_s(now_us + rng.randint(48, 900) * 3_600_000_000))
                if rng.random() < 0.5
                else False,
                "currency_id": [cur, "EUR" if cur == 1 else "USD"] if pairs else cur,
                "date_order": _odoo_dt(_whole_s(now_us - rng.randint(0, 3_600) * 1_000_000)),
                "name": f"S{rid:05d}",
                "partner_id": [pid, pname] if pairs else pid,
                "state": "draft",
            }
        elif model == "stock.picking":
            pid, _ = rng.choice(_PARTNERS)
            n_moves = rng.randint(1, 6)
            first = rng.randint(4_000, 9_000)
            f = {
                "date_done": False,
                "location_dest_id": 8,
                "location_id": 4,
                "move_ids": list(range(first, first + n_moves)),
                "name": f"WH/IN/{rid:05d}",
                "origin": f"P{rng.randint(1, 300):05d}" if rng.random() < 0.9 else False,
                "partner_id": pid,
                "picking_type_code": "incoming",
                "scheduled_date": _odoo_dt(_whole_s(now_us + rng.randint(1, 96) * 3_600_000_000)),
                "state": "draft",
            }
        else:  # quality.alert
            f = {
                "lot_id": rng.randint(1, 500) if rng.random() < 0.5 else False,
                "name": f"QA{rid:05d}",
                "priority": rng.choice("0001123"),
                "product_id": rng.randint(40, 400) if rng.random() < 0.9 else False,
                "stage_id": 1,
                "team_id": rng.choice([1, 1, 2]),
                "title": rng.choice(_QA_TITLES),
            }
        return _Record(model=model, id=rid, fields=f)

    def _update(self, rec: _Record, now_ms: int) -> None:
        rng = self.rng
        f = rec.fields
        flow = _WORKFLOWS.get(rec.model)
        if flow is not None and rng.random() < 0.6:
            if rng.random() < 0.03:
                f["state"] = "cancel"
            else:
                rec.stage = min(rec.stage + 1, len(flow) - 1)
                f["state"] = flow[rec.stage]
        if rec.model == "stock.move":
            if f["state"] in ("partially_available", "assigned"):
                f["quantity"] = round(f["product_uom_qty"] * rng.choice([0.25, 0.5, 1.0]), 2)
            elif f["state"] == "done":
                f["quantity"] = f["product_uom_qty"]
                f["date"] = _odoo_dt(_whole_s(now_ms * 1000))
        elif rec.model == "stock.quant":
            f["quantity"] = round(f["quantity"] + rng.uniform(-50, 50), 1)
            f["reserved_quantity"] = round(max(f["quantity"], 0) * rng.random() * 0.5, 1)
        elif rec.model == "mrp.production":
            if f["state"] in ("progress", "to_close", "done"):
                f["qty_producing"] = min(
                    f["product_qty"], f["qty_producing"] + f["product_qty"] / 4
                )
            if f["state"] == "done":
                f["qty_producing"] = f["product_qty"]
                f["date_finished"] = _odoo_dt(_whole_s(now_ms * 1000))
        elif rec.model == "sale.order":
            f["amount_total"] = round(f["amount_total"] * rng.uniform(0.9, 1.1), 2)
        elif rec.model == "stock.picking":
            if f["state"] == "done" and f["date_done"] is False:
                f["date_done"] = _odoo_dt(_whole_s(now_ms * 1000))
        elif rec.model == "quality.alert":
            f["stage_id"] = min(f["stage_id"] + rng.choice([0, 1, 1]), 4)
            f["priority"] = rng.choice("0123")

    # -- bad events -------------------------------------------------------------------------

    def bad(self, kind: str, now_ms: int) -> Event:
        rng = self.rng
        if kind == "unmapped_state":
            rec = self._create("stock.move", now_ms)
            rec.fields["state"] = rng.choice(["quarantine", "blocked"])  # custom-module states
            return _odoo_event(rec, self._write(rec, now_ms))
        s, doc = self.telemetry_doc(now_ms)
        subject = f"mes.{s.plant}.{s.machine}.telemetry"
        if kind == "malformed_json":
            if rng.random() < 0.2:
                return subject, b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            raw = _compact(doc)
            return subject, raw[: rng.randint(1, len(raw) - 1)]  # a cut-off publish
        if kind == "duplicate_key":
            # a gateway bug: the scaled value appended after the raw one
            raw = _compact(doc)
            return subject, raw[:-1] + f',"value":{doc["value"]}}}'.encode()
        if kind == "nan":
            doc["value"] = float("nan")  # what Python's json module writes for a failed read
            return subject, json.dumps(doc, separators=(",", ":")).encode()
        if kind == "unknown_unit":
            doc["unit"] = rng.choice(_BAD_UNITS)
            return subject, _compact(doc)
        if kind == "subject_injection":
            doc["machine"] = rng.choice(_INJECTED_MACHINES)
            return subject, _compact(doc)
        raise ValueError(f"unknown bad kind {kind!r}")


def _compact(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _odoo_event(rec: _Record, write_date: str) -> Event:
    body = {
        "_action": _ODOO_ACTIONS[rec.model],
        "_id": rec.id,
        "_model": rec.model,
        "id": rec.id,
        **rec.fields,
        "write_date": write_date,
    }
    return "odoo." + rec.model.replace(".", "_"), json.dumps(body, sort_keys=True).encode()


def _odoo_model(rng: random.Random) -> str:
    r = rng.random()
    for model, share in ODOO_MODELS:
        if r < share:
            return model
        r -= share
    return ODOO_MODELS[-1][0]


def generate_mix(n: int, seed: int = 20261127) -> Mix:
    """`n` events of the realistic mix, with what each one was generated as."""
    rng = random.Random(seed)
    g = _Generator(rng)
    events: list[Event] = []
    kinds: list[str] = []
    recent: list[int] = []  # indices of recent fresh events, for re-sending
    for i in range(n):
        now = arrival_ms(i)
        r = rng.random()
        ev: Event | None = None
        if r < BAD_SHARE:
            kind = rng.choice(BAD_KINDS)
            ev, label = g.bad(kind, now), f"bad.{kind}"
        elif r < BAD_SHARE + DUPLICATE_SHARE and recent:
            # re-sent within the last ~2000 events (0.2 s): a bridge or gateway retry
            ev, label = events[rng.choice(recent)], "duplicate"
        elif r < BAD_SHARE + DUPLICATE_SHARE + STALE_SHARE:
            ev, label = g.stale(now), "stale"
        if ev is None:
            if rng.random() < TELEMETRY_SHARE:
                ev, label = g.telemetry(now), "telemetry"
            else:
                model = _odoo_model(rng)
                ev, label = g.odoo(model, now), f"odoo.{model}"
            recent.append(i)
            if len(recent) > 2000:
                del recent[:1000]
        events.append(ev)
        kinds.append(label)
    return Mix(events=events, kinds=kinds, seed=seed)


def generate(n: int, seed: int = 20261127) -> list[Event]:
    """`n` `(subject, payload)` pairs of the realistic mix (see the module docstring)."""
    return generate_mix(n, seed).events


# --- single-stage batches for the stage benchmarks -------------------------------------------


def telemetry(n: int, seed: int = 1) -> list[Event]:
    """`n` distinct, valid telemetry samples: every one is routed."""
    g = _Generator(random.Random(seed))
    return [g.telemetry(arrival_ms(i)) for i in range(n)]


def telemetry_without_value(n: int, seed: int = 2) -> list[Event]:
    """`n` telemetry samples without a value: decoded and mapped, then rejected by the
    canonical schema (`canonical_invalid`), so nothing is routed."""
    g = _Generator(random.Random(seed))
    out = []
    for i in range(n):
        s, doc = g.telemetry_doc(arrival_ms(i))
        del doc["value"]
        out.append((f"mes.{s.plant}.{s.machine}.telemetry", _compact(doc)))
    return out


def malformed(n: int, seed: int = 3) -> list[Event]:
    """`n` telemetry publishes cut off mid-way: rejected while decoding (`malformed_json`)."""
    g = _Generator(random.Random(seed))
    out = []
    for i in range(n):
        subject, raw = g.telemetry(arrival_ms(i))
        out.append((subject, raw[: len(raw) * 3 // 4]))
    return out


def outgoing_pickings(n: int, seed: int = 4) -> list[Event]:
    """`n` delivery orders published on the receipts subject: decoded, then rejected by the
    source schema (`schema_violation`: picking_type_code is not `incoming`)."""
    g = _Generator(random.Random(seed))
    out = []
    for i in range(n):
        rec = g._create("stock.picking", arrival_ms(i))
        rec.fields["picking_type_code"] = "outgoing"
        rec.fields["name"] = rec.fields["name"].replace("/IN/", "/OUT/")
        out.append(_odoo_event(rec, g._write(rec, arrival_ms(i))))
    return out


def odoo(n: int, seed: int = 5) -> list[Event]:
    """`n` Odoo webhooks of every model, with ~5% re-sent duplicates and ~2% stale writes, so
    the dedup and stale guards both work."""
    rng = random.Random(seed)
    g = _Generator(rng)
    out: list[Event] = []
    for i in range(n):
        now = arrival_ms(i)
        r = rng.random()
        ev: Event | None = None
        if r < 0.05 and out:
            ev = out[rng.randrange(max(0, len(out) - 500), len(out))]
        elif r < 0.07:
            ev = g.stale(now)
        out.append(ev if ev is not None else g.odoo(_odoo_model(rng), now))
    return out


def unique_telemetry(n: int) -> list[Event]:
    """`n` distinct minimal telemetry samples, cheap to make in bulk (for filling a dedup
    cache): 200 machines x 4 metrics, one sample per stream every millisecond."""
    metrics = ("oil_temp", "bearing_temp", "spindle_temp", "motor_temp")
    out = []
    for i in range(n):
        machine = f"m-{i % 200:03d}"
        metric = metrics[i // 200 % 4]
        ts = T0_MS + i // 800
        subject = f"mes.dus.{machine}.telemetry"
        out.append(
            (
                subject,
                b'{"plant":"dus","machine":"%s","metric":"%s","value":%d.5,"unit":"degC",'
                b'"ts":%d}' % (machine.encode(), metric.encode(), i % 90, ts),
            )
        )
    return out
