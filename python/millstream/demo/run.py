"""`millstream demo`: an embedded nats-server, the router on the example config, and a
simulated plant publishing into it, with a live view and a summary at the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import nats
import uvloop
from rich.console import Console

from millstream.bench.core import find_config
from millstream.config import load_config
from millstream.demo.plant import PlantReport, simulate
from millstream.demo.view import LiveView, summary_table
from millstream.errors import MillstreamError
from millstream.service import Service, async_run

log = logging.getLogger(__name__)


async def _settle(service: Service, sent: int, timeout_s: float) -> None:
    """Wait until the router has taken in what the plant sent (or `timeout_s`), so the
    summary compares like with like; the queues then drain as the service stops."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = service.stats()
        lanes = stats.get("lanes", {})
        queued = sum(int(v.get("depth", 0)) for v in lanes.values())
        if int(stats.get("inputs", {}).get("received", 0)) >= sent and queued == 0:
            return
        await asyncio.sleep(0.1)


async def run_demo(
    config_path: Path,
    *,
    duration_s: float,
    telemetry_rate: float,
    erp_rate: float,
    store_dir: Path,
    console: Console | None = None,
) -> tuple[dict[str, Any], PlantReport, float]:
    """Run the demo; returns the router's final stats, what the plant sent, and seconds."""
    if console is None:
        console = Console()
        if not console.is_terminal:
            # piped or logged: no width to respect, so keep the summary's rows on one line
            console = Console(width=200)
    config = load_config(config_path)
    ready: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    shutdown = asyncio.Event()
    service_task = asyncio.create_task(
        async_run(
            config,
            nats_url=None,
            shutdown=shutdown,
            ready=ready.set_result,
            metrics_port=0,
            store_dir=store_dir,
        )
    )
    waiting: set[asyncio.Future[Any]] = {ready, service_task}
    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if service_task in done:
        service_task.result()  # raises why it stopped
        raise MillstreamError("the router stopped before it was ready")
    service = ready.result()
    console.print(
        f"[bold]millstream demo[/bold]: nats-server at {service.url}, plan {service.plan_version}"
        + (f", metrics on {service.metrics.url}" if service.metrics else "")
    )
    nc = await nats.connect(service.url)
    stop_view = asyncio.Event()
    view = LiveView(service.stats, console=console)
    view_task = asyncio.create_task(view.run(stop_view))
    t0 = time.monotonic()
    try:
        report = await simulate(
            nc,
            nc.jetstream(),
            duration_s=duration_s,
            telemetry_rate=telemetry_rate,
            erp_rate=erp_rate,
            progress=view.plant_progress,
            stop=shutdown,
        )
        await _settle(service, report.sent, timeout_s=10.0)
    finally:
        elapsed = time.monotonic() - t0
        stop_view.set()
        await view_task
        with contextlib.suppress(Exception):
            await nc.drain()
        shutdown.set()
    final = await service_task
    console.print(summary_table(final, report, elapsed))
    return final, report, elapsed


def main(
    config_path: Path | None,
    duration_s: float,
    telemetry_rate: float,
    erp_rate: float,
    store_dir: Path,
) -> int:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            run_demo(
                find_config(config_path),
                duration_s=duration_s,
                telemetry_rate=telemetry_rate,
                erp_rate=erp_rate,
                store_dir=store_dir,
            )
        )
    return 0
