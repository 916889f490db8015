"""Core NATS inputs against a real nats-server: read by the data plane's own ingest
connection (`plane/ingest_wire.rs`) when the URL is a plain `nats://` one, by async-nats
otherwise; with and without headers; shared by a queue group between two routers. The
reconnect after a server restart is in test_plane.py
(`test_nats_server_restart_under_load_loses_nothing`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from millstream.transport import EmbeddedNats

from .test_plane import EVENTS, EXAMPLE, running, wait_for

pytestmark = pytest.mark.integration

SAMPLE = json.loads((EVENTS / "telemetry_spindle_rpm.json").read_bytes())


def sample(i: int) -> bytes:
    """A distinct telemetry sample (its own observation time, so never a duplicate)."""
    return json.dumps(dict(SAMPLE, ts=SAMPLE["ts"] + i * 1000, value=i)).encode()


def config_file(tmp_path: Path, name: str, **changes: Any) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metrics"] = {"port": None}
    for key, value in changes.items():
        doc[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def routed(nc: NATS, publish: list[tuple[bytes, dict[str, str] | None]]) -> list[Msg]:
    """Publish telemetry samples (body, headers) and return their outputs."""
    out: list[Msg] = []
    sub = await nc.subscribe("mfg.telemetry.>")
    await nc.flush()
    for body, headers in publish:
        await nc.publish("mes.ham.cnc-12.telemetry", body, headers=headers)
    for _ in publish:
        out.append(await sub.next_msg(timeout=10))
    await sub.unsubscribe()
    return out


async def test_core_inputs_with_and_without_headers_come_through_the_ingest_connection(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    async with running(config_file(tmp_path, "plain"), nats_server.url, tmp_path) as svc:
        assert svc.stats()["nats"]["ingest"] == {
            "connected": True,
            "reconnects": 0,
            "disconnects": 0,
        }
        # the second is an HMSG: its body is the event, its header block is skipped
        outs = await routed(nc, [(sample(1), None), (sample(2), {"traceparent": "00-ab-cd-01"})])
        assert sorted(json.loads(m.data)["value"] for m in outs) == [1.0, 2.0]
        stats = svc.stats()
        assert stats["inputs"]["received"] == 2
        assert stats["by_status"]["routed"] == 2
        assert stats["nats"]["slow_consumer"] == 0


async def test_a_url_the_ingest_connection_cannot_serve_keeps_core_inputs_on_async_nats(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    # A path after the address is not a plain host:port: egress and ingest stay on async-nats.
    url = nats_server.url + "/"
    async with running(config_file(tmp_path, "fallback"), url, tmp_path) as svc:
        assert svc.stats()["nats"]["ingest"] is None
        assert svc.stats()["nats"]["egress"] is None
        outs = await routed(nc, [(sample(1), None), (sample(2), {"traceparent": "00-ab-cd-01"})])
        assert sorted(json.loads(m.data)["value"] for m in outs) == [1.0, 2.0]
        assert svc.stats()["inputs"]["received"] == 2


async def test_a_queue_group_shares_core_inputs_between_two_routers(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    n = 200
    nats_cfg = {"queue_group": "millstream-test"}
    a_cfg = config_file(tmp_path, "a", nats=nats_cfg, state={"enabled": False})
    b_cfg = config_file(tmp_path, "b", nats=nats_cfg, state={"enabled": False})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        running(a_cfg, nats_server.url, tmp_path / "a") as a,
        running(b_cfg, nats_server.url, tmp_path / "b") as b,
    ):
        outs: list[Msg] = []

        async def take(msg: Msg) -> None:
            outs.append(msg)

        await nc.subscribe("mfg.telemetry.>", cb=take)
        await nc.flush()
        for i in range(n):
            await nc.publish("mes.ham.cnc-12.telemetry", sample(i))
        await nc.flush()

        def received() -> int:
            return int(a.stats()["inputs"]["received"] + b.stats()["inputs"]["received"])

        async def all_out() -> bool:
            return len(outs) >= n and received() >= n

        await wait_for(all_out, 30, "every sample to be routed")
        # Each sample went to one of the two: without the group both would take all of them
        # (and each router's own dedup would let its copy through).
        assert received() == n
        assert sorted(json.loads(m.data)["value"] for m in outs) == [float(i) for i in range(n)]
        for svc in (a, b):
            assert svc.stats()["nats"]["ingest"]["connected"] is True
