"""The Admin service: stats, routes, configuration checks and reloads, dead letters.

Every call is small and rare next to the Router's, so this side builds ordinary protobuf
messages in Python. Dead letters go through `millstream.dlq`, the same code as
`millstream dlq`, on the service's control connection.

Status codes: a bad request (YAML that does not validate, a malformed reason code, no
selection) is INVALID_ARGUMENT; a reload that needs a restart, or a dead-letter stream that
is not there, is FAILED_PRECONDITION; a data plane or NATS that cannot do it now is
UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import nats.errors
from google.protobuf.struct_pb2 import Struct

from millstream._proto.v1 import admin_pb2, admin_pb2_grpc
from millstream.config import Config, RouteConfig, compile_plan, parse_config
from millstream.dlq import (
    DeadLetter,
    DeadLetterError,
    DeadLetterFilter,
    list_dead_letters,
    replay,
)
from millstream.errors import ConfigError, PlaneError, PlanError, ReloadRefused

if TYPE_CHECKING:
    from millstream.service import Service

log = logging.getLogger(__name__)

SERVICE = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000

# What `parse_config` is told the text came from.
_SOURCE = "<request>"
_REASON = re.compile(r"^[A-Za-z0-9_-]+$")
# PlanError messages that name a part of the config (see rust/millstream-core/src/error.rs).
_PLAN_AT = re.compile(r"^(route|source|mapping) ([^\s:]+): (.*)$", re.DOTALL)

_Context = grpc.aio.ServicerContext[Any, Any]


def config_errors(error: ConfigError) -> list[admin_pb2.ConfigError]:
    """A `ConfigError` from `parse_config(text, source="<request>")`, one per problem: its
    key path as `location` (`routes.2.to`; empty for the whole document) and what is wrong,
    with the YAML line."""
    out = []
    for p in error.problems:
        text = p.message.removeprefix(f"{_SOURCE}: ")
        if p.line is not None:
            text = f"{text} (line {p.line})"
        location = ".".join(str(part) for part in p.location)
        out.append(admin_pb2.ConfigError(location=location, message=text))
    return out


def plan_errors(error: PlanError, config: Config) -> list[admin_pb2.ConfigError]:
    """A `PlanError` from the Rust core, located where it names a route, source or mapping."""
    text = str(error)
    location = ""
    if m := _PLAN_AT.match(text):
        kind, name, _detail = m.groups()
        if kind == "route":
            ix = next((i for i, r in enumerate(config.routes) if r.name == name), None)
            if ix is not None:
                location = f"routes.{ix}.when" if "predicate" in text else f"routes.{ix}"
        elif kind == "source":
            ix = next((i for i, s in enumerate(config.sources) if s.name == name), None)
            if ix is not None:
                location = f"sources.{ix}.schema"
        elif name in config.mappings:
            location = f"mappings.{name}"
    return [admin_pb2.ConfigError(location=location, message=text)]


def check_config(yaml_text: str, base_dir: Path | None) -> admin_pb2.CheckConfigResponse:
    """Validate and compile, in Python and in the Rust core, without running anything."""
    # Imported here: the control plane must import without a built extension.
    from millstream._core import CoreRouter

    try:
        config = parse_config(yaml_text, source=_SOURCE, base_dir=base_dir)
    except ConfigError as e:
        return admin_pb2.CheckConfigResponse(ok=False, errors=config_errors(e))
    plan = compile_plan(config)
    try:
        # Compiles predicates and JSON Schemas: what `millstream check` does, with one thread.
        CoreRouter(json.dumps(plan), 1)
    except PlanError as e:
        return admin_pb2.CheckConfigResponse(ok=False, errors=plan_errors(e, config))
    return admin_pb2.CheckConfigResponse(ok=True, config_version=str(plan["version"]))


def route_message(route: RouteConfig) -> admin_pb2.Route:
    msg = admin_pb2.Route(
        name=route.name,
        subjects=route.match.subjects,
        canonical_types=route.match.types,
        when=route.when or "",
        lane=route.lane,
        delivery=route.delivery,
        to=route.to,
    )
    if route.dedup is not None:
        msg.dedup_key = route.dedup.key
        msg.dedup_window_ms = route.dedup.window
    if route.stale is not None:
        msg.stale_key = route.stale.key
        msg.stale_version = route.stale.version
    return msg


def dead_letter_message(dl: DeadLetter) -> admin_pb2.DeadLetter:
    msg = admin_pb2.DeadLetter(
        sequence=dl.seq,
        reason=dl.reason or "",
        detail=dl.detail or "",
        route=dl.route or "",
        source=dl.source or "",
        subject=dl.subject or "",
        attempt=dl.attempt or 0,
        config_version=dl.config_version or "",
        payload=dl.payload,
    )
    if dl.time:
        try:
            msg.time.FromJsonString(dl.time)
        except ValueError:
            # a Millstream-Time written by hand; the rest of the letter still counts
            log.debug("dead letter %d: time %r is not RFC 3339", dl.seq, dl.time)
    return msg


def _stats_struct(stats: dict[str, Any]) -> Struct:
    out = Struct()
    # Through JSON so tuples, non-str keys and the like arrive as JSON would have them.
    out.update(json.loads(json.dumps(stats, default=str)))
    return out


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, service: Service) -> None:
        self.service = service

    async def GetStats(
        self, request: admin_pb2.GetStatsRequest, context: _Context
    ) -> admin_pb2.GetStatsResponse:
        svc = self.service
        return admin_pb2.GetStatsResponse(
            stats=_stats_struct(svc.plane.stats()), config_version=svc.plan_version
        )

    async def ListRoutes(
        self, request: admin_pb2.ListRoutesRequest, context: _Context
    ) -> admin_pb2.ListRoutesResponse:
        svc = self.service
        return admin_pb2.ListRoutesResponse(
            routes=[route_message(r) for r in svc.config.routes],
            config_version=svc.plan_version,
        )

    async def CheckConfig(
        self, request: admin_pb2.CheckConfigRequest, context: _Context
    ) -> admin_pb2.CheckConfigResponse:
        path = self.service.config_path
        # Relative schema_file paths resolve as they would for the running config's file.
        base_dir = path.parent if path is not None else Path.cwd()
        return await asyncio.to_thread(check_config, request.yaml, base_dir)

    async def ReloadConfig(
        self, request: admin_pb2.ReloadConfigRequest, context: _Context
    ) -> admin_pb2.ReloadConfigResponse:
        reload: Callable[[str | None], Awaitable[tuple[str, str]]] | None = getattr(
            self.service, "reload", None
        )
        if reload is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this router cannot reload")
        try:
            previous, current = await reload(request.yaml or None)
        except ConfigError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except PlanError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except ReloadRefused as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except PlaneError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        return admin_pb2.ReloadConfigResponse(previous_version=previous, config_version=current)

    async def ListDeadLetters(
        self, request: admin_pb2.ListDeadLettersRequest, context: _Context
    ) -> admin_pb2.ListDeadLettersResponse:
        selection = await self._filter(request.selector, context)
        limit = min(request.limit or DEFAULT_LIMIT, MAX_LIMIT)
        dlq = self.service.config.dead_letter
        try:
            letters = await list_dead_letters(
                self.service.nc.jetstream(),
                dlq.stream,
                reason=selection.reason,
                route=selection.route,
                since_seq=selection.since_seq,
                limit=limit,
                subject_prefix=dlq.subject_prefix,
            )
        except DeadLetterError as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except (nats.errors.Error, TimeoutError) as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"NATS: {e or type(e).__name__}")
        return admin_pb2.ListDeadLettersResponse(
            dead_letters=[dead_letter_message(dl) for dl in letters]
        )

    async def ReplayDeadLetters(
        self, request: admin_pb2.ReplayDeadLettersRequest, context: _Context
    ) -> admin_pb2.ReplayDeadLettersResponse:
        which = request.WhichOneof("selection")
        selection: list[int] | DeadLetterFilter
        if which == "sequences":
            selection = list(request.sequences.sequences)
            if not selection:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no sequences given")
        elif which == "selector":
            selection = await self._filter(request.selector, context)
        else:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "give sequences or a selector (an empty selector replays every dead letter)",
            )
        svc = self.service
        dlq = svc.config.dead_letter
        try:
            report = await replay(
                svc.nc.jetstream(),
                svc.nc,
                dlq.stream,
                selection,
                subject_prefix=dlq.subject_prefix,
                remove=request.remove,
                dry_run=request.dry_run,
            )
        except DeadLetterError as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except (nats.errors.Error, TimeoutError) as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"NATS: {e or type(e).__name__}")
        log.info(
            "dead letters replayed",
            extra={
                "replayed": len(report.replayed),
                "failed": len(report.failed),
                "dry_run": report.dry_run,
            },
        )
        return admin_pb2.ReplayDeadLettersResponse(
            results=[
                admin_pb2.ReplayResult(
                    sequence=r.seq,
                    subject=r.subject or "",
                    ok=r.ok,
                    # a replay that worked but whose dead letter could not be deleted says so
                    error=r.error or (f"not removed: {r.remove_error}" if r.remove_error else ""),
                    removed=r.removed,
                )
                for r in report.results
            ],
            replayed=len(report.replayed),
            failed=len(report.failed),
        )

    @staticmethod
    async def _filter(
        selector: admin_pb2.DeadLetterSelector, context: _Context
    ) -> DeadLetterFilter:
        if selector.reason and not _REASON.match(selector.reason):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"reason {selector.reason!r} is not a reason code ([A-Za-z0-9_-])",
            )
        return DeadLetterFilter(
            reason=selector.reason or None,
            route=selector.route or None,
            since_seq=selector.from_sequence or None,
        )


def add_to_server(server: grpc.aio.Server, service: Service) -> None:
    admin_pb2_grpc.add_AdminServicer_to_server(  # type: ignore[no-untyped-call]
        AdminService(service), server
    )
