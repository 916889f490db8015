"""`millstream bench grpc`: the gRPC Router measured from a real client.

A fresh embedded nats-server, the router (`millstream run`) in its own process with gRPC on
a free port, and this process as the client (grpc.aio, requests serialised before the clock
starts, as a producer holding its batches would have them):

- publish_stream: telemetry in batches over one PublishStream, a window of batches in
  flight, until every batch has its response (verdicts checked afterwards: all accepted);
- subscribe: the at-least-once outputs that a PublishStream of Odoo stock moves stored in
  MFG_OUT, read back with Subscribe from the beginning in batches, until all have arrived;
- publish_unary: one event per Publish call, one call at a time: p50/p99 of the round trip
  (telemetry, best effort; and a stock move, at least once, which includes the PubAck).

Each throughput is the median of `runs` runs, with the spread, as in `bench e2e`."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import uvloop
import yaml

from millstream._proto.v1 import router_pb2
from millstream.bench.core import find_config, machine_info
from millstream.bench.e2e import Router, spread, start_router, stock_move_templates
from millstream.bench.gen import unique_telemetry
from millstream.transport import EmbeddedNats

TARGETS = {"publish_stream": 200_000, "subscribe": 200_000, "publish_unary_p99_ms": 5.0}
# A spread above this between runs makes a median untrustworthy (as Vector's soak harness).
MAX_SPREAD = 0.10
WINDOW = 16


@dataclass(frozen=True)
class Plan:
    telemetry: int
    moves: int
    batch: int
    unary: int
    runs: int


FULL = Plan(telemetry=400_000, moves=200_000, batch=1000, unary=2000, runs=3)
QUICK = Plan(telemetry=60_000, moves=20_000, batch=500, unary=300, runs=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(source: Path, port: int, work: Path) -> Path:
    doc = yaml.safe_load(source.read_text())
    # The benchmark measures the router, not authentication (one check per call).
    doc["grpc"] = {"port": port, "auth": {"mode": "none"}}
    doc["metrics"] = {"port": None}
    path = work / "grpc-bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _requests(events: list[tuple[str, bytes]], batch: int) -> list[bytes]:
    return [
        router_pb2.PublishRequest(
            batch_id=i // batch,
            events=[router_pb2.SourceEvent(subject=s, data=d) for s, d in events[i : i + batch]],
        ).SerializeToString()
        for i in range(0, len(events), batch)
    ]


def _moves(first: int, n: int) -> list[tuple[str, bytes]]:
    ((subject, body),) = stock_move_templates()
    return [
        (subject, body.replace("{seq}", str(i)).replace("{stamp}", str(i)).encode())
        for i in range(first, first + n)
    ]


async def _publish_stream(channel: grpc.aio.Channel, requests: list[bytes]) -> dict[str, Any]:
    call: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
        "/millstream.v1.Router/PublishStream"
    )
    window = asyncio.Semaphore(WINDOW)

    async def send() -> Any:
        for r in requests:
            await window.acquire()
            yield r

    responses: list[bytes] = []
    start = time.perf_counter()
    async for resp in call(send()):
        responses.append(resp)
        window.release()
    elapsed = time.perf_counter() - start
    verdicts: dict[int, int] = {}
    for raw in responses:
        for v in router_pb2.PublishResponse.FromString(raw).verdicts:
            verdicts[v.status] = verdicts.get(v.status, 0) + 1
    n = sum(verdicts.values())
    accepted = verdicts.get(router_pb2.Verdict.ACCEPTED, 0)
    return {
        "events": n,
        "accepted": accepted,
        "elapsed_s": elapsed,
        "events_per_s": n / elapsed,
    }


async def _subscribe(channel: grpc.aio.Channel, n: int, max_batch: int) -> dict[str, Any]:
    call: grpc.aio.UnaryStreamMultiCallable[router_pb2.SubscribeRequest, bytes]
    call = channel.unary_stream(
        "/millstream.v1.Router/Subscribe",
        request_serializer=router_pb2.SubscribeRequest.SerializeToString,
    )
    request = router_pb2.SubscribeRequest(
        routes=["inventory-movements"], from_beginning=True, max_batch=max_batch
    )
    got = 0
    stream = call(request)
    start = time.perf_counter()
    async for raw in stream:
        got += len(router_pb2.SubscribeResponse.FromString(raw).events)
        if got >= n:
            break
    elapsed = time.perf_counter() - start
    stream.cancel()
    return {"events": got, "elapsed_s": elapsed, "events_per_s": got / elapsed}


async def _unary(channel: grpc.aio.Channel, requests: list[bytes]) -> dict[str, Any]:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/millstream.v1.Router/Publish"
    )
    for r in requests[:50]:  # warm-up: connection, caches, JIT-free but page-faulted paths
        await call(r)
    lat = []
    for r in requests[50:]:
        t = time.perf_counter()
        await call(r)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return {
        "calls": len(lat),
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max_ms": lat[-1],
    }


def _median(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["events_per_s"] for r in runs]
    s = spread(rates)
    return {
        "name": name,
        "events_per_s": statistics.median(rates),
        "runs": runs,
        "spread": s,
        "unstable": s > MAX_SPREAD,
    }


async def _measure(target: str, plan: Plan) -> list[dict[str, Any]]:
    options = [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20),
    ]
    async with grpc.aio.insecure_channel(target, options=options) as ch:
        await ch.channel_ready()
        telemetry = unique_telemetry(plan.telemetry * plan.runs + plan.unary)
        stream_runs = []
        for r in range(plan.runs):
            events = telemetry[r * plan.telemetry : (r + 1) * plan.telemetry]
            result = await _publish_stream(ch, _requests(events, plan.batch))
            print(
                f"publish_stream run {r + 1}: {result['events_per_s']:,.0f} events/s",
                file=sys.stderr,
            )
            stream_runs.append(result)
        moves = await _publish_stream(ch, _requests(_moves(1, plan.moves), plan.batch))
        print(
            f"publish_stream (at least once, stock moves): {moves['events_per_s']:,.0f} events/s",
            file=sys.stderr,
        )
        sub_runs = []
        for r in range(plan.runs):
            result = await _subscribe(ch, moves["accepted"], plan.batch)
            print(f"subscribe run {r + 1}: {result['events_per_s']:,.0f} events/s", file=sys.stderr)
            sub_runs.append(result)
        singles = [
            router_pb2.PublishRequest(
                events=[router_pb2.SourceEvent(subject=s, data=d)]
            ).SerializeToString()
            for s, d in telemetry[plan.telemetry * plan.runs :]
        ]
        unary = await _unary(ch, singles)
        move_singles = [
            router_pb2.PublishRequest(
                events=[router_pb2.SourceEvent(subject=s, data=d)]
            ).SerializeToString()
            for s, d in _moves(plan.moves + 1, plan.unary)
        ]
        unary_alo = await _unary(ch, move_singles)
    stream = _median("publish_stream", stream_runs)
    stream["batch"] = plan.batch
    stream["window"] = WINDOW
    stream["at_least_once"] = moves
    sub = _median("subscribe", sub_runs)
    sub["max_batch"] = plan.batch
    return [
        stream,
        sub,
        {
            "name": "publish_unary",
            **unary,
            "event": "telemetry (best effort)",
            "at_least_once": unary_alo,
        },
    ]


def run_grpc(config: Path, plan: Plan, work: Path) -> dict[str, Any]:
    port = _free_port()
    with EmbeddedNats(work / "nats") as server:
        print(f"nats-server {server.info.get('version')} at {server.url}", file=sys.stderr)
        router: Router = start_router("millstream", server.url, _config(config, port, work), work)
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                results = runner.run(_measure(f"127.0.0.1:{port}", plan))
        finally:
            router.stop()
        version = server.info.get("version")
    by = {r["name"]: r for r in results}
    return {
        "benchmark": "grpc",
        "machine": {**machine_info(), "nats_server": version, "grpcio": grpc.__version__},
        "config": str(config),
        "plan": plan.__dict__,
        "results": results,
        "targets": {
            **TARGETS,
            "met": {
                "publish_stream": by["publish_stream"]["events_per_s"] >= TARGETS["publish_stream"],
                "subscribe": by["subscribe"]["events_per_s"] >= TARGETS["subscribe"],
                "publish_unary_p99_ms": by["publish_unary"]["p99_ms"]
                < TARGETS["publish_unary_p99_ms"],
            },
        },
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="default: examples/manufacturing.yaml")
    p.add_argument("--json", type=Path, help="write the result here")
    p.add_argument("--quick", action="store_true", help="small runs (a few seconds)")


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    config = find_config(args.config).resolve()
    with tempfile.TemporaryDirectory(prefix="millstream-grpc-") as tmp:
        result = run_grpc(config, plan, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    return 0


def summary(result: dict[str, Any]) -> str:
    by = {r["name"]: r for r in result["results"]}
    met = result["targets"]["met"]
    mark = {True: "met", False: "MISSED"}
    ps, sub, un = by["publish_stream"], by["subscribe"], by["publish_unary"]
    alo = un["at_least_once"]

    def rate(r: dict[str, Any], key: str) -> str:
        flag = "  [unstable]" if r["unstable"] else ""
        return f"{r['events_per_s']:>12,.0f} events/s  (target 200k: {mark[met[key]]}){flag}"

    return "\n".join(
        [
            f"publish_stream  {rate(ps, 'publish_stream')}",
            f"subscribe       {rate(sub, 'subscribe')}",
            f"publish_unary   p50 {un['p50_ms']:.2f} ms  p99 {un['p99_ms']:.2f} ms  "
            f"(target p99 < 5 ms: {mark[met['publish_unary_p99_ms']]})",
            f"  at least once p50 {alo['p50_ms']:.2f} ms  p99 {alo['p99_ms']:.2f} ms",
        ]
    )
