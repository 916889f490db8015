"""The Millstream service (`millstream run`): NATS, JetStream provisioning, the Rust data plane
and metrics, started in order and drained in reverse on SIGINT/SIGTERM.

Start: an embedded nats-server when no URL is given (decision 10), the control connection
(nats-py), provisioning, the data plane (`millstream._core.Plane`, which connects on its own
and moves every event), the metrics endpoint. Then wait for the shutdown event.

Stop, in this order, so nothing in flight is lost: the plane stops intake, finishes its
batches, waits for the outputs' PubAcks, acks its inputs and snapshots its state; then the
metrics endpoint stops (it is scraped until the end of the drain), the control connection
drains, and the embedded server (if any) stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any, TypeVar

import nats.errors
import uvloop
from nats.aio.client import Client as NATS

from millstream.config import Config, compile_plan, compile_plane, load_config, parse_config
from millstream.errors import (
    ConfigError,
    ConnectError,
    MillstreamError,
    PlaneError,
    PlanError,
    ReloadRefused,
)
from millstream.metrics import ConnectionCounters, MetricsServer, MillstreamCollector
from millstream.transport import EmbeddedNats
from millstream.transport.provision import provision

if TYPE_CHECKING:
    from millstream._core import Plane
    from millstream.api.server import GrpcServer

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 30.0
# How long gRPC calls in progress may run on once shutdown starts.
GRPC_GRACE_S = 5.0
# How often the service checks that the data plane is still running.
WATCH_INTERVAL_S = 0.5

T = TypeVar("T")


@dataclasses.dataclass
class Service:
    """A running Millstream, handed to `ready` once everything has started."""

    config: Config
    url: str
    nc: NATS
    plane: Plane
    control: ConnectionCounters
    shutdown: asyncio.Event
    provisioned: list[str]
    plan_version: str
    metrics: MetricsServer | None = None
    embedded: EmbeddedNats | None = None
    grpc: GrpcServer | None = None
    config_path: Path | None = None
    """The file the configuration came from: what an empty reload re-reads."""
    _reload_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock, repr=False)

    def stats(self) -> dict[str, Any]:
        """The data plane's counters (see `millstream._core.Plane.stats`)."""
        return self.plane.stats()

    def stop(self) -> None:
        """Ask for a graceful shutdown, as SIGTERM does."""
        self.shutdown.set()

    async def reload(self, yaml_text: str | None = None) -> tuple[str, str]:
        """Apply a new configuration (YAML text; None re-reads `config_path`) without a
        restart: the data plane swaps plans between two batches, carrying dedup and stale
        state over by route name (`millstream._core.Plane.reload`). Returns (previous,
        new) plan versions. Raises `ConfigError` for a bad configuration, `ReloadRefused`
        for a change only a restart can apply, `PlaneError` if the swap did not happen."""
        async with self._reload_lock:
            if yaml_text:
                base = self.config_path.parent if self.config_path else Path.cwd()
                new = parse_config(yaml_text, source="<reload>", base_dir=base)
            elif self.config_path is not None:
                new = load_config(self.config_path)
            else:
                raise ConfigError("no configuration given, and no file to re-read")
            changed = restart_needed(self.config, new, self.url)
            if changed:
                raise ReloadRefused(
                    f"these settings need a restart: {', '.join(changed)}; "
                    "the running configuration is kept"
                )
            plan = compile_plan(new)
            loop = asyncio.get_running_loop()
            previous = await loop.run_in_executor(None, self.plane.reload, json.dumps(plan))
            self.config = new
            self.plan_version = str(plan["version"])
            log.info(
                "configuration reloaded",
                extra={"previous_version": previous, "plan_version": self.plan_version},
            )
            return previous, self.plan_version


# Top-level settings a running service cannot change: connections, streams and servers.
_RESTART_SECTIONS = ("nats", "streams", "dead_letter", "state", "lanes", "metrics", "grpc")


def restart_needed(old: Config, new: Config, url: str) -> list[str]:
    """What differs between two configurations that a reload cannot apply: the top-level
    sections above, and the data plane's inputs (sources' subjects and JetStream
    consumers), found by comparing what each would ask the data plane to run."""
    changed = [s for s in _RESTART_SECTIONS if getattr(old, s) != getattr(new, s)]
    if old.name != new.name:
        changed.append("name")
    if compile_plane(old, url)["inputs"] != compile_plane(new, url)["inputs"]:
        changed.append("sources (subjects or jetstream inputs)")
    return changed


class _ShutdownDuringStart(Exception):
    pass


def run(
    config_path: str | Path,
    nats_url: str | None = None,
    metrics_port: int | EllipsisType | None = ...,
    store_dir: str | Path = ".millstream",
    *,
    passthrough: bool = False,
    ready_file: str | Path | None = None,
) -> int:
    """Run the service until SIGINT/SIGTERM, on uvloop. Returns 0 after a clean drain; a
    problem that stops it raises a `MillstreamError` (`ConfigError`, `ConnectError`,
    `ProvisionError`, `PlaneError`, ...).

    `nats_url` overrides `nats.url` (neither: an embedded nats-server with its data under
    `store_dir/nats`). `metrics_port` overrides `metrics.port`: `...` keeps the config's,
    `None` turns the endpoint off, `0` picks a free port.
    """
    config = load_config(config_path)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            async_run(
                config,
                config_path=Path(config_path),
                nats_url=nats_url,
                metrics_port=metrics_port,
                store_dir=store_dir,
                passthrough=passthrough,
                # for scripts and harnesses: the file appears once the router is routing
                ready=None if ready_file is None else lambda svc: _write_ready(ready_file, svc),
            )
        )
    return 0


async def async_run(
    config: Config,
    *,
    nats_url: str | None,
    shutdown: asyncio.Event | None = None,
    ready: Callable[[Service], None] | None = None,
    metrics_port: int | EllipsisType | None = ...,
    store_dir: str | Path = ".millstream",
    drain_timeout: float = DRAIN_TIMEOUT_S,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    handle_signals: bool = True,
    passthrough: bool = False,
    config_path: Path | None = None,
) -> dict[str, Any]:
    """Start everything, wait for `shutdown` (set by SIGINT/SIGTERM when `handle_signals`),
    drain, and return the data plane's final stats (`{}` when shutdown came before the plane
    started). Raises `PlaneError` if the plane could not start or stopped on its own (after
    cleaning up everything else)."""
    loop = asyncio.get_running_loop()
    shutdown = shutdown if shutdown is not None else asyncio.Event()
    port = config.metrics.port if isinstance(metrics_port, EllipsisType) else metrics_port
    # Compiled before anything starts: the plan is what the plane is asked to run.
    plan = compile_plan(config)
    async with AsyncExitStack() as stack:
        if handle_signals:
            _handle_signals(loop, shutdown, stack)
        try:
            return await _serve(
                config, plan, nats_url, shutdown, ready, port, Path(store_dir),
                drain_timeout, connect_timeout, stack, passthrough, config_path,
                handle_signals,
            )  # fmt: skip
        except _ShutdownDuringStart:
            log.info("shutdown requested while starting; stopped")
            return {}


async def _serve(
    config: Config,
    plan: dict[str, Any],
    nats_url: str | None,
    shutdown: asyncio.Event,
    ready: Callable[[Service], None] | None,
    metrics_port: int | None,
    store_dir: Path,
    drain_timeout: float,
    connect_timeout: float,
    stack: AsyncExitStack,
    passthrough: bool = False,
    config_path: Path | None = None,
    handle_signals: bool = False,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    url = nats_url or config.nats.url
    embedded: EmbeddedNats | None = None
    if url is None:
        embedded = EmbeddedNats(store_dir / "nats")
        await loop.run_in_executor(None, embedded.start)
        stack.push_async_callback(_stop_embedded, embedded)
        url = embedded.url
        log.info(
            "no NATS URL configured (nats.url or --nats-url): started an embedded nats-server; "
            "point Millstream at a NATS cluster for anything but a trial",
            extra={"url": url, "store_dir": str(embedded.store_dir)},
        )

    control = ConnectionCounters()
    nc = await _until_shutdown(_connect(url, config, control, connect_timeout), shutdown)
    stack.push_async_callback(_drain_nats, nc)

    provisioned = await _until_shutdown(provision(nc.jetstream(), config), shutdown)
    for line in provisioned:
        log.info("jetstream: %s", line)

    # Imported when the plane starts rather than with this module, so the control plane
    # (and tests that stand a Plane in) work with an extension built without it.
    from millstream._core import Plane

    plane_json = compile_plane(config, url, passthrough=passthrough)
    if passthrough:
        log.warning("passthrough: every stage is off, inputs are relayed to passthrough.<subject>")
    try:
        plane = await loop.run_in_executor(None, Plane, json.dumps(plan), json.dumps(plane_json))
    except (PlanError, PlaneError) as e:
        log.error("the data plane could not start: %s", e)
        raise
    log.info(
        "data plane started",
        extra={"plan_version": plan["version"], "inputs": len(plane_json["inputs"])},
    )
    final: dict[str, Any] | None = None

    async def drain_plane() -> dict[str, Any]:
        nonlocal final
        if final is None:
            log.info("draining the data plane", extra={"timeout_s": drain_timeout})
            final = await loop.run_in_executor(None, plane.drain, drain_timeout)
        return final

    # On any error from here on the plane is drained too, before the connection goes.
    stack.push_async_callback(drain_plane)

    metrics: MetricsServer | None = None
    if metrics_port is not None:
        collector = MillstreamCollector(
            plane.stats,
            control=control,
            objectives_ms={
                "critical": config.lanes.critical.objective,
                "standard": config.lanes.standard.objective,
                "bulk": config.lanes.bulk.objective,
            },
            info={"name": config.name, "plan_version": str(plan["version"])},
        )
        metrics = MetricsServer(collector, config.metrics.host, metrics_port).start()
        stack.callback(metrics.stop)
        log.info("metrics on %s", metrics.url, extra={"url": metrics.url})

    service = Service(
        config=config,
        url=url,
        nc=nc,
        plane=plane,
        control=control,
        shutdown=shutdown,
        provisioned=provisioned,
        plan_version=str(plan["version"]),
        metrics=metrics,
        embedded=embedded,
        config_path=config_path,
    )
    if config.grpc is not None and not passthrough:
        from millstream.api import server as grpc_server

        service.grpc = await grpc_server.start(config.grpc, service)
        # Stopped before the plane drains (below); this is for an error on the way there.
        # Registered after the drain, so it runs first then too.
        stack.push_async_callback(service.grpc.stop, GRPC_GRACE_S)
    if handle_signals and config_path is not None and not passthrough:
        _reload_on_sighup(loop, service, stack)
    log.info("ready", extra={"config": config.name, "url": url})
    if ready is not None:
        ready(service)

    stopped_on_its_own = await _wait(plane, shutdown)
    if service.grpc is not None:
        # gRPC first: Publish calls in flight finish while the plane still routes them
        await service.grpc.stop(GRPC_GRACE_S)
    stats = await drain_plane()
    log.info("drained", extra={k: stats.get(k) for k in ("events_in", "inputs", "outputs")})
    if stopped_on_its_own:
        why = stats.get("last_error") or "see the log above for why"
        raise PlaneError(f"the data plane stopped on its own: {why}")
    return stats


@contextlib.asynccontextmanager
async def serving(
    config: Config, *, start_timeout: float = 60.0, **kwargs: Any
) -> AsyncIterator[Service]:
    """`async_run` in a task, for embedding and tests: yields the `Service` once it is
    ready, then shuts it down (graceful drain) on exit and re-raises what stopped it. Takes
    `async_run`'s keyword arguments; signals are not handled unless asked."""
    loop = asyncio.get_running_loop()
    up: asyncio.Future[Service] = loop.create_future()
    kwargs.setdefault("handle_signals", False)
    shutdown = kwargs.setdefault("shutdown", asyncio.Event())
    task = asyncio.create_task(async_run(config, ready=up.set_result, **kwargs))
    waiting: set[asyncio.Future[Any]] = {task, up}
    done, _ = await asyncio.wait(
        waiting, timeout=start_timeout, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        task.result()  # raises what stopped it
        raise PlaneError("the service stopped before it was ready")
    if up not in done:
        shutdown.set()
        await task
        raise PlaneError(f"the service did not become ready within {start_timeout}s")
    try:
        yield up.result()
    finally:
        shutdown.set()
        await task


def _write_ready(path: str | Path, service: Service) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(service.url + "\n")
    tmp.replace(path)  # atomic: a watcher never reads a half-written file


async def _wait(plane: Plane, shutdown: asyncio.Event) -> bool:
    """Wait for shutdown; True if the plane stopped before it was asked to."""
    while not shutdown.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait(), WATCH_INTERVAL_S)
        if not shutdown.is_set() and not plane.running:
            log.error("the data plane stopped on its own; shutting down")
            return True
    return False


async def _until_shutdown(work: Awaitable[T], shutdown: asyncio.Event) -> T:
    """`await work`, unless shutdown is asked for first (a start-up that hangs on an
    unreachable server must still answer Ctrl-C)."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(shutdown.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise _ShutdownDuringStart
    return task.result()


def _handle_signals(
    loop: asyncio.AbstractEventLoop, shutdown: asyncio.Event, stack: AsyncExitStack
) -> None:
    def on_signal(sig: signal.Signals) -> None:
        if shutdown.is_set():
            log.warning("%s: already shutting down, waiting for the drain", sig.name)
            return
        log.info("%s: shutting down", sig.name)
        shutdown.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no support
            log.debug("cannot handle %s here; use the shutdown event", sig.name)
            continue
        stack.callback(loop.remove_signal_handler, sig)


def _reload_on_sighup(
    loop: asyncio.AbstractEventLoop, service: Service, stack: AsyncExitStack
) -> None:
    """SIGHUP re-reads the configuration file and applies it as Admin.ReloadConfig does (as
    nats-server and Vector do); a configuration that cannot be applied is logged and the
    running one kept."""
    running: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await service.reload(None)
        except MillstreamError as e:
            log.error("SIGHUP: configuration not reloaded, the running one is kept: %s", e)

    def on_hup() -> None:
        log.info("SIGHUP: reloading %s", service.config_path)
        task = loop.create_task(reload())
        running.add(task)
        task.add_done_callback(running.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError):  # not the main thread, or no support
        return
    stack.callback(loop.remove_signal_handler, signal.SIGHUP)


async def _connect(url: str, config: Config, counters: ConnectionCounters, timeout: float) -> NATS:
    """The control-plane connection: reconnects forever once up, callbacks log and count."""
    nc = NATS()
    last_error: list[BaseException] = []

    async def error_cb(e: Exception) -> None:
        counters.errors += 1
        if isinstance(e, nats.errors.SlowConsumerError):
            counters.slow_consumer += 1
        last_error[:] = [e]
        log.warning("nats (control): %s", e or type(e).__name__, extra={"client": "control"})

    async def disconnected_cb() -> None:
        was_connected, counters.connected = counters.connected, False
        if nc.is_closed or nc.is_draining:
            return  # our own drain at shutdown, not an outage
        if was_connected:
            counters.disconnects += 1
            log.warning("nats (control): disconnected", extra={"client": "control"})

    async def reconnected_cb() -> None:
        counters.connected = True
        counters.reconnects += 1
        log.info(
            "nats (control): reconnected",
            extra={
                "client": "control",
                "server": str(nc.connected_url and nc.connected_url.netloc),
            },
        )

    async def closed_cb() -> None:
        counters.connected = False
        log.info("nats (control): connection closed", extra={"client": "control"})

    servers = [u.strip() for u in url.split(",") if u.strip()]
    try:
        await asyncio.wait_for(
            nc.connect(
                servers,
                name=f"{config.nats.name}-control",
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
                closed_cb=closed_cb,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
            ),
            timeout,
        )
    except (TimeoutError, OSError, nats.errors.Error) as e:
        with contextlib.suppress(Exception):
            await nc.close()
        why = last_error[0] if last_error else e
        raise ConnectError(
            f"cannot connect to NATS at {url} within {timeout:.0f}s: {why or type(why).__name__}"
        ) from None
    except BaseException:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    counters.connected = True
    log.info("nats (control): connected", extra={"client": "control", "url": url})
    return nc


async def _drain_nats(nc: NATS) -> None:
    if nc.is_closed:
        return
    try:
        await nc.drain()
    except (TimeoutError, nats.errors.Error) as e:
        log.warning("nats (control): drain failed (%s); closing", e)
        with contextlib.suppress(Exception):
            await nc.close()


async def _stop_embedded(server: EmbeddedNats) -> None:
    await asyncio.get_running_loop().run_in_executor(None, server.stop)
    log.info("embedded nats-server stopped")
