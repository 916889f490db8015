"""Router.Subscribe's request, resolved against the running configuration into what the
Rust reader needs: which stream, which subjects to filter on at the server, which types and
routes to keep, where to start. Durable cursors live here too: a named position (the last
stream sequence the subscriber committed as processed, with Router.Commit) in a JetStream
key-value bucket, from which the next call with that name resumes."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import grpc
import nats.js.errors

from millstream.canonical import CANONICAL_MODELS
from millstream.config import subject_covered

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from millstream._proto.v1 import router_pb2
    from millstream.config import Config, RouteConfig

MAX_BATCH = 10_000
_CURSOR_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def valid_cursor_name(name: str) -> bool:
    return _CURSOR_NAME.match(name) is not None


class SubscribeError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def output_pattern(template: str) -> str:
    """A route's destination template as a subject pattern: each token rendered from the
    event (`{field}`) becomes `*` (rendered tokens never contain dots)."""
    return ".".join("*" if "{" in tok else tok for tok in template.split("."))


def _ce_types(names: list[str]) -> set[str]:
    by_ce = {m.ce_type(): m.ce_type() for m in CANONICAL_MODELS.values()}
    out = set()
    for n in names:
        if n in CANONICAL_MODELS:
            out.add(CANONICAL_MODELS[n].ce_type())
        elif n in by_ce:
            out.add(n)
        else:
            known = ", ".join(sorted(CANONICAL_MODELS))
            raise SubscribeError(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown canonical type {n!r} (known: {known})"
            )
    return out


def _capturing_stream(config: Config, pattern: str) -> str | None:
    for name, spec in config.streams.items():
        if any(subject_covered(pattern, by) for by in spec.subjects):
            return name
    return None


def resolve(config: Config, request: router_pb2.SubscribeRequest) -> dict[str, Any]:
    """The reader's spec (see `millstream._core.Plane.subscribe`), without the start of a
    durable cursor (the caller sets that from the stored position)."""
    grpc_config = config.grpc
    assert grpc_config is not None
    routes: list[RouteConfig] = list(config.routes)
    if request.routes:
        names = {r.name for r in routes}
        unknown = [r for r in request.routes if r not in names]
        if unknown:
            raise SubscribeError(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown route(s): {', '.join(unknown)}"
            )
        routes = [r for r in routes if r.name in request.routes]
    types = _ce_types(list(request.canonical_types))
    if types:
        wanted = {t for t in CANONICAL_MODELS if CANONICAL_MODELS[t].ce_type() in types}
        routes = [r for r in routes if not r.match.types or set(r.match.types) & wanted]
    if request.subjects:
        filters = list(request.subjects)
    elif request.stream:
        spec = config.streams.get(request.stream)
        filters = (
            [output_pattern(r.to) for r in routes]
            if request.routes or types or spec is None
            else list(spec.subjects)
        )
    else:
        filters = [output_pattern(r.to) for r in routes]
        if not (request.routes or types):
            # no filters: every route whose outputs a stream keeps
            filters = [f for f in filters if _capturing_stream(config, f) is not None]
    filters = sorted(set(filters))
    if not filters:
        raise SubscribeError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "no route's output is kept in a stream: declare one under `streams:` to subscribe",
        )
    stream = request.stream
    if not stream:
        found = {f: _capturing_stream(config, f) for f in filters}
        missing = [f for f, s in found.items() if s is None]
        if missing:
            raise SubscribeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no stream keeps {', '.join(missing)}: Subscribe reads from JetStream; "
                "declare a stream for these subjects under `streams:`",
            )
        streams = sorted({s for s in found.values() if s is not None})
        if len(streams) > 1:
            raise SubscribeError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the filters span streams {', '.join(streams)}: subscribe to each "
                "separately (set `stream`)",
            )
        stream = streams[0]
    start: Any
    which = request.WhichOneof("start")
    if which == "from_sequence":
        start = {"sequence": request.from_sequence}
    elif which == "from_time":
        start = {"time_ms": request.from_time.ToMilliseconds()}
    elif which == "from_beginning" and request.from_beginning:
        start = "beginning"
    else:
        start = "now"
    if request.durable and not valid_cursor_name(request.durable):
        raise SubscribeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"durable cursor name {request.durable!r}: use 1-64 of [A-Za-z0-9_-]",
        )
    return {
        "stream": stream,
        "filter_subjects": filters,
        "types": sorted(types),
        "routes": list(request.routes),
        "start": start,
        "max_batch": min(request.max_batch or grpc_config.subscribe.max_batch, MAX_BATCH),
        "buffer": grpc_config.subscribe.buffer,
        "max_stall_ms": grpc_config.subscribe.max_stall,
    }


class Cursors:
    """Durable cursors: `<durable>` -> {"stream", "sequence"} (the last sequence the
    subscriber committed), in a key-value bucket created on first use."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self.js = js
        self.bucket = bucket
        self._kv: KeyValue | None = None

    async def _store(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self.js.create_key_value(bucket=self.bucket, history=1)
        return self._kv

    async def get(self, durable: str) -> tuple[str, int] | None:
        """(stream, sequence) committed for `durable`, if any."""
        kv = await self._store()
        try:
            entry = await kv.get(durable)
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        doc = json.loads(entry.value)
        return str(doc["stream"]), int(doc["sequence"])

    async def commit(self, durable: str, stream: str, sequence: int) -> int:
        """Store the position; returns the previous one (0 when none)."""
        previous = await self.get(durable)
        kv = await self._store()
        await kv.put(durable, json.dumps({"stream": stream, "sequence": sequence}).encode())
        return previous[1] if previous else 0
