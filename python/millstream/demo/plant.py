"""A simulated plant for the demo: machine telemetry on core NATS, Odoo webhooks on JetStream.

Two plants (`dus`, `ham`), twenty machines (presses, CNCs, welders, ovens, compressors,
moulding machines) sampling temperature, pressure and speed in the units their sensors report
(degC, degF, K, bar, kPa, psi, rpm), published as `mes.<plant>.<machine>.telemetry` with
`nc.publish`; and the Odoo "Send Webhook Notification" bodies of stock.move, stock.quant,
mrp.production, sale.order, incoming stock.picking and quality.alert, published with
`js.publish_async` (PubAck awaited) to `odoo.<model with "." replaced by "_">`, the way the
HTTP -> NATS bridge of `examples/manufacturing.yaml` does. The payloads come from
`millstream.bench.gen`, so they are the same realistic shapes the benchmarks use.

Mixed in, per stream and by share:

- duplicates: a body sent again byte for byte (a gateway or bridge retry). For Odoo it is the
  latest write of a recent record: an older write sent again is out of order, not a duplicate,
  and the stale guard (rightly) reports it as stale;
- out of order (Odoo only): an older `write_date` of a record sent after a newer one. Telemetry
  has no stale guard (a late sample is still true), so it gets none;
- bad: malformed JSON, a missing required field, an unknown state, an unknown uom id, a value
  that would inject subject tokens, ... each with the dead-letter reason the router must give
  it (`PlantEvent.reason`, summed in `PlantReport.expected_reasons`).

Rates are open loop: events are due at `i / rate` from the start whatever the server does; a
sender that falls behind sends its backlog in bigger batches and reports how far behind it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import nats.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from millstream.bench.gen import (
    ODOO_MODELS,
    _compact,
    _Generator,
    _odoo_event,
    _odoo_model,
    _Stream,
    _to_unit,
)
from millstream.errors import MillstreamError

PLANTS = ("dus", "ham")
MACHINES_PER_PLANT = 10
# The machines of examples/events, so the demo's output can be compared with the samples.
_SHOWCASE = {"dus": ("press-07",), "ham": ("cnc-12",)}
_EXAMPLE_UNITS = {
    ("dus", "press-07", "oil_temp"): "degF",
    ("dus", "press-07", "hydraulic_pressure"): "psi",
    ("dus", "press-07", "bearing_temp"): "K",
}
_TEMP_UNITS = ("degC", "degF", "K")
_PRESSURE_UNITS = ("bar", "kPa", "psi")

# bad kind -> the dead-letter reason examples/manufacturing.yaml gives it
TELEMETRY_BAD: dict[str, str] = {
    "malformed_json": "malformed_json",  # a publish cut off mid-way, or a proxy's error page
    "missing_field": "canonical_invalid",  # no value: the canonical schema requires one
    "unknown_unit": "unknown_unit",  # mbar, inHg, ...: not in the mes_units table
    "subject_injection": "subject_rejected",  # machine "press.07", "*", ">" ...
    "duplicate_key": "duplicate_key",
    "non_finite": "non_finite_number",  # NaN, as Python's json writes a failed read
}
ERP_BAD: dict[str, str] = {
    "malformed_json": "malformed_json",
    "missing_field": "schema_violation",  # write_date not selected in the webhook action
    "unknown_state": "unmapped_value",  # a state added by a custom module
    "unknown_uom": "unknown_unit",  # a uom.uom created after the unit table was written
    # stock-levels routes to mfg.inventory.level.{location_id}: a location sent as a name
    # or a dotted code would add or wildcard subject tokens
    "subject_injection": "subject_rejected",
}
_INJECTED_LOCATIONS = ("WH/Stock", "a.b", "*", ">", "8.1")
_UNKNOWN_UOMS = (27, 31, 99)
_MODEL_BY_SUBJECT = {"odoo." + m.replace(".", "_"): m for m, _ in ODOO_MODELS}
ERP_SUBJECTS = tuple(_MODEL_BY_SUBJECT)

_TICK_S = 0.005
_MAX_BATCH = 5_000
_FLUSH_EVERY_S = 0.5
_PROGRESS_EVERY_S = 0.25


class PlantError(MillstreamError):
    """The simulated plant cannot publish (no JetStream stream captures the Odoo subjects)."""


class PlantEvent(NamedTuple):
    subject: str
    payload: bytes
    kind: str
    """`fresh`, `duplicate`, `out_of_order` or `bad`."""
    model: str | None = None
    """The Odoo model; None for telemetry."""
    bad_kind: str | None = None
    reason: str | None = None
    """For a bad event, the dead-letter reason the router must give it."""


class Plant:
    """The event source behind `simulate`, without NATS: `telemetry(now_ms)` and
    `erp(now_ms)` each return the next event of their stream. Each stream has its own random
    generator, so the sequence of kinds and records is the same for the same seed whatever
    the interleaving of the two streams."""

    def __init__(
        self,
        *,
        seed: int = 7,
        duplicate_share: float = 0.05,
        out_of_order_share: float = 0.03,
        bad_share: float = 0.01,
    ) -> None:
        for name, share in (
            ("duplicate_share", duplicate_share),
            ("out_of_order_share", out_of_order_share),
            ("bad_share", bad_share),
        ):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {share}")
        if duplicate_share + out_of_order_share + bad_share > 1.0:
            raise ValueError("duplicate, out-of-order and bad shares add up to more than 1")
        self.duplicate_share = duplicate_share
        self.out_of_order_share = out_of_order_share
        self.bad_share = bad_share
        self._tel = _Generator(random.Random(seed))
        self._erp = _Generator(random.Random(seed + 1))
        self._tel.streams = _plant_streams(self._tel.streams, random.Random(seed + 2))
        # recent fresh telemetry, well inside the telemetry route's 2 min dedup window
        self._recent_samples: deque[tuple[str, bytes]] = deque(maxlen=2_000)
        self._last_doc: dict[int, dict[str, Any]] = {}
        # (model, id) -> the latest write sent, for duplicates that are not also stale
        self._latest: OrderedDict[tuple[str, int], tuple[str, bytes]] = OrderedDict()
        self._recent_records: deque[tuple[str, int]] = deque(maxlen=500)

    @property
    def machines(self) -> list[str]:
        """`plant/machine` of every simulated machine."""
        return sorted({f"{s.plant}/{s.machine}" for s in self._tel.streams})

    @property
    def sensors(self) -> int:
        return len(self._tel.streams)

    def telemetry(self, now_ms: int) -> PlantEvent:
        g = self._tel
        r = g.rng.random()
        if r < self.bad_share:
            kind = g.rng.choice(list(TELEMETRY_BAD))
            subject, payload = self._telemetry_bad(kind, now_ms)
            return PlantEvent(subject, payload, "bad", None, kind, TELEMETRY_BAD[kind])
        if r < self.bad_share + self.duplicate_share and self._recent_samples:
            subject, payload = g.rng.choice(self._recent_samples)
            return PlantEvent(subject, payload, "duplicate")
        subject, payload = self._fresh_sample(now_ms)
        self._recent_samples.append((subject, payload))
        return PlantEvent(subject, payload, "fresh")

    def _fresh_sample(self, now_ms: int) -> tuple[str, bytes]:
        # The generator's samples cost ~60 µs each (it sizes the gateway metadata key by
        # key), which caps one event loop near 15k/s. A sensor's metadata hardly changes
        # between samples, so most samples reuse the sensor's last document with a new
        # reading, timestamp and sequence number (~4x cheaper); 1 in 16 is drawn afresh.
        g = self._tel
        rng = g.rng
        s = rng.choice(g.streams)
        doc = self._last_doc.get(id(s))
        if doc is None or rng.random() < 1 / 16:
            s, doc = g.telemetry_doc(now_ms)
            self._last_doc[id(s)] = doc
        else:
            ts = max(now_ms - rng.randint(5, 300), s.last_ts + 1)
            s.last_ts = ts
            raw = round(_to_unit(rng.uniform(s.low, s.high), s.unit), s.decimals)
            gw = doc["gw"]
            g.seq[gw] = g.seq.get(gw, 0) + 1
            doc = dict(doc)
            doc["value"] = int(raw) if s.decimals == 0 and rng.random() < 0.5 else raw
            doc["ts"] = ts
            doc["seq"] = g.seq[gw]
            doc["server_ts"] = ts + rng.randint(1, 20)
            self._last_doc[id(s)] = doc
        return f"mes.{s.plant}.{s.machine}.telemetry", _compact(doc)

    def erp(self, now_ms: int) -> PlantEvent:
        g = self._erp
        r = g.rng.random()
        if r < self.bad_share:
            kind = g.rng.choice(list(ERP_BAD))
            subject, payload = self._erp_bad(kind, now_ms)
            return PlantEvent(
                subject, payload, "bad", _MODEL_BY_SUBJECT[subject], kind, ERP_BAD[kind]
            )
        r -= self.bad_share
        if r < self.duplicate_share and self._recent_records:
            key = g.rng.choice(self._recent_records)
            subject, payload = self._latest[key]
            return PlantEvent(subject, payload, "duplicate", key[0])
        r -= self.duplicate_share
        if r < self.out_of_order_share:
            stale = g.stale(now_ms)
            if stale is not None:
                return PlantEvent(stale[0], stale[1], "out_of_order", _MODEL_BY_SUBJECT[stale[0]])
        model = _odoo_model(g.rng)
        subject, payload = g.odoo(model, now_ms)
        key = (model, int(json.loads(payload)["_id"]))
        self._latest[key] = (subject, payload)
        self._latest.move_to_end(key)
        if len(self._latest) > 5_000:
            self._latest.popitem(last=False)
        self._recent_records.append(key)
        return PlantEvent(subject, payload, "fresh", model)

    def _telemetry_bad(self, kind: str, now_ms: int) -> tuple[str, bytes]:
        g = self._tel
        if kind == "missing_field":
            stream, doc = g.telemetry_doc(now_ms)
            del doc["value"]
            return f"mes.{stream.plant}.{stream.machine}.telemetry", _compact(doc)
        return g.bad("nan" if kind == "non_finite" else kind, now_ms)

    def _erp_bad(self, kind: str, now_ms: int) -> tuple[str, bytes]:
        g = self._erp
        if kind == "unknown_state":
            return g.bad("unmapped_state", now_ms)
        # Bad records get fresh ids and stay out of the generator's pools, so no later
        # duplicate or stale write refers to them.
        if kind == "unknown_uom":
            rec = g._create("stock.move", now_ms)
            rec.fields["product_uom"] = g.rng.choice(_UNKNOWN_UOMS)
        elif kind == "subject_injection":
            rec = g._create("stock.quant", now_ms)
            rec.fields["location_id"] = g.rng.choice(_INJECTED_LOCATIONS)
        else:
            rec = g._create(_odoo_model(g.rng), now_ms)
        subject, payload = _odoo_event(rec, g._write(rec, now_ms))
        if kind == "missing_field":
            body = json.loads(payload)
            del body["write_date"]
            payload = json.dumps(body, sort_keys=True).encode()
        elif kind == "malformed_json":
            payload = payload[: g.rng.randint(1, len(payload) - 1)]
        return subject, payload


def _plant_streams(streams: list[_Stream], rng: random.Random) -> list[_Stream]:
    """The sensors of `MACHINES_PER_PLANT` machines in each of `PLANTS`, with the mix of
    sensor units a plant with retrofitted machines has."""
    by_machine: dict[tuple[str, str], list[_Stream]] = {}
    for s in streams:
        if s.plant in PLANTS:
            by_machine.setdefault((s.plant, s.machine), []).append(s)
    chosen: list[_Stream] = []
    for plant in PLANTS:
        names = sorted(m for p, m in by_machine if p == plant)
        keep = [m for m in _SHOWCASE.get(plant, ()) if m in names]
        # one machine of each type in turn, so a small plant still has every kind of machine
        by_type: dict[str, list[str]] = {}
        for m in names:
            if m not in keep:
                by_type.setdefault(m.rsplit("-", 1)[0], []).append(m)
        for machines in by_type.values():
            rng.shuffle(machines)
        while len(keep) < MACHINES_PER_PLANT and any(by_type.values()):
            for kind in sorted(by_type):
                if by_type[kind] and len(keep) < MACHINES_PER_PLANT:
                    keep.append(by_type[kind].pop())
        for machine in sorted(keep):
            chosen.extend(by_machine[(plant, machine)])
    for s in chosen:
        if s.unit in _TEMP_UNITS:
            s.unit = rng.choices(_TEMP_UNITS, weights=(6, 2, 2))[0]
        elif s.unit in _PRESSURE_UNITS:
            s.unit = rng.choices(_PRESSURE_UNITS, weights=(4, 3, 3))[0]
        s.unit = _EXAMPLE_UNITS.get((s.plant, s.machine, s.metric), s.unit)
        if s.unit == "rpm":
            s.decimals = 0
    return chosen


@dataclass
class PlantReport:
    """What `simulate` sent. Shares and kinds are per message as published: a message the
    server refused counts under `errors`, not here."""

    duration_s: float
    telemetry_rate: float
    """Offered events/s on core NATS."""
    erp_rate: float
    """Offered events/s on JetStream."""
    elapsed_s: float = 0.0
    """From the first publish to the last (PubAck waiting excluded)."""
    sent: int = 0
    telemetry: int = 0
    """Telemetry messages of every kind."""
    erp: int = 0
    """Odoo messages of every kind."""
    fresh: int = 0
    """New samples and new writes: what the router should route."""
    duplicates: int = 0
    out_of_order: int = 0
    bad: int = 0
    by_model: Counter[str] = field(default_factory=Counter)
    """Odoo messages per model (every kind)."""
    by_kind: Counter[str] = field(default_factory=Counter)
    """`telemetry.fresh`, `odoo.duplicate`, `odoo.out_of_order`, `odoo.bad.unknown_uom`, ..."""
    expected_reasons: Counter[str] = field(default_factory=Counter)
    """Dead-letter reason -> how many bad events must get it."""
    acked: int = 0
    """Odoo messages JetStream acknowledged."""
    ack_failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    """Why publishes failed: `<where>: <error>` -> count."""
    telemetry_lag_s: float = 0.0
    """Worst delay of a telemetry publish behind its schedule."""
    erp_lag_s: float = 0.0

    def record(self, ev: PlantEvent) -> None:
        stream = "telemetry" if ev.model is None else "odoo"
        self.sent += 1
        if ev.model is None:
            self.telemetry += 1
        else:
            self.erp += 1
            self.by_model[ev.model] += 1
        if ev.kind == "bad":
            self.bad += 1
            self.by_kind[f"{stream}.bad.{ev.bad_kind}"] += 1
            if ev.reason is not None:
                self.expected_reasons[ev.reason] += 1
            return
        self.by_kind[f"{stream}.{ev.kind}"] += 1
        if ev.kind == "fresh":
            self.fresh += 1
        elif ev.kind == "duplicate":
            self.duplicates += 1
        elif ev.kind == "out_of_order":
            self.out_of_order += 1

    def rate(self, stream: str) -> float:
        """Achieved events/s of `telemetry`, `erp` or `all`."""
        n = {"telemetry": self.telemetry, "erp": self.erp, "all": self.sent}[stream]
        return n / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "offered": {"telemetry": self.telemetry_rate, "erp": self.erp_rate},
            "achieved": {
                "telemetry": round(self.rate("telemetry"), 1),
                "erp": round(self.rate("erp"), 1),
            },
            "sent": self.sent,
            "telemetry": self.telemetry,
            "erp": self.erp,
            "fresh": self.fresh,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "bad": self.bad,
            "by_model": dict(sorted(self.by_model.items())),
            "by_kind": dict(sorted(self.by_kind.items())),
            "expected_reasons": dict(sorted(self.expected_reasons.items())),
            "acked": self.acked,
            "ack_failed": self.ack_failed,
            "errors": dict(self.errors),
            "lag_s": {"telemetry": self.telemetry_lag_s, "erp": self.erp_lag_s},
        }


ProgressFn = Callable[[PlantReport], None]


async def simulate(
    nc: NATS,
    js: JetStreamContext,
    *,
    duration_s: float,
    telemetry_rate: float = 2000.0,
    erp_rate: float = 50.0,
    duplicate_share: float = 0.05,
    out_of_order_share: float = 0.03,
    bad_share: float = 0.01,
    seed: int = 7,
    progress: ProgressFn | None = None,
    stop: asyncio.Event | None = None,
    ack_timeout_s: float = 5.0,
) -> PlantReport:
    """Run the plant for `duration_s` (or until `stop` is set) and report what it sent.

    `progress(report)` is called about four times a second with the live report. Odoo
    messages whose PubAck has not arrived `ack_timeout_s` after the last publish count as
    failed. Raises `PlantError` up front when no JetStream stream captures an Odoo subject
    (the service provisions ODOO_IN on `odoo.>`)."""
    if duration_s < 0 or telemetry_rate < 0 or erp_rate < 0:
        raise ValueError("duration and rates must not be negative")
    plant = Plant(
        seed=seed,
        duplicate_share=duplicate_share,
        out_of_order_share=out_of_order_share,
        bad_share=bad_share,
    )
    report = PlantReport(duration_s=duration_s, telemetry_rate=telemetry_rate, erp_rate=erp_rate)
    if erp_rate > 0:
        await _check_capture(js)

    loop = asyncio.get_running_loop()
    pending: set[asyncio.Future[PubAck]] = set()
    last_flush = loop.time()

    def on_ack(fut: asyncio.Future[PubAck]) -> None:
        pending.discard(fut)
        if fut.cancelled():
            report.ack_failed += 1
            report.errors[f"odoo: no PubAck within {ack_timeout_s:g} s"] += 1
        elif (exc := fut.exception()) is not None:
            report.ack_failed += 1
            report.errors[f"odoo: {type(exc).__name__}"] += 1
        else:
            report.acked += 1

    async def send_telemetry(n: int) -> None:
        nonlocal last_flush
        now_ms = time.time_ns() // 1_000_000
        for _ in range(n):
            ev = plant.telemetry(now_ms)
            try:
                await nc.publish(ev.subject, ev.payload)
            except nats.errors.Error as e:
                report.errors[f"telemetry: {type(e).__name__}"] += 1
                continue
            report.record(ev)
        if loop.time() - last_flush >= _FLUSH_EVERY_S:
            last_flush = loop.time()
            # a flush bounds what sits in the client's buffer and surfaces a dead connection
            try:
                await nc.flush(timeout=2)
            except nats.errors.Error as e:
                report.errors[f"telemetry flush: {type(e).__name__}"] += 1

    async def send_erp(n: int) -> None:
        now_ms = time.time_ns() // 1_000_000
        for _ in range(n):
            ev = plant.erp(now_ms)
            try:
                fut = await js.publish_async(ev.subject, ev.payload)
            except nats.errors.Error as e:
                report.errors[f"odoo: {type(e).__name__}"] += 1
                continue
            report.record(ev)
            pending.add(fut)
            fut.add_done_callback(on_ack)

    async def tick() -> None:
        assert progress is not None
        while True:
            await asyncio.sleep(_PROGRESS_EVERY_S)
            report.elapsed_s = loop.time() - t0
            progress(report)

    t0 = loop.time()
    ticker = asyncio.create_task(tick()) if progress is not None else None
    try:
        lags = await asyncio.gather(
            _paced(telemetry_rate, duration_s, t0, stop, send_telemetry),
            _paced(erp_rate, duration_s, t0, stop, send_erp),
        )
        report.telemetry_lag_s, report.erp_lag_s = (round(x, 4) for x in lags)
        report.elapsed_s = loop.time() - t0
        with contextlib.suppress(nats.errors.Error):
            await nc.flush(timeout=2)
        if pending:
            _, late = await asyncio.wait(set(pending), timeout=ack_timeout_s)
            for fut in late:
                fut.cancel()
            await asyncio.sleep(0)  # let the cancelled futures' callbacks count them
    finally:
        for fut in list(pending):
            fut.cancel()
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
    if progress is not None:
        progress(report)
    return report


async def _check_capture(js: JetStreamContext) -> None:
    for subject in ERP_SUBJECTS:
        try:
            await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            raise PlantError(
                f"no JetStream stream captures {subject}: Odoo webhooks go through JetStream "
                "(stream ODOO_IN on odoo.>), which the service provisions before the demo runs"
            ) from None


async def _paced(
    rate: float,
    duration_s: float,
    t0: float,
    stop: asyncio.Event | None,
    send: Callable[[int], Awaitable[None]],
) -> float:
    """Call `send(n)` with however many events are due (event `i` at `t0 + i / rate`) until
    `rate * duration_s` have gone; return the worst lag behind schedule, in seconds."""
    total = round(rate * duration_s)
    if total <= 0:
        return 0.0
    loop = asyncio.get_running_loop()
    done = 0
    worst = 0.0
    while done < total and not (stop is not None and stop.is_set()):
        now = loop.time() - t0
        due = min(total, math.floor(now * rate) + 1)
        if due > done:
            worst = max(worst, now - done / rate)
            n = min(due - done, _MAX_BATCH)
            await send(n)
            done += n
        wait = done / rate - (loop.time() - t0)
        # Ahead of schedule: sleep at least a tick so high rates go out in batches. Behind:
        # only yield, and send the backlog next round.
        delay = max(wait, _TICK_S) if wait > 0 else 0.0
        if stop is not None and delay > 0.05:
            # a slow stream (one event every few seconds) must still notice `stop` at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        else:
            await asyncio.sleep(delay)
    return worst
