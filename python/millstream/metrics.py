"""Prometheus metrics: a collector that reads the data plane's counters at scrape time.

Nothing is counted twice: every scrape calls `Plane.stats()` once and turns the dict into
metric families, so the numbers on `/metrics` are the plane's own. The control plane's
nats-py connection (provisioning, later DLQ tooling) adds its connection counters under
`client="control"`.

    millstream_events_in_total                      events read from every input
    millstream_event_outcomes_total{status}         routed / duplicate / stale / dead_letter
    millstream_events_total{route,status}           per route: out / duplicate / stale /
                                                    dead_letter / failed
    millstream_dead_letters_total{reason}           dead letters by reason code
    millstream_lane_queue_depth{lane}               events queued now
    millstream_lane_queue_capacity{lane}            the lane's bound
    millstream_lane_shed_total{lane}                events refused because the lane was full
    millstream_lane_processed_total{lane}
    millstream_lane_batches_total{lane}             batches taken (processed / batches: mean size)
    millstream_lane_latency_seconds{lane}           histogram, intake to output acknowledged
    millstream_lane_objective_seconds{lane}         the configured latency objective
    millstream_nats_connected{client}               data (the plane), egress (the plane's
                                                    outputs), ingest (its core inputs; drops
                                                    there count as data slow consumers) and
                                                    control (nats-py)
    millstream_nats_reconnects_total{client}
    millstream_nats_disconnects_total{client}
    millstream_nats_slow_consumer_total{client}
    millstream_nats_errors_total{client}            async errors nats-py reported
    millstream_inputs_total{result}                 received / acked (NATS), grpc (events
                                                    published over gRPC)
    millstream_outputs_total{result}                published / acked / failed / naks /
                                                    dead_letters / dead_letter_failed (and
                                                    any other counter the plane reports)
    millstream_plane_up                             1 when the last stats() call succeeded
    millstream_config_info{name,plan_version}       always 1
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LANES = ("critical", "standard", "bulk")
ROUTE_STATUSES = ("out", "duplicate", "stale", "dead_letter", "failed")
EVENT_STATUSES = ("routed", "duplicate", "stale", "dead_letter")
OUTPUT_RESULTS = ("published", "acked", "failed", "naks", "dead_letters", "dead_letter_failed")
INPUT_RESULTS = ("received", "acked", "grpc")

StatsFn = Callable[[], Mapping[str, Any]]


@dataclasses.dataclass
class ConnectionCounters:
    """The control plane's nats-py connection, counted by its callbacks."""

    connected: bool = False
    reconnects: int = 0
    disconnects: int = 0
    errors: int = 0
    slow_consumer: int = 0


def _section(stats: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = stats.get(key)
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _keys(known: Sequence[str], section: Mapping[str, Any]) -> list[str]:
    """The documented label values (always present, 0 when absent), then any others the
    plane reports, so a counter added on the Rust side shows up without a release here."""
    return [*known, *sorted(k for k in section if k not in known)]


def latency_buckets(bounds_ms: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Non-cumulative counts per millisecond bound (plus a last +Inf count) -> Prometheus's
    cumulative buckets with `le` in seconds. A missing +Inf count is taken as zero."""
    out: list[tuple[str, float]] = []
    running = 0.0
    for i, bound in enumerate(bounds_ms):
        running += _num(counts[i]) if i < len(counts) else 0.0
        out.append((repr(round(bound / 1000, 9)), running))
    running += sum(_num(c) for c in counts[len(bounds_ms) :])
    out.append(("+Inf", running))
    return out


class MillstreamCollector(Collector):
    """Yields Millstream's metric families from `stats()` (the data plane's stats dict) and
    `control` (the control connection's counters), read at scrape time."""

    def __init__(
        self,
        stats: StatsFn,
        *,
        control: ConnectionCounters | None = None,
        objectives_ms: Mapping[str, int] | None = None,
        info: Mapping[str, str] | None = None,
    ) -> None:
        self._stats = stats
        self._control = control
        self._objectives_ms = dict(objectives_ms or {})
        self._info = dict(info or {})

    def describe(self) -> Iterable[Metric]:
        # Registering must not call stats(): the plane may not be running yet.
        return []

    def collect(self) -> Iterable[Metric]:
        try:
            stats: Mapping[str, Any] = self._stats()
            up = 1.0
        except Exception as e:  # a scrape must never fail because the plane is gone
            log.warning("metrics: the data plane's stats are unavailable: %s", e)
            stats, up = {}, 0.0
        yield GaugeMetricFamily(
            "millstream_plane_up", "1 when the data plane answered this scrape", value=up
        )
        if self._info:
            info = GaugeMetricFamily(
                "millstream_config_info",
                "The running config (always 1)",
                labels=sorted(self._info),
            )
            info.add_metric([self._info[k] for k in sorted(self._info)], 1.0)
            yield info
        if stats:
            yield from self._events(stats)
            yield from self._lanes(stats)
            yield from self._io(stats)
        yield from self._nats(stats)

    def _events(self, stats: Mapping[str, Any]) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "millstream_events_in",
            "Events read from every input",
            value=_num(stats.get("events_in")),
        )
        outcomes = CounterMetricFamily(
            "millstream_event_outcomes",
            "Events by outcome: routed, duplicate, stale, dead_letter",
            labels=["status"],
        )
        by_status = _section(stats, "by_status")
        for status in _keys(EVENT_STATUSES, by_status):
            outcomes.add_metric([status], _num(by_status.get(status)))
        yield outcomes
        per_route = CounterMetricFamily(
            "millstream_events",
            "Events per route and status: out, duplicate, stale, dead_letter, failed",
            labels=["route", "status"],
        )
        for route, counts in sorted(_section(stats, "routes").items()):
            if not isinstance(counts, Mapping):
                continue
            for status in ROUTE_STATUSES:
                per_route.add_metric([route, status], _num(counts.get(status)))
        yield per_route
        reasons = CounterMetricFamily(
            "millstream_dead_letters", "Dead letters by reason code", labels=["reason"]
        )
        for reason, n in sorted(_section(stats, "by_reason").items()):
            reasons.add_metric([reason], _num(n))
        yield reasons

    def _lanes(self, stats: Mapping[str, Any]) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "millstream_lane_queue_depth", "Events queued in the lane", labels=["lane"]
        )
        capacity = GaugeMetricFamily(
            "millstream_lane_queue_capacity", "The lane's queue bound", labels=["lane"]
        )
        shed = CounterMetricFamily(
            "millstream_lane_shed",
            "Events refused because the lane's queue was full",
            labels=["lane"],
        )
        processed = CounterMetricFamily(
            "millstream_lane_processed", "Events the lane finished", labels=["lane"]
        )
        batches = CounterMetricFamily(
            "millstream_lane_batches",
            "Batches the pipeline took from the lane (processed / batches: the mean batch size)",
            labels=["lane"],
        )
        latency = HistogramMetricFamily(
            "millstream_lane_latency_seconds",
            "Time from intake to the event's outputs being acknowledged",
            labels=["lane"],
        )
        lanes = _section(stats, "lanes")
        for lane in _keys(LANES, lanes):
            s = lanes.get(lane)
            if not isinstance(s, Mapping):
                continue
            depth.add_metric([lane], _num(s.get("depth")))
            capacity.add_metric([lane], _num(s.get("capacity")))
            shed.add_metric([lane], _num(s.get("shed")))
            processed.add_metric([lane], _num(s.get("processed")))
            batches.add_metric([lane], _num(s.get("batches")))
            bounds = [_num(b) for b in s.get("latency_bounds_ms") or []]
            counts = [int(_num(c)) for c in s.get("latency_counts") or []]
            latency.add_metric(
                [lane],
                latency_buckets(bounds, counts),
                sum_value=_num(s.get("latency_sum_ms")) / 1000,
            )
        yield from (depth, capacity, shed, processed, batches, latency)
        if self._objectives_ms:
            objective = GaugeMetricFamily(
                "millstream_lane_objective_seconds",
                "The lane's configured latency objective",
                labels=["lane"],
            )
            for lane, ms in self._objectives_ms.items():
                objective.add_metric([lane], ms / 1000)
            yield objective

    def _io(self, stats: Mapping[str, Any]) -> Iterable[Metric]:
        inputs = CounterMetricFamily(
            "millstream_inputs",
            "Input messages received and acked over NATS, and events published over gRPC",
            labels=["result"],
        )
        ins = _section(stats, "inputs")
        for result in _keys(INPUT_RESULTS, ins):
            inputs.add_metric([result], _num(ins.get(result)))
        yield inputs
        outputs = CounterMetricFamily(
            "millstream_outputs",
            "Output publishes: published, acked, failed, naks, dead_letters, dead_letter_failed",
            labels=["result"],
        )
        outs = _section(stats, "outputs")
        for result in _keys(OUTPUT_RESULTS, outs):
            outputs.add_metric([result], _num(outs.get(result)))
        yield outputs

    def _nats(self, stats: Mapping[str, Any]) -> Iterable[Metric]:
        connected = GaugeMetricFamily(
            "millstream_nats_connected", "1 while connected to NATS", labels=["client"]
        )
        reconnects = CounterMetricFamily(
            "millstream_nats_reconnects", "Reconnections to NATS", labels=["client"]
        )
        disconnects = CounterMetricFamily(
            "millstream_nats_disconnects", "Disconnections from NATS", labels=["client"]
        )
        slow = CounterMetricFamily(
            "millstream_nats_slow_consumer",
            "Times the NATS server or client reported a slow consumer",
            labels=["client"],
        )
        errors = CounterMetricFamily(
            "millstream_nats_errors",
            "Asynchronous errors the NATS client reported",
            labels=["client"],
        )
        if stats:
            data = _section(stats, "nats")
            connected.add_metric(["data"], 1.0 if data.get("connected") is True else 0.0)
            reconnects.add_metric(["data"], _num(data.get("reconnects")))
            disconnects.add_metric(["data"], _num(data.get("disconnects")))
            slow.add_metric(["data"], _num(data.get("slow_consumer")))
            # the data plane's own connections: publish-only for outputs (egress), and
            # subscribe-only for core inputs (ingest); absent where the URL keeps them on
            # async-nats (the data client)
            for client in ("egress", "ingest"):
                conn = data.get(client)
                if isinstance(conn, Mapping):
                    connected.add_metric([client], 1.0 if conn.get("connected") is True else 0.0)
                    reconnects.add_metric([client], _num(conn.get("reconnects")))
                    disconnects.add_metric([client], _num(conn.get("disconnects")))
        c = self._control
        if c is not None:
            connected.add_metric(["control"], 1.0 if c.connected else 0.0)
            reconnects.add_metric(["control"], float(c.reconnects))
            disconnects.add_metric(["control"], float(c.disconnects))
            slow.add_metric(["control"], float(c.slow_consumer))
            errors.add_metric(["control"], float(c.errors))
        yield from (connected, reconnects, disconnects, slow, errors)


class MetricsServer:
    """`/metrics` over HTTP on its own registry, served from a daemon thread."""

    def __init__(self, collector: Collector, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self.host = host
        self._requested_port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        self._server, self._thread = start_http_server(
            self._requested_port, addr=self.host, registry=self.registry
        )
        return self

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
