"""The service lifecycle against a real nats-server: start (embedded server or given URL,
provisioning, plane, metrics), graceful drain in order, failures that leave nothing running.

The plane is the real `millstream._core.Plane` when the extension has it, and a stand-in
that records calls otherwise (and for the failure paths)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import millstream._core as core
from millstream.config import Config, compile_plan, load_config
from millstream.errors import ConnectError, PlaneError
from millstream.service import Service, async_run
from millstream.transport import EmbeddedNats

from ..conftest import EXAMPLES, ROOT
from .standin_plane import StandInPlane, make_standin, scrape

pytestmark = pytest.mark.integration

HAS_PLANE = hasattr(core, "Plane")


@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    # Every log call builds its record, so a bad `extra=` fails here, not in production.
    caplog.set_level(logging.DEBUG)


@pytest.fixture
def example() -> Config:
    return load_config(EXAMPLES / "manufacturing.yaml")


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[StandInPlane]]:
    cls = make_standin()
    monkeypatch.setattr(core, "Plane", cls, raising=False)
    yield cls


@pytest.fixture(params=["stand-in", "real"])
def plane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "real":
        if not HAS_PLANE:
            pytest.skip("the extension was built without the data plane")
    else:
        monkeypatch.setattr(core, "Plane", make_standin(), raising=False)
    kind: str = request.param
    return kind


async def start(config: Config, **kwargs: Any) -> tuple[Service, asyncio.Task[dict[str, Any]]]:
    """Run the service in a task; return it once `ready` has been called."""
    loop = asyncio.get_running_loop()
    up: asyncio.Future[Service] = loop.create_future()
    kwargs.setdefault("handle_signals", False)
    task = asyncio.create_task(async_run(config, ready=up.set_result, **kwargs))
    done, _ = await asyncio.wait({task, up}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what stopped it
    assert up in done, "the service did not become ready within 60s"
    return up.result(), task


def port_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


async def test_embedded_server_provisioning_metrics_and_ordered_drain(
    tmp_path: Path, example: Config, plane: str
) -> None:
    service, task = await start(example, nats_url=None, metrics_port=0, store_dir=tmp_path)
    # No URL anywhere: an embedded nats-server, its data under store_dir/nats.
    assert service.embedded is not None and service.embedded.running
    assert service.url == service.embedded.url
    assert (tmp_path / "nats" / "jetstream").is_dir()
    js = service.nc.jetstream()
    assert (await js.stream_info("ODOO_IN")).config.subjects == ["odoo.>"]
    await js.consumer_info("ODOO_IN", "millstream-odoo-quality-alert")
    await js.stream_info("MILLSTREAM_DLQ")

    assert service.metrics is not None
    lines = await asyncio.to_thread(scrape, service.metrics.url)
    assert "millstream_plane_up 1.0" in lines
    assert 'millstream_nats_connected{client="control"} 1.0' in lines
    assert 'millstream_nats_connected{client="data"} 1.0' in lines
    version = compile_plan(example)["version"]
    assert f'millstream_config_info{{name="acme-dus-router",plan_version="{version}"}} 1.0' in lines
    assert 'millstream_lane_objective_seconds{lane="critical"} 0.01' in lines

    if plane == "stand-in":
        cls = type(service.plane)
        assert isinstance(service.plane, StandInPlane)
        assert service.plane.spec["url"] == service.url
        assert len(service.plane.spec["inputs"]) == len(example.sources)
        assert service.plane.plan["version"] == version

        def look() -> dict[str, Any]:
            assert service.metrics is not None
            return {
                "metrics": "millstream_plane_up 1.0" in scrape(service.metrics.url),
                "nats": service.nc.is_connected,
            }

        cls.during_drain = look  # type: ignore[attr-defined]

    embedded, metrics_url = service.embedded, service.metrics.url
    service.stop()
    final = await asyncio.wait_for(task, 60)
    assert "events_in" in final

    if plane == "stand-in":
        assert isinstance(service.plane, StandInPlane)
        assert service.plane.drains == [30.0]  # once, with the default timeout
        # The plane drained first: metrics were still served and NATS still connected.
        assert service.plane.seen_during_drain == {"metrics": True, "nats": True}
    assert not service.plane.running
    assert service.nc.is_closed
    assert not embedded.running
    with pytest.raises(OSError):
        await asyncio.to_thread(scrape, metrics_url)


async def test_a_given_url_is_used_and_nothing_is_embedded(
    tmp_path: Path, nats_server: EmbeddedNats, example: Config, plane: str
) -> None:
    service, task = await start(
        example, nats_url=nats_server.url, metrics_port=None, store_dir=tmp_path / "store"
    )
    assert service.embedded is None
    assert service.metrics is None
    assert service.url == nats_server.url
    assert not (tmp_path / "store").exists()
    service.stop()
    await asyncio.wait_for(task, 60)
    assert nats_server.running  # not ours to stop


async def test_a_plane_that_cannot_start_leaves_nothing_running(
    tmp_path: Path,
    example: Config,
    standin: type[StandInPlane],
    caplog: pytest.LogCaptureFixture,
) -> None:
    standin.fail_start = "cannot connect to NATS at nowhere"
    with pytest.raises(PlaneError, match="cannot connect to NATS at nowhere"):
        await async_run(example, nats_url=None, metrics_port=0, store_dir=tmp_path)
    (started,) = [r for r in caplog.records if r.getMessage().startswith("no NATS URL")]
    port = int(started.url.rsplit(":", 1)[1])  # type: ignore[attr-defined]
    assert port_closed(port)
    assert any("embedded nats-server stopped" in r.getMessage() for r in caplog.records)


async def test_a_plane_that_stops_on_its_own_stops_the_service(
    tmp_path: Path, nats_server: EmbeddedNats, example: Config, standin: type[StandInPlane]
) -> None:
    service, task = await start(example, nats_url=nats_server.url, metrics_port=None)
    assert isinstance(service.plane, StandInPlane)
    service.plane.stop_on_its_own()
    with pytest.raises(PlaneError, match="stopped on its own"):
        await asyncio.wait_for(task, 30)
    assert service.plane.drains == [30.0]  # still drained: acks what it can
    assert service.nc.is_closed


async def test_shutdown_while_starting_stops_cleanly(
    tmp_path: Path, example: Config, standin: type[StandInPlane]
) -> None:
    stop = asyncio.Event()
    stop.set()
    final = await async_run(
        example,
        nats_url="nats://127.0.0.1:1",  # unreachable: start-up would wait for it
        shutdown=stop,
        handle_signals=False,
        metrics_port=None,
    )
    assert final == {}
    assert standin.instances == []


async def test_unreachable_nats_is_a_clear_error(example: Config) -> None:
    with pytest.raises(ConnectError, match=r"cannot connect to NATS at nats://127\.0\.0\.1:1 "):
        await async_run(
            example,
            nats_url="nats://127.0.0.1:1",
            connect_timeout=1,
            handle_signals=False,
            metrics_port=None,
        )


# Runs `millstream.service.run` as a process with the stand-in plane (or the real one).
RUNNER = """
import sys
import millstream._core as core
if sys.argv[3] == "stand-in":
    from tests.integration.standin_plane import make_standin
    core.Plane = make_standin()
from millstream.logs import setup_logging
from millstream.service import run
setup_logging(json=True)
sys.exit(run(sys.argv[1], metrics_port=0, store_dir=sys.argv[2]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_drains_on_a_signal_and_exits_0(tmp_path: Path, plane: str, sig: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(EXAMPLES / "manufacturing.yaml"), str(tmp_path), plane],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stderr is not None
    try:
        log: list[dict[str, Any]] = []
        for raw in proc.stderr:
            log.append(json.loads(raw))
            if log[-1]["msg"] == "ready":
                break
        else:
            pytest.fail(f"no 'ready' line; exit {proc.wait()}: {log}")
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log += [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 0, log
    msgs = [r["msg"] for r in log]
    assert msgs.index("draining the data plane") < msgs.index("drained")
    assert msgs.index("drained") < msgs.index("embedded nats-server stopped")
    started = next(r for r in log if r["msg"].startswith("no NATS URL"))
    assert started["level"] == "info" and started["url"].startswith("nats://127.0.0.1:")
    assert all(r["level"] not in ("error", "critical") for r in log), log


real_plane = pytest.mark.skipif(not HAS_PLANE, reason="the extension has no data plane")


async def wait_for(check: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@real_plane
async def test_odoo_event_is_routed_acked_counted_and_deduplicated_across_a_restart(
    tmp_path: Path, example: Config
) -> None:
    alert = (EXAMPLES / "events" / "quality_alert_priority3.json").read_bytes()
    service, task = await start(example, nats_url=None, metrics_port=0, store_dir=tmp_path)
    js = service.nc.jetstream()
    await js.publish("odoo.quality_alert", alert)
    await js.publish("odoo.quality_alert", b"{not json")

    async def both_acked() -> bool:
        info = await js.consumer_info("ODOO_IN", "millstream-odoo-quality-alert")
        return bool(info.ack_floor.stream_seq == 2)

    await wait_for(both_acked)
    hold = await js.get_last_msg("MFG_OUT", "mfg.quality.hold.open")
    urgent = await js.get_last_msg("MFG_OUT", "mfg.alerts.quality")
    assert hold.headers is not None and urgent.headers is not None
    assert hold.headers["ce-type"] == urgent.headers["ce-type"]
    assert json.loads(hold.data or b"{}")["hold_id"] == "12"
    dead = await js.get_last_msg("MILLSTREAM_DLQ", "millstream.dlq.malformed_json")
    assert dead.data == b"{not json"
    assert service.metrics is not None
    lines = await asyncio.to_thread(scrape, service.metrics.url)
    assert 'millstream_events_total{route="quality-holds",status="out"} 1.0' in lines
    assert 'millstream_dead_letters_total{reason="malformed_json"} 1.0' in lines
    assert 'millstream_inputs_total{result="acked"} 2.0' in lines
    service.stop()
    await asyncio.wait_for(task, 60)

    # Same store: the server keeps its streams, the plane restores its dedup state.
    service, task = await start(example, nats_url=None, metrics_port=None, store_dir=tmp_path)
    assert all(line.endswith(("up to date", "exists")) for line in service.provisioned), (
        service.provisioned
    )
    js = service.nc.jetstream()
    await js.publish("odoo.quality_alert", alert)  # the same write, delivered again

    async def acked_again() -> bool:
        info = await js.consumer_info("ODOO_IN", "millstream-odoo-quality-alert")
        return bool(info.ack_floor.stream_seq == 3)

    await wait_for(acked_again)
    assert service.stats()["by_status"]["duplicate"] == 1
    assert (await js.stream_info("MFG_OUT")).state.messages == 2
    service.stop()
    await asyncio.wait_for(task, 60)
