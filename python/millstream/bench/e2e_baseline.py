"""`python_baseline`: the router a careful engineer would write without Millstream.

The end-to-end benchmark runs this process and Millstream's Rust data plane on the same
machine, with the same config, input subjects and output subjects, and compares what comes out
on the output subjects. It is core NATS in, core NATS out, for the config's core-NATS sources
(in `examples/manufacturing.yaml`: `mes.*.*.telemetry`); the JetStream (Odoo) sources are not
served, the at-least-once comparison is a different benchmark.

    python -m millstream.bench.e2e_baseline --config examples/manufacturing.yaml \\
        --nats-url nats://127.0.0.1:4222 [--ready-file PATH] [--publish frames|nats-py]

The pipeline itself is `millstream.bench.baseline.Baseline` (decode, map, validate, route,
dedup, in optimised pure Python, proven equal to the core on the sample cases); this module
adds only what a real router needs around it: nats-py + uvloop I/O, and the output messages
the Rust plane writes (CloudEvents binary mode `ce-` headers, percent-encoded, and the
canonical JSON body; dead letters with the original payload to
`<dead_letter.subject_prefix>.<reason>`).

How it is made fast, the way a careful engineer would (measured, not guessed):
- the subscription callback only appends `(subject, payload)` to a list; one consumer task
  swaps the list out and runs it through the pipeline in chunks, one clock reading per chunk;
- no per-message await on the output side: a chunk's outputs go to the client's write buffer
  as one pre-encoded run of HPUB frames (see `Router._publish_frames` for why nats-py's
  `publish(headers=...)` is bypassed), and the client's flusher task writes them once the
  consumer yields; never a PING/PONG `flush()` round trip per message or per batch;
- header lines that repeat (source, type, schema, route) are encoded once; values are
  percent-encoded only when a cheap C-level check says they need it;
- large subscription pending limits and a large client buffer, so a burst is queued rather
  than dropped as a slow consumer;
- subject validation in nats-py is off: every output subject was already checked token by
  token by the pipeline's `[A-Za-z0-9_-]{1,64}` rule, and input subjects come from the server.

It still pays what nats-py makes every user pay on input: parsing, a `Msg` object, a queue
hop and a callback coroutine per received message. `--publish nats-py` publishes per message
through nats-py's public `publish(headers=dict)` instead, for comparison (about 2.4x slower
end to end on this machine).

On SIGTERM or SIGINT it stops taking messages (unsubscribe, finishing what was already
received), publishes the last outputs, drains the connection and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import quote

import nats
import uvloop
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from millstream.bench.baseline import (
    DEAD_LETTER,
    DUPLICATE,
    ROUTED,
    STALE,
    Attributes,
    Baseline,
    BaselineConfigError,
)
from millstream.config import Config, RouteConfig, load_config

log = logging.getLogger("millstream.bench.e2e_baseline")

# A burst must queue, not be dropped as a slow consumer: nats-py's defaults (512k messages,
# 128 MiB) are per subscription, and the callback below empties that queue almost at once,
# so these mostly bound what piles up if the event loop stalls.
SUB_PENDING_MSGS: Final = 4_000_000
SUB_PENDING_BYTES: Final = 2 * 1024**3
# nats-py force-flushes (and makes `publish` wait) once this much output is buffered; 2 MiB
# by default, which a batch of a few thousand 500-byte events with headers crosses.
CLIENT_PENDING_BYTES: Final = 64 * 1024**2
# Events run through the pipeline between two yields to the event loop: large enough that
# the per-batch costs (clock, swap, wake-up) vanish, small enough that the read loop and the
# flusher keep the sockets moving while a large backlog is worked off.
CHUNK: Final = 2048
# The route-line cache is keyed by destination subject (plants x machines x metrics for
# telemetry); cleared when it reaches this size so a flood of distinct subjects cannot grow it.
ROUTE_CACHE_MAX: Final = 100_000

# What the Rust plane's HEADER_VALUE set leaves unescaped: printable ASCII except `%` and `"`
# (controls, `%`, `"` and every non-ASCII byte of the UTF-8 are percent-encoded, upper-case).
_HEADER_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '%"')


def _plain(value: str) -> bool:
    """True if `value` needs no escaping (four C-level scans)."""
    return value.isascii() and value.isprintable() and "%" not in value and '"' not in value


def enc(value: str) -> str:
    """A header value percent-encoded like the Rust plane's `enc` (CloudEvents NATS binding).

    Almost every value is plain printable ASCII, so that is checked first instead of running
    `quote` on it."""
    if _plain(value):
        return value
    # surrogatepass: a lone surrogate cannot come out of the pipeline's JSON decode, but a
    # header must never be the reason a routed event is lost.
    return quote(value, safe=_HEADER_SAFE, errors="surrogatepass")


class RouteNames:
    """Destination subject -> the name of the route that rendered it (`Millstream-Route`).

    `Baseline` outcomes carry destinations, not route names. A route's `to` is literal tokens
    and whole `{field}` placeholders, so a destination belongs to the route whose template
    matches it token for token; the config is refused if two templates could render the same
    subject, where that would be ambiguous."""

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self._templates = [
            (tuple(None if "{" in t else t for t in r.to.split(".")), r.name) for r in routes
        ]
        for i, (a, name_a) in enumerate(self._templates):
            for b, name_b in self._templates[i + 1 :]:
                if len(a) == len(b) and all(
                    x is None or y is None or x == y for x, y in zip(a, b, strict=True)
                ):
                    raise BaselineConfigError(
                        f"routes {name_a} and {name_b} can render the same subject, so "
                        "Millstream-Route cannot be told from the destination"
                    )

    def __call__(self, subject: str) -> str:
        tokens = subject.split(".")
        for template, route in self._templates:
            if len(template) == len(tokens) and all(
                t is None or t == s for t, s in zip(template, tokens, strict=True)
            ):
                return route
        return "?"  # pragma: no cover - every destination is rendered from one of the templates


class Stats:
    """Counters, kept as plain ints (updated once per event, read at exit)."""

    __slots__ = (
        "dead_letters",
        "duplicate",
        "errors",
        "events_in",
        "internal_errors",
        "published",
        "stale",
    )

    def __init__(self) -> None:
        self.events_in = 0
        self.published = 0
        self.duplicate = 0
        self.stale = 0
        self.dead_letters = 0
        self.errors = 0
        self.internal_errors = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


Output = tuple[str, str, bytes]
"""One message to publish: subject, header block (`NATS/1.0` line, `key: value` lines, blank
line; ASCII, as every value went through `enc`), payload."""


class Router:
    """The batching consumer: `on_msg` queues, `run` processes and publishes.

    `frames=True` (the default) publishes each chunk's outputs as one pre-encoded write;
    `frames=False` calls nats-py's `publish(headers=dict)` per message, for comparison."""

    def __init__(self, config: Config, frames: bool = True) -> None:
        self._baseline = Baseline(config)
        self._route_name = RouteNames(config.routes)
        self._dlq_prefix = config.dead_letter.subject_prefix
        self._frames = frames
        self._buf: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._closing = False
        # Header lines that repeat on every event of a source or route, encoded once.
        self._source_lines: dict[tuple[str, str, str], str] = {}
        self._route_lines: dict[str, str] = {}
        self.stats = Stats()

    async def on_msg(self, msg: Msg) -> None:
        # Runs once per message in nats-py's subscription task: keep it to an append.
        self._buf.append((msg.subject, msg.data))
        if not self._wake.is_set():
            self._wake.set()

    def close(self) -> None:
        """No more messages will arrive: `run` returns once the buffer is empty."""
        self._closing = True
        self._wake.set()

    async def run(self, nc: NATS) -> None:
        while True:
            if not self._buf:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._buf = self._buf, []
            for start in range(0, len(batch), CHUNK):
                await self._publish(nc, self._process(batch[start : start + CHUNK]))
                # Let the read loop take more input and the client's flusher write what this
                # chunk published (publishing only appends to the client's buffer).
                await asyncio.sleep(0)

    def _process(self, events: list[tuple[str, bytes]]) -> list[Output]:
        """Run a chunk through the pipeline; the messages it produces, in input order."""
        now_ms = time.time_ns() // 1_000_000
        process_one = self._baseline.process_one
        stats = self.stats
        stats.events_in += len(events)
        outputs: list[Output] = []
        for subject, payload in events:
            # `Baseline.process`, one event at a time, so that a bug hit by one event makes
            # that event a dead letter (the core's internal_error) instead of stopping the
            # router or re-running its batch through dedup. A `try` costs nothing in 3.11.
            try:
                out = process_one(subject, payload, now_ms)
            except Exception as e:
                out = (DEAD_LETTER, (), b"", "internal_error", repr(e), None)
                if stats.internal_errors < 10:
                    log.exception("pipeline failed on an event from %s", subject)
                stats.internal_errors += 1
            status, dests, data, reason, detail, attrs = out
            if status == ROUTED:
                assert attrs is not None  # routed outcomes always carry attributes
                head = self._ce_lines(attrs)
                for dest in dests:
                    outputs.append((dest, head + self._route_line(dest), data))
            elif status == DEAD_LETTER:
                # The original payload and why (the Rust plane's Millstream-* headers, less
                # those that name its config version, attempt and time).
                reason = reason or "unknown"
                outputs.append(
                    (
                        f"{self._dlq_prefix}.{reason}",
                        f"NATS/1.0\r\nMillstream-Reason: {reason}\r\n"
                        f"Millstream-Detail: {enc(detail or '')}\r\n"
                        f"Millstream-Subject: {enc(subject)}\r\n\r\n",
                        payload,
                    )
                )
                stats.dead_letters += 1
            elif status == DUPLICATE:
                stats.duplicate += 1
            elif status == STALE:
                stats.stale += 1
        return outputs

    def _ce_lines(self, attrs: Attributes) -> str:
        """The header block up to the route line: the Rust plane's `ce_headers`, same names,
        same order, same encoding."""
        ce_id, source, ce_type, dataschema, ce_time, ce_subject, pkey = attrs
        key = (source, ce_type, dataschema)
        fixed = self._source_lines.get(key)
        if fixed is None:
            fixed = self._source_lines[key] = (
                f"ce-source: {enc(source)}\r\nce-type: {enc(ce_type)}\r\n"
                f"ce-dataschema: {enc(dataschema)}\r\n"
            )
        if (
            ce_time is not None
            and ce_subject is not None
            and pkey is not None
            and _plain(f"{ce_id}{ce_time}{ce_subject}{pkey}")
        ):
            # The usual case (every telemetry event): one check over the four values that
            # change per event instead of four, and one f-string.
            return (
                f"NATS/1.0\r\nce-specversion: 1.0\r\nce-id: {ce_id}\r\n{fixed}"
                f"ce-time: {ce_time}\r\nce-subject: {ce_subject}\r\n"
                f"ce-partitionkey: {pkey}\r\n"
            )
        head = f"NATS/1.0\r\nce-specversion: 1.0\r\nce-id: {enc(ce_id)}\r\n{fixed}"
        if ce_time is not None:
            head += f"ce-time: {enc(ce_time)}\r\n"
        if ce_subject is not None:
            head += f"ce-subject: {enc(ce_subject)}\r\n"
        if pkey is not None:
            head += f"ce-partitionkey: {enc(pkey)}\r\n"
        return head

    def _route_line(self, dest: str) -> str:
        """The header lines after the CloudEvents attributes, per destination subject (cached:
        the route is found by matching templates; bounded, as destinations come from data)."""
        line = self._route_lines.get(dest)
        if line is None:
            name = enc(self._route_name(dest))
            line = f"content-type: application/json\r\nMillstream-Route: {name}\r\n\r\n"
            if len(self._route_lines) >= ROUTE_CACHE_MAX:
                self._route_lines.clear()
            self._route_lines[dest] = line
        return line

    async def _publish(self, nc: NATS, outputs: list[Output]) -> None:
        if not outputs:
            return
        if self._frames and nc.is_connected and not nc.is_draining_pubs:
            await self._publish_frames(nc, outputs)
            # Wake the client's flusher, as nats-py's own publish does after buffering.
            if nc._flush_queue is not None and nc._flush_queue.empty():
                await nc._flush_pending()
            return
        # Per message through nats-py's public API: the comparison mode, and the path while
        # reconnecting (where nats-py bounds what it buffers, and raises when it is full).
        stats = self.stats
        for subject, block, payload in outputs:
            try:
                await nc.publish(subject, payload, headers=_header_dict(block))
                stats.published += 1
            except Exception as e:
                # Core NATS is best effort: a lost output is counted and logged, not retried,
                # and must not stop the router.
                self._failed(subject, e)

    async def _publish_frames(self, nc: NATS, outputs: list[Output]) -> None:
        """All outputs of a chunk as one buffered write of HPUB frames.

        Profiling showed nats-py's `publish(headers=...)` spends ~20 us per message on
        checking and re-encoding ten header lines (a regex per key, `str.translate` per
        value), more than the whole pipeline. Our header blocks are already safe (names are
        constants, every value went through `enc`), so a careful engineer writes the frames
        himself and hands them to the client's write buffer in one `Client._send_command`
        (what `publish` calls after encoding; it waits for a flush only once the buffer is
        over `pending_size`, which is the backpressure nats-py gives). Private nats-py API,
        checked against 2.16; `--publish nats-py` is the public path."""
        max_payload = nc.max_payload
        frames: list[bytes] = []
        size = 0
        for subject, block, payload in outputs:
            hdr = block.encode()
            total = len(hdr) + len(payload)
            if total > max_payload:  # the server would close the connection on it
                self._failed(subject, ValueError(f"{total} bytes exceed max_payload"))
                continue
            frame = b"HPUB %s %d %d\r\n%s%s\r\n" % (
                subject.encode(),
                len(hdr),
                total,
                hdr,
                payload,
            )
            frames.append(frame)
            size += total
        if frames:
            await nc._send_command(b"".join(frames))
            nc.stats["out_msgs"] += len(frames)
            nc.stats["out_bytes"] += size
            self.stats.published += len(frames)

    def _failed(self, subject: str, e: Exception) -> None:
        stats = self.stats
        stats.errors += 1
        if stats.errors <= 10 or stats.errors % 10_000 == 0:
            log.error("publishing to %s failed (%d so far): %r", subject, stats.errors, e)


def _header_dict(block: str) -> dict[str, str]:
    lines = block.split("\r\n")[1:-2]  # drop the NATS/1.0 line and the closing blank line
    return dict(line.split(": ", 1) for line in lines)


def core_subjects(config: Config) -> list[str]:
    """The subjects of every source read with core NATS (no `jetstream:`), in config order."""
    subjects: list[str] = []
    for s in config.sources:
        if s.jetstream is None:
            subjects.extend(p for p in s.subjects if p not in subjects)
    return subjects


def write_ready_file(path: Path) -> None:
    # Written to a temporary name and renamed, so a harness polling for it never reads a
    # half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)


class ConnectionLog:
    """The four nats-py connection callbacks: what happened to the connection, in the log."""

    def __init__(self) -> None:
        self.errors = 0

    async def error(self, e: Exception) -> None:
        # Slow-consumer errors arrive here, one per dropped message: log them sparingly.
        self.errors += 1
        if self.errors <= 10 or self.errors % 10_000 == 0:
            log.error("nats error (%d so far): %r", self.errors, e)

    async def disconnected(self) -> None:
        log.warning("disconnected from nats")

    async def reconnected(self) -> None:
        log.warning("reconnected to nats")

    async def closed(self) -> None:
        log.info("nats connection closed")


async def run(
    config_path: Path, nats_url: str, ready_file: Path | None, frames: bool = True
) -> int:
    try:
        config = load_config(config_path)
        # Refuses (BaselineConfigError) a config the hand-written pipeline does not implement.
        router = Router(config, frames=frames)
    except Exception as e:
        log.error("%s: %s", config_path, e)
        return 2
    subjects = core_subjects(config)
    if not subjects:
        log.error("%s has no core-NATS source (every source reads JetStream)", config_path)
        return 2

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    conn_log = ConnectionLog()
    # With max_reconnect_attempts=-1 nats-py retries the first connect forever too, so race it
    # against a signal: SIGTERM before the server is reachable still stops the process.
    connecting = asyncio.create_task(
        nats.connect(
            nats_url,
            name=f"{config.nats.name}-python-baseline",
            error_cb=conn_log.error,
            disconnected_cb=conn_log.disconnected,
            reconnected_cb=conn_log.reconnected,
            closed_cb=conn_log.closed,
            max_reconnect_attempts=-1,
            pending_size=CLIENT_PENDING_BYTES,
            skip_subject_validation=True,
        )
    )
    stopping = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        connecting.cancel()
        log.info("stopped before connecting to %s", nats_url)
        return 0
    nc = connecting.result()
    consumer = asyncio.create_task(router.run(nc), name="consumer")
    subs: list[Subscription] = []
    for subject in subjects:
        subs.append(
            await nc.subscribe(
                subject,
                queue=config.nats.queue_group or "",
                cb=router.on_msg,
                pending_msgs_limit=SUB_PENDING_MSGS,
                pending_bytes_limit=SUB_PENDING_BYTES,
            )
        )
    # The server has the subscriptions once it answers the PING: only then is load safe.
    await nc.flush()
    if ready_file is not None:
        write_ready_file(ready_file)
    log.info("ready: %s", ", ".join(subjects))

    done, _ = await asyncio.wait({stopping, consumer}, return_when=asyncio.FIRST_COMPLETED)
    if consumer in done:  # only on a bug: `run` returns only after close()
        stopping.cancel()
        log.error("consumer stopped: %r", consumer.exception())
        await nc.close()
        return 1

    # Drain in order: stop taking input (unsubscribe; the subscription tasks hand over what
    # was already received), let the consumer publish the rest, then flush and close.
    for sub in subs:
        try:
            await sub.drain()  # type: ignore[no-untyped-call]  # untyped in nats-py
        except Exception as e:  # e.g. the connection is already closed
            log.warning("draining %s: %r", sub.subject, e)
    router.close()
    await consumer
    if not nc.is_closed:
        await nc.drain()
    log.info("stopped: %s", router.stats.as_dict())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m millstream.bench.e2e_baseline",
        description="The pure-Python router of the end-to-end benchmark (core NATS in and out).",
    )
    parser.add_argument("--config", type=Path, required=True, help="Millstream config file")
    parser.add_argument("--nats-url", required=True, help="e.g. nats://127.0.0.1:4222")
    parser.add_argument(
        "--ready-file", type=Path, help="written once subscribed, so a harness can start load"
    )
    parser.add_argument(
        "--publish",
        choices=["frames", "nats-py"],
        default="frames",
        help="frames: one pre-encoded write per chunk (default); nats-py: publish() per message",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    return uvloop.run(
        run(args.config, args.nats_url, args.ready_file, frames=args.publish == "frames")
    )


if __name__ == "__main__":
    sys.exit(main())
