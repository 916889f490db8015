"""The data plane against a real nats-server: every example route end to end, dead letters
and their headers, subject injection, and the fault tests of docs/reliability.md (kill -9 of
the router mid-stream, nats-server restarted under load, drain on SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import nats
import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from millstream.canonical import CANONICAL_MODELS
from millstream.config import load_config
from millstream.service import Service, async_run
from millstream.transport import EmbeddedNats

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "manufacturing.yaml"
EVENTS = ROOT / "examples" / "events"
CASES: list[dict[str, Any]] = yaml.safe_load((EVENTS / "cases.yaml").read_text())
MOVE = json.loads((EVENTS / "stock_move_done_dozens.json").read_text())


def fault_config(tmp_path: Path) -> Path:
    """The example config with short JetStream ack waits and frequent state snapshots, so a
    fault test sees redeliveries in seconds rather than the production 30 s."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for s in doc["sources"]:
        if "jetstream" in s:
            s["jetstream"]["ack_wait"] = "2s"
            s["jetstream"]["backoff"] = ["200ms"]
            # small pulls, for the same reason as the small lane below (the default 1024
            # took the whole backlog in before a fault arrived)
            s["jetstream"]["batch"] = 128
    doc["state"] = {"snapshot_every": "500ms"}
    # a small standard lane, so intake stays close to processing and most of a backlog is
    # still in the input stream when a fault arrives (a 50,000-event lane would take all of
    # it in at once, and a drain would then rightly finish it)
    doc["lanes"] = {"standard": {"queue": 1000, "batch": 128}}
    doc["metrics"] = {"port": None}
    path = tmp_path / "fault.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def stock_move(i: int) -> bytes:
    """A distinct Odoo stock.move write: its own record and version, so it is neither a
    duplicate nor stale, and it maps to exactly one output (route inventory-movements)."""
    body = dict(
        MOVE,
        _id=i,
        id=i,
        write_date=f"2026-11-27 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
    )
    return json.dumps(body, sort_keys=True).encode()


async def wait_for(cond: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def stream_ids(nc: NATS, stream: str) -> list[str]:
    """The ce-id of every message stored in `stream` (an ordered consumer, left behind by
    nothing)."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    n = info.state.messages
    ids: list[str] = []
    if n == 0:
        return ids
    sub = await js.subscribe(
        ">", stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    try:
        while len(ids) < n:
            msg = await sub.next_msg(timeout=5)
            ids.append(unquote((msg.headers or {})["ce-id"]))
    finally:
        await sub.unsubscribe()
    return ids


async def messages(nc: NATS, stream: str) -> int:
    return int((await nc.jetstream().stream_info(stream)).state.messages)


@asynccontextmanager
async def running(config: Path, url: str, store_dir: Path) -> AsyncIterator[Service]:
    """Millstream on `config`, in this process, against `url`, until the block ends."""
    started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    shutdown = asyncio.Event()
    task = asyncio.create_task(
        async_run(load_config(config), nats_url=url, shutdown=shutdown,
                  ready=started.set_result, metrics_port=None, store_dir=store_dir,
                  handle_signals=False)
    )  # fmt: skip
    await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield started.result()
    finally:
        shutdown.set()
        await task


@pytest.fixture
async def service(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Service]:
    """Millstream on the example config, in this process, against `nats_server`."""
    async with running(EXAMPLE, nats_server.url, tmp_path) as svc:
        yield svc


class Capture:
    """Every message on `>` (a subscriber a user would run to see everything)."""

    def __init__(self) -> None:
        self.msgs: list[Msg] = []

    async def take(self, msg: Msg) -> None:
        if not msg.subject.startswith(("$JS.", "_INBOX.", "$O.", "$KV.")):
            self.msgs.append(msg)

    def on(self, subject: str) -> list[Msg]:
        return [m for m in self.msgs if m.subject == subject]


async def publish_case(nc: NATS, case: dict[str, Any]) -> None:
    body = (EVENTS / case["file"]).read_bytes()
    if case["subject"].startswith("odoo."):
        await nc.jetstream().publish(case["subject"], body)
    else:
        await nc.publish(case["subject"], body)


async def test_every_example_case_end_to_end(service: Service, nc: NATS) -> None:
    seen = Capture()
    await nc.subscribe(">", cb=seen.take)
    for case in CASES:
        await publish_case(nc, case)
    await nc.flush()

    async def all_out() -> bool:
        s = service.stats()
        o = s["outputs"]
        return bool(
            s["events_in"] == len(CASES)
            and s["inputs"]["acked"] >= sum(c["subject"].startswith("odoo.") for c in CASES)
            and o["acked"] + o["published"] >= 1
            and o["dead_letters"] == sum(c["expect"]["status"] == "dead_letter" for c in CASES)
        )

    await wait_for(all_out, 20, "every example event to be routed or dead-lettered")
    await nc.flush()
    await asyncio.sleep(0.3)
    for case in CASES:
        body = (EVENTS / case["file"]).read_bytes()
        exp = case["expect"]
        if exp["status"] == "routed":
            for route, to in zip(exp["routes"], exp["to"], strict=True):
                got = [m for m in seen.on(to) if unquote(m.headers["Millstream-Route"]) == route]
                datas = [json.loads(m.data) for m in got]
                assert exp["data"] in datas, f"{case['name']}: nothing on {to} for {route}"
                m = got[datas.index(exp["data"])]
                h = {k: unquote(v) for k, v in (m.headers or {}).items()}
                assert h["ce-specversion"] == "1.0"
                assert h["ce-type"] == CANONICAL_MODELS[exp["type"]].ce_type()
                assert h["ce-source"] and h["ce-id"] and h["ce-dataschema"]
                assert h["content-type"] == "application/json"
                if case["subject"].startswith("odoo."):
                    # at-least-once output: JetStream dedup id, unique per route
                    assert h["Nats-Msg-Id"] == f"{h['ce-id']}@{route}"
        else:
            reason = exp["reason"]
            dl = [m for m in seen.on(f"millstream.dlq.{reason}") if m.data == body]
            assert dl, f"{case['name']}: no dead letter with reason {reason}"
            h = {k: unquote(v) for k, v in (dl[0].headers or {}).items()}
            assert h["Millstream-Reason"] == reason
            assert h["Millstream-Subject"] == case["subject"]
            assert h["Millstream-Config-Version"] == service.plan_version
            assert h["Millstream-Detail"]
            assert int(h["Millstream-Attempt"]) >= 1
    # dead letters are kept in their stream for `millstream dlq`
    dead = sum(c["expect"]["status"] == "dead_letter" for c in CASES)
    assert await messages(nc, "MILLSTREAM_DLQ") == dead


INJECTIONS = ["*", ">", "a.b", "press.>", "x y", "dus\tx", "..", "a\r\nPUB evil 1", "ü", ""]


async def test_the_data_plane_keeps_freed_memory_mapped(service: Service) -> None:
    # mimalloc's default returns memory left free for a second to the OS; the router's batch
    # buffers then fault it back in, which stalled batches for tens of ms (BENCHMARKS.md).
    # A running plane turns purging off unless MIMALLOC_PURGE_DELAY chooses otherwise.
    # The example's 128 MiB pretouch is skipped when the memory would be given back anyway.
    expected = int(os.environ.get("MIMALLOC_PURGE_DELAY", "-1"))
    assert service.stats()["allocator"] == {
        "purge_delay_ms": expected,
        "pretouched_bytes": 128 << 20 if expected == -1 else 0,
    }


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
async def test_a_router_has_its_heap_faulted_in_before_it_routes(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    # Without it, the router's buffers grew into fresh pages under the first load, and on a
    # VM that backs memory lazily the faults stalled routing for 0.3-2 s (BENCHMARKS.md).
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    resident = {}
    for mib in (0, 128):
        config = tmp_path / f"pretouch-{mib}.yaml"
        config.write_text(EXAMPLE.read_text() + f"\nmemory: {{pretouch_mib: {mib}}}\n")
        ready = tmp_path / f"ready-{mib}"
        router = start_router(config, nats_server.url, tmp_path / "router.log", ready, env)
        try:
            await routing(ready)
            resident[mib] = resident_mib(router.pid)
        finally:
            router.terminate()
            router.wait(30)
    # the whole 128 MiB is resident at ready, not only what starting up happened to touch.
    # Startup's own allocations may land in the pretouched pages (that is what they are for),
    # so the difference can fall short of 128 by about what startup allocates (8.4 MiB once).
    assert resident[128] - resident[0] >= 110, resident


async def test_subject_injection_never_reaches_a_subject(service: Service, nc: NATS) -> None:
    seen = Capture()
    await nc.subscribe(">", cb=seen.take)
    base = json.loads((EVENTS / "telemetry_spindle_rpm.json").read_text())
    for i, bad in enumerate(INJECTIONS):
        for field in ("machine", "metric"):
            body = dict(base, **{field: bad, "ts": base["ts"] + i})
            await nc.publish("mes.dus.press-07.telemetry", json.dumps(body).encode())
    await nc.flush()
    n = 2 * len(INJECTIONS)

    async def done() -> bool:
        return bool(service.stats()["events_in"] == n)

    await wait_for(done, 10, "the injected events to be processed")
    await asyncio.sleep(0.3)
    outputs = [m.subject for m in seen.msgs if m.subject.startswith("mfg.")]
    assert outputs == [], f"an injected value reached a subject: {outputs}"
    for m in seen.msgs:
        tokens = m.subject.split(".")
        assert "*" not in tokens and ">" not in tokens, m.subject
    stats = service.stats()
    assert stats["by_status"]["dead_letter"] == n
    assert set(stats["by_reason"]) <= {"subject_rejected", "canonical_invalid"}


def start_router(
    config: Path, url: str, log: Path, ready: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`millstream run` as its own process, so it can be killed like a real deployment;
    `ready` is written once it routes (see `routing`)."""
    cmd = [sys.executable, "-m", "millstream.cli", "run", str(config), "--nats-url", url,
           "--no-metrics"]  # fmt: skip
    if ready is not None:
        ready.unlink(missing_ok=True)
        cmd += ["--ready-file", str(ready)]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


async def routing(ready: Path) -> None:
    """Until a router started with `ready` routes: its inputs are subscribed, so a core NATS
    event published now is not missed (its streams exist earlier, before the heap is faulted
    in and the data plane starts)."""

    async def written() -> bool:
        return ready.exists()

    await wait_for(written, 60, "the router to route")


async def publish_moves(nc: NATS, first: int, n: int) -> None:
    js = nc.jetstream()
    for start in range(first, first + n, 200):
        acks = [
            js.publish("odoo.stock_move", stock_move(i))
            for i in range(start, min(start + 200, first + n))
        ]
        await asyncio.gather(*acks)


async def consumer_done(nc: NATS) -> bool:
    info = await nc.jetstream().consumer_info("ODOO_IN", "millstream-odoo-stock-move")
    return info.num_pending == 0 and info.num_ack_pending == 0


N_FAULT = 10_000


async def router_mid_stream(
    config: Path, url: str, nc: NATS, log: Path, fault: Callable[[subprocess.Popen[bytes]], None]
) -> subprocess.Popen[bytes]:
    """`millstream run` with a backlog of N_FAULT stock moves, and `fault` done to it once a
    tenth of them are routed. The backlog is in the input stream before the router starts
    (as after an outage), so a fault lands mid-stream however fast the router is.

    The fault is done from the callback of a subscription to the outputs, as the tenth part
    of them goes by, not after a poll of the output stream: a fast router stored the other
    nine tenths between two polls 100 ms apart, and once between two 10 ms apart."""
    await nc.jetstream().add_stream(name="ODOO_IN", subjects=["odoo.>"])
    await publish_moves(nc, 1, N_FAULT)
    seen = 0
    faulted = asyncio.Event()

    async def count(_msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen == N_FAULT // 10:
            fault(router)
            faulted.set()

    sub = await nc.subscribe("mfg.inventory.movement.>", cb=count)
    await nc.flush()
    router = start_router(config, url, log)
    try:
        await asyncio.wait_for(faulted.wait(), 60)
    except BaseException:
        router.kill()
        router.wait()
        raise
    finally:
        await sub.unsubscribe()
    return router


async def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    config = fault_config(tmp_path)
    log = tmp_path / "router.log"
    # SIGKILL: no drain, no snapshot, acks in flight lost
    router = await router_mid_stream(config, nats_server.url, nc, log, lambda r: r.kill())
    try:
        assert router.wait(10) == -signal.SIGKILL
        out_at_kill = await messages(nc, "MFG_OUT")
        assert out_at_kill < N_FAULT, "the router finished before it could be killed"
        print(f"reliability: kill -9 with {out_at_kill}/{N_FAULT} outputs stored")

        router = start_router(config, nats_server.url, log)
        await wait_for(lambda: consumer_done(nc), 90, "the restarted router to finish the backlog")
        router.send_signal(signal.SIGTERM)
        assert router.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if router.poll() is None:
            router.kill()
    ids = await stream_ids(nc, "MFG_OUT")
    expected = {f"odoo-stock.move-{i}-" for i in range(1, N_FAULT + 1)}
    got = {i.rsplit("-2026", 1)[0] + "-" for i in ids}
    assert len(got) == N_FAULT and got == expected, f"lost {len(expected - got)}"
    assert len(ids) == N_FAULT, f"{len(ids) - len(set(ids))} duplicate outputs"
    print(f"reliability: after restart {len(ids)} outputs, {len(set(ids))} distinct")


async def publish_through_outage(nc: NATS, first: int, n: int) -> None:
    """Publish like a careful producer: each event until its PubAck, retried across an
    outage; the message id makes a retry of a stored event a no-op in the input stream."""
    js = nc.jetstream()

    async def one(i: int) -> None:
        while True:
            try:
                await js.publish(
                    "odoo.stock_move",
                    stock_move(i),
                    timeout=1,
                    headers={"Nats-Msg-Id": f"move-{i}"},
                )
                return
            except Exception:
                await asyncio.sleep(0.2)

    for start in range(first, first + n, 100):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 100, first + n))))
        await asyncio.sleep(0.01)  # a steady stream rather than one burst


async def test_nats_server_restart_under_load_loses_nothing(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    config = load_config(fault_config(tmp_path))
    started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    shutdown = asyncio.Event()
    task = asyncio.create_task(
        async_run(config, nats_url=nats_server.url, shutdown=shutdown, ready=started.set_result,
                  metrics_port=None, store_dir=tmp_path, handle_signals=False)
    )  # fmt: skip
    svc = await started
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        producer = asyncio.create_task(publish_through_outage(nc, 1, N_FAULT))

        async def busy() -> bool:
            return bool(svc.stats()["outputs"]["acked"] >= N_FAULT // 5)

        await wait_for(busy, 60, "routing to be under way")
        acked_before = svc.stats()["outputs"]["acked"]
        # stop the server while events still arrive and PubAcks are in flight
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, nats_server.stop)
        await asyncio.sleep(1.0)
        await loop.run_in_executor(None, nats_server.start)
        await producer
        await wait_for(lambda: consumer_done(nc), 120, "the backlog after the restart")
        stats = svc.stats()
        assert acked_before < N_FAULT, "the router finished before the server was stopped"
        assert stats["nats"]["reconnects"] >= 1
        print(
            f"reliability: server stopped at {acked_before}/{N_FAULT} outputs acked; "
            f"reconnects {stats['nats']['reconnects']}, naks {stats['outputs']['naks']}, "
            f"failed outputs {stats['outputs']['failed']}, received {stats['inputs']['received']}"
        )
        ids = await stream_ids(nc, "MFG_OUT")
        assert len(set(ids)) == N_FAULT, f"lost {N_FAULT - len(set(ids))}"
        assert len(ids) == N_FAULT, f"{len(ids) - len(set(ids))} duplicate outputs"

        # best-effort outputs leave by the egress connection, which reconnected too
        async def egress_up() -> bool:
            return bool(svc.stats()["nats"]["egress"]["connected"])

        await wait_for(egress_up, 30, "the egress connection to reconnect")
        assert svc.stats()["nats"]["egress"]["reconnects"] >= 1

        # core inputs come by the ingest connection, which reconnected and subscribed again
        # (it counts as connected once the server has answered the PING after its SUBs)
        async def ingest_up() -> bool:
            return bool(svc.stats()["nats"]["ingest"]["connected"])

        await wait_for(ingest_up, 30, "the ingest connection to reconnect")
        assert svc.stats()["nats"]["ingest"]["reconnects"] >= 1
        sub = await nc.subscribe("mfg.telemetry.>")
        await nc.flush()
        sample = (EVENTS / "telemetry_spindle_rpm.json").read_bytes()
        await nc.publish("mes.dus.press-07.telemetry", sample)
        msg = await sub.next_msg(timeout=10)
        assert msg.headers is not None
        assert msg.headers["ce-type"] == CANONICAL_MODELS["machine_telemetry"].ce_type()
    finally:
        shutdown.set()
        await task
        await nc.drain()


async def test_sigterm_drains_and_loses_no_acknowledged_event(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    config = fault_config(tmp_path)
    log = tmp_path / "router.log"
    sigterm = lambda r: r.send_signal(signal.SIGTERM)  # noqa: E731
    router = await router_mid_stream(config, nats_server.url, nc, log, sigterm)
    try:
        assert router.wait(30) == 0, log.read_text()[-3000:]
        info = await nc.jetstream().consumer_info("ODOO_IN", "millstream-odoo-stock-move")
        acked = N_FAULT - info.num_pending - info.num_ack_pending
        out = await messages(nc, "MFG_OUT")
        # drain left nothing delivered-but-unacked, and every acked input has its output
        # stored (one output per input)
        assert info.num_ack_pending == 0
        assert out == acked > 0
        assert acked < N_FAULT, "the router finished before SIGTERM arrived"
        print(
            f"reliability: SIGTERM: {acked} inputs acked, {out} outputs stored, "
            f"{info.num_ack_pending} delivered but not acked, {info.num_pending} pending"
        )
        text = log.read_text()
        assert "draining the data plane" in text and "drained" in text

        router = start_router(config, nats_server.url, log)
        await wait_for(lambda: consumer_done(nc), 90, "the second run to finish the backlog")
        router.send_signal(signal.SIGTERM)
        assert router.wait(30) == 0
    finally:
        if router.poll() is None:
            router.kill()
    ids = await stream_ids(nc, "MFG_OUT")
    assert len(set(ids)) == N_FAULT
    assert len(ids) == N_FAULT


async def run_service(
    config_path: Path, url: str, store: Path, body: Callable[[Service], Awaitable[None]], **kw: Any
) -> dict[str, Any]:
    """Start the service in this process, run `body`, drain; returns the final stats."""
    config = load_config(config_path)
    started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    shutdown = asyncio.Event()
    task = asyncio.create_task(
        async_run(config, nats_url=url, shutdown=shutdown, ready=started.set_result,
                  store_dir=store, handle_signals=False, **{"metrics_port": None, **kw})
    )  # fmt: skip
    await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        await body(started.result())
    finally:
        shutdown.set()
    return await task


async def test_dedup_and_stale_state_survive_a_restart(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    sample = (EVENTS / "telemetry_spindle_rpm.json").read_bytes()
    newer = stock_move(7)
    older = json.dumps(dict(json.loads(newer), write_date="2026-01-01 00:00:00")).encode()

    async def first(svc: Service) -> None:
        await nc.publish("mes.ham.cnc-12.telemetry", sample)
        await nc.jetstream().publish("odoo.stock_move", newer)

        async def both() -> bool:
            return bool(svc.stats()["by_status"]["routed"] == 2)

        await wait_for(both, 10, "both events to be routed")

    await run_service(EXAMPLE, nats_server.url, tmp_path, first)

    async def second(svc: Service) -> None:
        # the same telemetry sample again (best effort: only the snapshot can know it) and
        # an older write of the same stock move (the stale guard's snapshot)
        await nc.publish("mes.ham.cnc-12.telemetry", sample)
        await nc.jetstream().publish("odoo.stock_move", older)

        async def both() -> bool:
            return bool(svc.stats()["events_in"] == 2)

        await wait_for(both, 10, "both events to be processed")

    final = await run_service(EXAMPLE, nats_server.url, tmp_path, second)
    assert final["by_status"]["duplicate"] == 1
    assert final["by_status"]["stale"] == 1
    assert final["routes"]["telemetry-history"]["duplicate"] == 1
    assert final["routes"]["inventory-movements"]["stale"] == 1
    assert final["outputs"]["published"] == 0


async def test_prometheus_endpoint_reports_the_running_router(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    import urllib.request

    sample = (EVENTS / "telemetry_spindle_rpm.json").read_bytes()

    async def body(svc: Service) -> None:
        await nc.publish("mes.ham.cnc-12.telemetry", sample)
        await nc.publish("mes.ham.cnc-12.telemetry", sample)
        await nc.publish("mes.ham.cnc-12.telemetry", b"{not json")

        async def done() -> bool:
            return bool(svc.stats()["events_in"] == 3)

        await wait_for(done, 10, "three events")
        assert svc.metrics is not None
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(
            None, lambda: urllib.request.urlopen(svc.metrics.url, timeout=5).read().decode()
        )
        lines = set(text.splitlines())
        assert 'millstream_events_total{route="telemetry-history",status="out"} 1.0' in lines
        assert 'millstream_events_total{route="telemetry-history",status="duplicate"} 1.0' in lines
        assert 'millstream_dead_letters_total{reason="malformed_json"} 1.0' in lines
        assert any(
            ln.startswith('millstream_lane_latency_seconds_count{lane="bulk"} 3') for ln in lines
        )
        assert 'millstream_lane_queue_capacity{lane="critical"} 10000.0' in lines

    await run_service(EXAMPLE, nats_server.url, tmp_path, body, metrics_port=0)


async def test_failed_output_naks_then_dead_letters_then_replays_after_the_fix(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    from millstream import dlq

    js = nc.jetstream()
    moves = [stock_move(i) for i in (101, 102, 103)]

    async def body(svc: Service) -> None:
        # the output stream disappears (an operator mistake, a lost cluster): every
        # at-least-once publish is refused
        out_cfg = (await js.stream_info("MFG_OUT")).config
        await js.delete_stream("MFG_OUT")
        for m in moves:
            await js.publish("odoo.stock_move", m)

        async def dead() -> bool:
            return bool(svc.stats()["outputs"]["dead_letters"] == len(moves))

        await wait_for(dead, 30, "the events to exhaust max_deliver")
        stats = svc.stats()
        # max_deliver 5: four naks with backoff, then the dead letter on the fifth delivery
        assert stats["outputs"]["naks"] == 4 * len(moves)
        assert stats["inputs"]["received"] == 5 * len(moves)
        assert await consumer_done(nc), "the inputs are acked once they are dead letters"
        letters = await dlq.list_dead_letters(js, "MILLSTREAM_DLQ", reason="output_failed")
        assert sorted(d.payload for d in letters) == sorted(moves)
        assert {d.attempt for d in letters} == {5}
        # the detail says which output failed and why
        assert all(
            "route inventory-movements: no stream found" in (d.detail or "") for d in letters
        ), letters[0].detail

        # the fix: the stream is back; replay what was kept
        await js.add_stream(out_cfg)
        report = await dlq.replay(
            js, nc, "MILLSTREAM_DLQ", dlq.DeadLetterFilter(reason="output_failed"), remove=True
        )
        assert len(report.replayed) == len(moves) and not report.failed

        async def delivered() -> bool:
            return await messages(nc, "MFG_OUT") == len(moves)

        await wait_for(delivered, 20, "the replayed events to reach MFG_OUT")
        assert await messages(nc, "MILLSTREAM_DLQ") == 0

    await run_service(fault_config(tmp_path), nats_server.url, tmp_path, body)


async def telemetry_across_a_kill_9(
    nats_server: EmbeddedNats,
    nc: NATS,
    tmp_path: Path,
    before_sample_2: Callable[[], Awaitable[None]] | None = None,
    before_kill: Callable[[], Awaitable[None]] | None = None,
) -> list[bytes]:
    """Telemetry samples 1 and 2 routed with snapshots every 500 ms (1 saved whole, 2 only in
    a delta), the router killed with SIGKILL and restarted, then samples 1, 2 and 3 sent
    again; returns every telemetry output. The hooks run before sample 2 is sent and before
    the kill."""
    config = fault_config(tmp_path)  # snapshots every 500 ms
    log = tmp_path / "router.log"
    base = json.loads((EVENTS / "telemetry_spindle_rpm.json").read_text())

    def sample(i: int) -> bytes:
        return json.dumps(dict(base, ts=base["ts"] + i)).encode()

    outputs: list[bytes] = []

    async def take(msg: Msg) -> None:
        outputs.append(msg.data)

    await nc.subscribe("mfg.telemetry.>", cb=take)

    async def routed(n: int) -> None:
        async def enough() -> bool:
            return len(outputs) >= n

        await wait_for(enough, 30, f"{n} telemetry outputs")

    ready = tmp_path / "router.ready"
    router = start_router(config, nats_server.url, log, ready)
    try:
        await routing(ready)
        await nc.publish("mes.ham.cnc-12.telemetry", sample(1))
        await routed(1)
        await asyncio.sleep(1.5)  # a full snapshot, then deltas
        if before_sample_2:
            await before_sample_2()
        await nc.publish("mes.ham.cnc-12.telemetry", sample(2))
        await routed(2)
        await asyncio.sleep(1.5)  # sample 2 is only in a delta
        if before_kill:
            await before_kill()
        router.kill()
        router.wait(10)

        router = start_router(config, nats_server.url, log, ready)
        await routing(ready)
        for i in (1, 2, 3):
            await nc.publish("mes.ham.cnc-12.telemetry", sample(i))
        await routed(3)
        await asyncio.sleep(0.5)
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(30)
    return outputs


async def test_dedup_state_from_base_and_deltas_survives_kill_9(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    outputs = await telemetry_across_a_kill_9(nats_server, nc, tmp_path)
    # samples 1 (base) and 2 (delta) were judged duplicates after the crash; 3 is new
    assert len(outputs) == 3, [json.loads(o)["observed_at"] for o in outputs]


async def test_keys_of_a_failed_save_are_in_the_next_one(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    """A save that fails (here the state bucket is gone, as after an operator's mistake)
    has taken its changes from the router; the next save must write them anyway, or a
    restart lets their duplicates through."""
    from nats.js.api import ObjectStoreConfig

    js = nc.jetstream()

    async def lose_the_bucket() -> None:
        await js.delete_object_store("MILLSTREAM_STATE")

    async def bring_it_back() -> None:
        # the saves meanwhile failed: sample 2's delta is lost
        await js.create_object_store("MILLSTREAM_STATE", ObjectStoreConfig())
        await asyncio.sleep(1.5)  # the saves succeed again

    outputs = await telemetry_across_a_kill_9(
        nats_server, nc, tmp_path, before_sample_2=lose_the_bucket, before_kill=bring_it_back
    )
    # both samples came back from the save after the failures; only 3 is new
    assert len(outputs) == 3, [json.loads(o)["observed_at"] for o in outputs]


async def test_periodic_snapshots_are_paced_to_the_configured_rate(
    tmp_path: Path, nats_server: EmbeddedNats, nc: NATS
) -> None:
    """`state.snapshot_bytes_per_s` bounds how fast periodic saves reach the object store:
    6,000 telemetry keys (144 kB) at 12 kB/s take about 12 s to be saved, where unpaced they
    are one burst. A lower bound only: a slow machine can only make the save later."""
    doc = yaml.safe_load(fault_config(tmp_path).read_text())
    doc["state"] = {"snapshot_every": "500ms", "snapshot_bytes_per_s": 12_000}
    config = tmp_path / "paced.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    base = json.loads((EVENTS / "telemetry_spindle_rpm.json").read_text())
    n = 6_000
    routed = 0

    async def take(msg: Msg) -> None:
        nonlocal routed
        routed += 1

    await nc.subscribe("mfg.telemetry.>", cb=take)
    ready = tmp_path / "router.ready"
    router = start_router(config, nats_server.url, tmp_path / "router.log", ready)
    try:
        await routing(ready)
        for i in range(n):
            await nc.publish(
                "mes.ham.cnc-12.telemetry", json.dumps(dict(base, ts=base["ts"] + i)).encode()
            )

        async def all_routed() -> bool:
            return routed >= n

        await wait_for(all_routed, 30, f"{n} telemetry outputs")
        started = time.monotonic()
        store = await nc.jetstream().object_store("MILLSTREAM_STATE")

        async def saved() -> bool:
            # the keys may be split between the base and deltas, whichever saves took them
            try:
                objects = await store.list()
            except NotFoundError:  # no objects yet
                return False
            sizes = [o.size or 0 for o in objects if "telemetry-history" in o.name]
            return sum(sizes) >= n * 24

        await wait_for(saved, 60, "snapshots holding every telemetry key")
        took = time.monotonic() - started
    finally:
        router.send_signal(signal.SIGTERM)
        router.wait(30)
    # 144 kB at 12 kB/s is 12 s. A save that took keys before `started` has been sending
    # for at most one snapshot interval (0.5 s) more, and the token bucket starts with
    # 0.1 s of credit: well over 4 s remain
    assert took >= 4.0, f"the paced snapshots were saved after {took:.1f} s"
