"""SIGHUP reloads the configuration file of a running `millstream run`, as nats-server and
Vector do: routes change without a restart; a file that cannot be applied is logged and the
running configuration kept. (Reload under load over gRPC: test_grpc_router.py.)"""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats.aio.client import Client as NATS

from millstream.transport import EmbeddedNats

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "manufacturing.yaml"
SAMPLE = (ROOT / "examples" / "events" / "telemetry_oil_temp_degf.json").read_bytes()


def write(path: Path, history_to: str) -> None:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    for r in doc["routes"]:
        if r["name"] == "telemetry-history":
            r["to"] = history_to
            r.pop("dedup", None)  # the same sample is sent more than once here
    doc["metrics"] = {"port": None}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


class Log:
    """The router's JSON log lines, read on a thread as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        assert proc.stderr is not None
        self.stderr = proc.stderr
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.stderr:
            self.lines.put(json.loads(line))

    def close(self) -> None:
        self.reader.join(timeout=10)
        self.stderr.close()

    def wait_for(self, msg: str, timeout: float = 30.0) -> dict[str, Any]:
        while True:
            record = self.lines.get(timeout=timeout)
            if record["msg"].startswith(msg):
                return record


async def routed_to(nc: NATS, prefix: str) -> str:
    sub = await nc.subscribe(f"{prefix}.>")
    await nc.flush()
    await nc.publish("mes.dus.press-07.telemetry", SAMPLE)
    msg = await sub.next_msg(timeout=10)
    await sub.unsubscribe()
    return msg.subject


async def test_sighup_reloads_the_file_and_keeps_running_on_a_bad_one(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    config = tmp_path / "plant.yaml"
    write(config, "mfg.telemetry.{plant}.{machine_id}.{metric}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "millstream.cli", "--log-json", "run", str(config),
         "--nats-url", nats_server.url, "--no-metrics", "--store-dir", str(tmp_path)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = Log(proc)
    try:
        log.wait_for("ready")
        assert await routed_to(nc, "mfg.telemetry") == "mfg.telemetry.dus.press-07.oil_temp"

        write(config, "mfg.history.{plant}.{machine_id}.{metric}")
        proc.send_signal(signal.SIGHUP)
        reloaded = await asyncio.to_thread(log.wait_for, "configuration reloaded")
        assert reloaded["previous_version"] != reloaded["plan_version"]
        assert await routed_to(nc, "mfg.history") == "mfg.history.dus.press-07.oil_temp"

        config.write_text("routes: [")
        proc.send_signal(signal.SIGHUP)
        refused = await asyncio.to_thread(log.wait_for, "SIGHUP: configuration not reloaded")
        assert refused["level"] == "error"
        assert await routed_to(nc, "mfg.history") == "mfg.history.dus.press-07.oil_temp"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


async def test_reload_while_jetstream_input_flows_loses_and_duplicates_nothing(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    from millstream.config import load_config
    from millstream.service import serving

    from .test_plane import stock_move, stream_ids, wait_for

    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["metrics"] = {"port": None}
    config = tmp_path / "plant.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    for r in doc["routes"]:
        if r["name"] == "inventory-movements":
            r["to"] = "mfg.inventory.moved.{status}"
    moved = yaml.safe_dump(doc, sort_keys=False)
    n = 3000
    js = nc.jetstream()
    async with serving(
        load_config(config), nats_url=nats_server.url, metrics_port=None, store_dir=tmp_path,
        config_path=config,
    ) as svc:  # fmt: skip
        reload: asyncio.Task[tuple[str, str]] | None = None
        for start in range(1, n + 1, 100):
            await asyncio.gather(
                *(js.publish("odoo.stock_move", stock_move(i)) for i in range(start, start + 100))
            )
            if start > 600 and reload is None:
                reload = asyncio.create_task(svc.reload(moved))
        assert reload is not None
        previous, new = await reload
        assert previous != new

        async def all_stored() -> bool:
            return (await js.stream_info("MFG_OUT")).state.messages >= n

        await wait_for(all_stored, 60, f"{n} outputs in MFG_OUT")
        await asyncio.sleep(0.5)  # nothing more arrives
        ids = await stream_ids(nc, "MFG_OUT")
        assert len(ids) == len(set(ids)) == n
        info = await js.stream_info("MFG_OUT", subjects_filter=">")
        by_subject = info.state.subjects or {}
        assert set(by_subject) == {"mfg.inventory.movement.done", "mfg.inventory.moved.done"}
        assert sum(by_subject.values()) == n
        assert svc.stats()["by_status"].get("dead_letter", 0) == 0
