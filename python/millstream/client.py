"""A typed Python client for Millstream's gRPC services (Router and Admin), sync and asyncio.

    from millstream import Client

    with Client("localhost:50051", token="...") as c:
        verdicts = c.publish([("odoo.stock_move", {"_model": "stock.move", "_id": 7, ...})])
        for event in c.subscribe(canonical_types=["inventory_movement"], from_beginning=True):
            print(event.sequence, event.event.type, event.event.text_data)

`AsyncClient` has the same methods as coroutines and async iterators. The types are the
generated protobuf messages (`millstream._proto.v1.router_pb2`, `admin_pb2`); nothing is
copied into other classes.

Errors: a failed call raises `grpc.RpcError` as grpcio raises it (`grpc.aio.AioRpcError`
for `AsyncClient`), with `.code()` (a `grpc.StatusCode`) and `.details()`: UNAUTHENTICATED
and PERMISSION_DENIED for tokens and roles, INVALID_ARGUMENT for a bad request,
FAILED_PRECONDITION for a reload that needs a restart, UNAVAILABLE when the router cannot
take the call now. Arguments that make no request at all raise `ValueError` before any call.
"""

from __future__ import annotations

import datetime
import itertools
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias

import grpc
import grpc.aio
import msgspec
from google.protobuf.timestamp_pb2 import Timestamp

from millstream._proto.v1 import admin_pb2, router_pb2

__all__ = ["AsyncClient", "Batch", "Client", "Event", "Payload"]

ROUTER = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name

# The server's default `grpc.max_message_bytes`: a Subscribe batch of 10,000 events is
# bigger than grpcio's 4 MiB default.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

Payload: TypeAlias = bytes | bytearray | memoryview | str | Mapping[str, Any]
"""An event body: bytes as sent, `str` as UTF-8 text, a mapping encoded as JSON."""
Event: TypeAlias = router_pb2.SourceEvent | tuple[str, Payload]
"""A source event: `(subject, payload)` or a `SourceEvent`."""
Batch: TypeAlias = router_pb2.PublishRequest | Iterable[Event]
"""One PublishStream batch: events (numbered 1, 2, ... as `batch_id`) or a whole request."""
Pem: TypeAlias = bytes | str | os.PathLike[str]
"""PEM data as bytes, or the path of a PEM file."""


# --- requests ----------------------------------------------------------------------------


def _payload(data: Payload) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, Mapping):
        return msgspec.json.encode(data)
    raise TypeError(f"an event payload is bytes, str or a mapping, not {type(data).__name__}")


def source_event(event: Event) -> router_pb2.SourceEvent:
    """A `SourceEvent` from `(subject, payload)`; a `SourceEvent` is returned as it is."""
    if isinstance(event, router_pb2.SourceEvent):
        return event
    subject, data = event
    return router_pb2.SourceEvent(subject=subject, data=_payload(data))


def publish_request(events: Iterable[Event], batch_id: int = 0) -> router_pb2.PublishRequest:
    return router_pb2.PublishRequest(events=[source_event(e) for e in events], batch_id=batch_id)


def _stream_requests(batches: Iterable[Batch]) -> Iterator[router_pb2.PublishRequest]:
    numbers = itertools.count(1)
    for batch in batches:
        if isinstance(batch, router_pb2.PublishRequest):
            yield batch
        else:
            yield publish_request(batch, next(numbers))


async def _async_stream_requests(
    batches: AsyncIterable[Batch],
) -> AsyncIterator[router_pb2.PublishRequest]:
    numbers = itertools.count(1)
    async for batch in batches:
        if isinstance(batch, router_pb2.PublishRequest):
            yield batch
        else:
            yield publish_request(batch, next(numbers))


def subscribe_request(
    *,
    canonical_types: Iterable[str] = (),
    routes: Iterable[str] = (),
    subjects: Iterable[str] = (),
    from_sequence: int | None = None,
    from_time: datetime.datetime | Timestamp | None = None,
    from_beginning: bool = False,
    durable: str = "",
    stream: str = "",
    max_batch: int = 0,
) -> router_pb2.SubscribeRequest:
    """A `SubscribeRequest`; at most one start (the default start is now)."""
    starts = [from_sequence is not None, from_time is not None, from_beginning]
    if sum(starts) > 1:
        raise ValueError("give at most one of from_sequence, from_time and from_beginning")
    request = router_pb2.SubscribeRequest(
        canonical_types=canonical_types,
        routes=routes,
        subjects=subjects,
        durable=durable,
        stream=stream,
        max_batch=max_batch,
    )
    if from_sequence is not None:
        request.from_sequence = from_sequence
    elif from_time is not None:
        if isinstance(from_time, Timestamp):
            request.from_time.CopyFrom(from_time)
        else:
            if from_time.tzinfo is None:
                raise ValueError("from_time needs a timezone (a naive datetime is ambiguous)")
            request.from_time.FromDatetime(from_time)
    elif from_beginning:
        request.from_beginning = True
    return request


def _selector(
    reason: str | None, route: str | None, from_sequence: int | None
) -> admin_pb2.DeadLetterSelector:
    return admin_pb2.DeadLetterSelector(
        reason=reason or "", route=route or "", from_sequence=from_sequence or 0
    )


def replay_request(
    sequences: Iterable[int] | None = None,
    *,
    reason: str | None = None,
    route: str | None = None,
    from_sequence: int | None = None,
    everything: bool = False,
    remove: bool = False,
    dry_run: bool = False,
) -> admin_pb2.ReplayDeadLettersRequest:
    """Exactly one selection: `sequences`, a filter (`reason`, `route`, `from_sequence`), or
    `everything=True`, so that no call replays the whole stream by omission."""
    by_filter = reason is not None or route is not None or from_sequence is not None
    if sum((sequences is not None, by_filter, everything)) != 1:
        raise ValueError(
            "give exactly one of: sequences, a filter (reason/route/from_sequence), everything=True"
        )
    request = admin_pb2.ReplayDeadLettersRequest(remove=remove, dry_run=dry_run)
    if sequences is not None:
        request.sequences.sequences.extend(sequences)
        if not request.sequences.sequences:
            raise ValueError("no sequences given")
    else:
        request.selector.CopyFrom(_selector(reason, route, from_sequence))
    return request


def _pem(value: Pem | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def _credentials(
    tls: bool | grpc.ChannelCredentials,
    root_certificates: Pem | None,
    certificate_chain: Pem | None,
    private_key: Pem | None,
) -> grpc.ChannelCredentials | None:
    if isinstance(tls, grpc.ChannelCredentials):
        if root_certificates or certificate_chain or private_key:
            raise ValueError("give ChannelCredentials or PEM files, not both")
        return tls
    if (certificate_chain is None) != (private_key is None):
        raise ValueError("a client certificate needs its private key, and the key its certificate")
    if not (tls or root_certificates or certificate_chain):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(root_certificates),
        private_key=_pem(private_key),
        certificate_chain=_pem(certificate_chain),
    )


def _options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    merged: dict[str, Any] = {
        "grpc.max_receive_message_length": DEFAULT_MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": DEFAULT_MAX_MESSAGE_BYTES,
    }
    merged.update(options)
    return list(merged.items())


class _Settings:
    """What both clients share: channel credentials, options, call metadata."""

    def __init__(
        self,
        token: str | None,
        tls: bool | grpc.ChannelCredentials,
        root_certificates: Pem | None,
        certificate_chain: Pem | None,
        private_key: Pem | None,
        options: Sequence[tuple[str, Any]],
    ) -> None:
        self.credentials = _credentials(tls, root_certificates, certificate_chain, private_key)
        self.options = _options(options)
        # Sent as metadata on every call rather than as call credentials, which grpcio only
        # allows on TLS channels: a plaintext channel to a trusted local router works too.
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )


# --- sync --------------------------------------------------------------------------------


class Client:
    """A blocking client. `target` is `host:port`; `token` is sent as
    `authorization: Bearer <token>` on every call.

    TLS: `tls=True` trusts the system roots; `root_certificates` (a CA, PEM bytes or a file
    path) trusts that CA instead; `certificate_chain` and `private_key` present a client
    certificate (mutual TLS); or pass your own `grpc.ChannelCredentials` as `tls`. `options`
    are grpcio channel options (e.g. `("grpc.ssl_target_name_override", "router")`);
    `timeout` is the default deadline, in seconds, of every unary call; streams run until
    they end unless given their own `timeout` (then DEADLINE_EXCEEDED ends them).
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        root_certificates: Pem | None = None,
        certificate_chain: Pem | None = None,
        private_key: Pem | None = None,
        options: Sequence[tuple[str, Any]] = (),
        timeout: float | None = None,
    ) -> None:
        s = _Settings(token, tls, root_certificates, certificate_chain, private_key, options)
        self._metadata = s.metadata
        self._timeout = timeout
        self.channel: grpc.Channel = (
            grpc.secure_channel(target, s.credentials, s.options)
            if s.credentials is not None
            else grpc.insecure_channel(target, s.options)
        )
        ch = self.channel
        self._publish = ch.unary_unary(
            f"/{ROUTER}/Publish",
            request_serializer=router_pb2.PublishRequest.SerializeToString,
            response_deserializer=router_pb2.PublishResponse.FromString,
        )
        self._publish_stream = ch.stream_stream(
            f"/{ROUTER}/PublishStream",
            request_serializer=router_pb2.PublishRequest.SerializeToString,
            response_deserializer=router_pb2.PublishResponse.FromString,
        )
        self._subscribe = ch.unary_stream(
            f"/{ROUTER}/Subscribe",
            request_serializer=router_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=router_pb2.SubscribeResponse.FromString,
        )
        self._commit = ch.unary_unary(
            f"/{ROUTER}/Commit",
            request_serializer=router_pb2.CommitRequest.SerializeToString,
            response_deserializer=router_pb2.CommitResponse.FromString,
        )
        self._get_stats = ch.unary_unary(
            f"/{ADMIN}/GetStats",
            request_serializer=admin_pb2.GetStatsRequest.SerializeToString,
            response_deserializer=admin_pb2.GetStatsResponse.FromString,
        )
        self._list_routes = ch.unary_unary(
            f"/{ADMIN}/ListRoutes",
            request_serializer=admin_pb2.ListRoutesRequest.SerializeToString,
            response_deserializer=admin_pb2.ListRoutesResponse.FromString,
        )
        self._check_config = ch.unary_unary(
            f"/{ADMIN}/CheckConfig",
            request_serializer=admin_pb2.CheckConfigRequest.SerializeToString,
            response_deserializer=admin_pb2.CheckConfigResponse.FromString,
        )
        self._reload_config = ch.unary_unary(
            f"/{ADMIN}/ReloadConfig",
            request_serializer=admin_pb2.ReloadConfigRequest.SerializeToString,
            response_deserializer=admin_pb2.ReloadConfigResponse.FromString,
        )
        self._list_dead_letters = ch.unary_unary(
            f"/{ADMIN}/ListDeadLetters",
            request_serializer=admin_pb2.ListDeadLettersRequest.SerializeToString,
            response_deserializer=admin_pb2.ListDeadLettersResponse.FromString,
        )
        self._replay_dead_letters = ch.unary_unary(
            f"/{ADMIN}/ReplayDeadLetters",
            request_serializer=admin_pb2.ReplayDeadLettersRequest.SerializeToString,
            response_deserializer=admin_pb2.ReplayDeadLettersResponse.FromString,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; calls in progress are cancelled."""
        self.channel.close()

    def _deadline(self, timeout: float | None) -> float | None:
        return self._timeout if timeout is None else timeout

    # Router

    def publish(
        self, events: Iterable[Event], *, timeout: float | None = None
    ) -> list[router_pb2.Verdict]:
        """Route a batch; one verdict per event, in order, once every event is settled."""
        response = self._publish(
            publish_request(events),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )
        return list(response.verdicts)

    def publish_stream(
        self, batches: Iterable[Batch], *, timeout: float | None = None
    ) -> Iterator[router_pb2.PublishResponse]:
        """Stream batches in, get a response per batch (matched by `batch_id`: batches given
        as events are numbered 1, 2, ...; responses may come out of order). Batches are read
        from `batches` as the server takes them. Leaving the loop early cancels the call."""
        call = self._publish_stream(
            _stream_requests(batches), timeout=timeout, metadata=self._metadata
        )
        try:
            yield from call
        finally:
            call.cancel()

    def subscribe_batches(
        self,
        *,
        canonical_types: Iterable[str] = (),
        routes: Iterable[str] = (),
        subjects: Iterable[str] = (),
        from_sequence: int | None = None,
        from_time: datetime.datetime | Timestamp | None = None,
        from_beginning: bool = False,
        durable: str = "",
        stream: str = "",
        max_batch: int = 0,
        timeout: float | None = None,
    ) -> Iterator[router_pb2.SubscribeResponse]:
        """`subscribe`, one `SubscribeResponse` (a batch of events) at a time."""
        request = subscribe_request(
            canonical_types=canonical_types,
            routes=routes,
            subjects=subjects,
            from_sequence=from_sequence,
            from_time=from_time,
            from_beginning=from_beginning,
            durable=durable,
            stream=stream,
            max_batch=max_batch,
        )
        call = self._subscribe(request, timeout=timeout, metadata=self._metadata)
        try:
            yield from call
        finally:
            call.cancel()

    def subscribe(
        self,
        *,
        canonical_types: Iterable[str] = (),
        routes: Iterable[str] = (),
        subjects: Iterable[str] = (),
        from_sequence: int | None = None,
        from_time: datetime.datetime | Timestamp | None = None,
        from_beginning: bool = False,
        durable: str = "",
        stream: str = "",
        max_batch: int = 0,
        timeout: float | None = None,
    ) -> Iterator[router_pb2.SubscribedEvent]:
        """Canonical events the routes produced, one at a time, until the server ends the
        call; leaving the loop cancels it. Filters: canonical types (`inventory_movement` or
        the CloudEvents type), route names, output subject patterns. Start: now (default),
        `from_sequence` (resume with the last `sequence` + 1), `from_time` (aware datetime),
        or `from_beginning`. `durable` names a cursor the server keeps."""
        for batch in self.subscribe_batches(
            canonical_types=canonical_types,
            routes=routes,
            subjects=subjects,
            from_sequence=from_sequence,
            from_time=from_time,
            from_beginning=from_beginning,
            durable=durable,
            stream=stream,
            max_batch=max_batch,
            timeout=timeout,
        ):
            yield from batch.events

    def commit(self, durable: str, sequence: int, *, timeout: float | None = None) -> int:
        """Mark everything up to `sequence` as processed by the durable cursor `durable`:
        the next `subscribe(durable=...)` starts right after it. Returns the previous
        committed sequence (0 when none)."""
        response = self._commit(
            router_pb2.CommitRequest(durable=durable, sequence=sequence),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )
        return int(response.previous)

    # Admin

    def stats(self, *, timeout: float | None = None) -> admin_pb2.GetStatsResponse:
        """The router's counters as a `Struct` (`response.stats["events_in"]`; numbers are
        floats) and the running config version."""
        return self._get_stats(
            admin_pb2.GetStatsRequest(), timeout=self._deadline(timeout), metadata=self._metadata
        )

    def routes(self, *, timeout: float | None = None) -> admin_pb2.ListRoutesResponse:
        return self._list_routes(
            admin_pb2.ListRoutesRequest(),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )

    def check_config(
        self, yaml: str, *, timeout: float | None = None
    ) -> admin_pb2.CheckConfigResponse:
        """Validate a config (YAML text) without applying it: `ok`, or `errors` with the
        key path (`routes.2.to`) and message of each problem."""
        return self._check_config(
            admin_pb2.CheckConfigRequest(yaml=yaml),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )

    def reload_config(
        self, yaml: str | None = None, *, timeout: float | None = None
    ) -> admin_pb2.ReloadConfigResponse:
        """Swap in a new config (YAML text), or re-read the router's config file when
        `yaml` is None. INVALID_ARGUMENT for a bad config, FAILED_PRECONDITION for a change
        that needs a restart; the running config is kept either way."""
        return self._reload_config(
            admin_pb2.ReloadConfigRequest(yaml=yaml or ""),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )

    def dead_letters(
        self,
        *,
        reason: str | None = None,
        route: str | None = None,
        from_sequence: int | None = None,
        limit: int = 100,
        timeout: float | None = None,
    ) -> list[admin_pb2.DeadLetter]:
        """Dead letters, oldest first: at most `limit` (the server caps it at 10,000)."""
        response = self._list_dead_letters(
            admin_pb2.ListDeadLettersRequest(
                selector=_selector(reason, route, from_sequence), limit=limit
            ),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )
        return list(response.dead_letters)

    def replay_dead_letters(
        self,
        sequences: Iterable[int] | None = None,
        *,
        reason: str | None = None,
        route: str | None = None,
        from_sequence: int | None = None,
        everything: bool = False,
        remove: bool = False,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> admin_pb2.ReplayDeadLettersResponse:
        """Republish dead letters to their original subjects: these `sequences`, those
        matching a filter, or `everything=True`. `remove` deletes each one once it is
        republished; `dry_run` decides targets and publishes nothing. Failures are per
        result (`ok`, `error`), not raised."""
        request = replay_request(
            sequences,
            reason=reason,
            route=route,
            from_sequence=from_sequence,
            everything=everything,
            remove=remove,
            dry_run=dry_run,
        )
        return self._replay_dead_letters(
            request, timeout=self._deadline(timeout), metadata=self._metadata
        )


# --- asyncio -----------------------------------------------------------------------------


async def _aiter(items: Iterable[Batch]) -> AsyncIterator[Batch]:
    for item in items:
        yield item


class AsyncClient:
    """`Client` for asyncio (grpc.aio): the same arguments, coroutines for unary calls and
    async iterators for streams. Create it inside the event loop that uses it. Close a
    stream you leave early with `contextlib.aclosing` (or let it be collected) to cancel
    its call."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        root_certificates: Pem | None = None,
        certificate_chain: Pem | None = None,
        private_key: Pem | None = None,
        options: Sequence[tuple[str, Any]] = (),
        timeout: float | None = None,
    ) -> None:
        s = _Settings(token, tls, root_certificates, certificate_chain, private_key, options)
        self._metadata = s.metadata
        self._timeout = timeout
        self.channel: grpc.aio.Channel = (
            grpc.aio.secure_channel(target, s.credentials, s.options)
            if s.credentials is not None
            else grpc.aio.insecure_channel(target, s.options)
        )
        ch = self.channel
        self._publish = ch.unary_unary(
            f"/{ROUTER}/Publish",
            request_serializer=router_pb2.PublishRequest.SerializeToString,
            response_deserializer=router_pb2.PublishResponse.FromString,
        )
        self._publish_stream = ch.stream_stream(
            f"/{ROUTER}/PublishStream",
            request_serializer=router_pb2.PublishRequest.SerializeToString,
            response_deserializer=router_pb2.PublishResponse.FromString,
        )
        self._subscribe = ch.unary_stream(
            f"/{ROUTER}/Subscribe",
            request_serializer=router_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=router_pb2.SubscribeResponse.FromString,
        )
        self._commit = ch.unary_unary(
            f"/{ROUTER}/Commit",
            request_serializer=router_pb2.CommitRequest.SerializeToString,
            response_deserializer=router_pb2.CommitResponse.FromString,
        )
        self._get_stats = ch.unary_unary(
            f"/{ADMIN}/GetStats",
            request_serializer=admin_pb2.GetStatsRequest.SerializeToString,
            response_deserializer=admin_pb2.GetStatsResponse.FromString,
        )
        self._list_routes = ch.unary_unary(
            f"/{ADMIN}/ListRoutes",
            request_serializer=admin_pb2.ListRoutesRequest.SerializeToString,
            response_deserializer=admin_pb2.ListRoutesResponse.FromString,
        )
        self._check_config = ch.unary_unary(
            f"/{ADMIN}/CheckConfig",
            request_serializer=admin_pb2.CheckConfigRequest.SerializeToString,
            response_deserializer=admin_pb2.CheckConfigResponse.FromString,
        )
        self._reload_config = ch.unary_unary(
            f"/{ADMIN}/ReloadConfig",
            request_serializer=admin_pb2.ReloadConfigRequest.SerializeToString,
            response_deserializer=admin_pb2.ReloadConfigResponse.FromString,
        )
        self._list_dead_letters = ch.unary_unary(
            f"/{ADMIN}/ListDeadLetters",
            request_serializer=admin_pb2.ListDeadLettersRequest.SerializeToString,
            response_deserializer=admin_pb2.ListDeadLettersResponse.FromString,
        )
        self._replay_dead_letters = ch.unary_unary(
            f"/{ADMIN}/ReplayDeadLetters",
            request_serializer=admin_pb2.ReplayDeadLettersRequest.SerializeToString,
            response_deserializer=admin_pb2.ReplayDeadLettersResponse.FromString,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; calls still running after `grace` seconds are cancelled."""
        await self.channel.close(grace)

    def _deadline(self, timeout: float | None) -> float | None:
        return self._timeout if timeout is None else timeout

    # Router

    async def publish(
        self, events: Iterable[Event], *, timeout: float | None = None
    ) -> list[router_pb2.Verdict]:
        """Route a batch; one verdict per event, in order, once every event is settled."""
        response = await self._publish(
            publish_request(events),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )
        return list(response.verdicts)

    async def publish_stream(
        self, batches: AsyncIterable[Batch] | Iterable[Batch], *, timeout: float | None = None
    ) -> AsyncIterator[router_pb2.PublishResponse]:
        """See `Client.publish_stream`; `batches` may be an async iterable."""
        source = batches if isinstance(batches, AsyncIterable) else _aiter(batches)
        call = self._publish_stream(
            _async_stream_requests(source), timeout=timeout, metadata=self._metadata
        )
        try:
            async for response in call:
                yield response
        finally:
            call.cancel()

    def subscribe_batches(
        self,
        *,
        canonical_types: Iterable[str] = (),
        routes: Iterable[str] = (),
        subjects: Iterable[str] = (),
        from_sequence: int | None = None,
        from_time: datetime.datetime | Timestamp | None = None,
        from_beginning: bool = False,
        durable: str = "",
        stream: str = "",
        max_batch: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[router_pb2.SubscribeResponse]:
        """See `Client.subscribe_batches`."""
        request = subscribe_request(
            canonical_types=canonical_types,
            routes=routes,
            subjects=subjects,
            from_sequence=from_sequence,
            from_time=from_time,
            from_beginning=from_beginning,
            durable=durable,
            stream=stream,
            max_batch=max_batch,
        )
        return self._batches(request, timeout)

    async def _batches(
        self, request: router_pb2.SubscribeRequest, timeout: float | None
    ) -> AsyncGenerator[router_pb2.SubscribeResponse, None]:
        call = self._subscribe(request, timeout=timeout, metadata=self._metadata)
        try:
            async for batch in call:
                yield batch
        finally:
            call.cancel()

    async def subscribe(
        self,
        *,
        canonical_types: Iterable[str] = (),
        routes: Iterable[str] = (),
        subjects: Iterable[str] = (),
        from_sequence: int | None = None,
        from_time: datetime.datetime | Timestamp | None = None,
        from_beginning: bool = False,
        durable: str = "",
        stream: str = "",
        max_batch: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[router_pb2.SubscribedEvent]:
        """See `Client.subscribe`."""
        batches = self._batches(
            subscribe_request(
                canonical_types=canonical_types,
                routes=routes,
                subjects=subjects,
                from_sequence=from_sequence,
                from_time=from_time,
                from_beginning=from_beginning,
                durable=durable,
                stream=stream,
                max_batch=max_batch,
            ),
            timeout,
        )
        try:
            async for batch in batches:
                for event in batch.events:
                    yield event
        finally:
            await batches.aclose()

    async def commit(self, durable: str, sequence: int, *, timeout: float | None = None) -> int:
        """See `Client.commit`."""
        response = await self._commit(
            router_pb2.CommitRequest(durable=durable, sequence=sequence),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )
        return int(response.previous)

    # Admin

    async def stats(self, *, timeout: float | None = None) -> admin_pb2.GetStatsResponse:
        """See `Client.stats`."""
        return await self._get_stats(
            admin_pb2.GetStatsRequest(), timeout=self._deadline(timeout), metadata=self._metadata
        )

    async def routes(self, *, timeout: float | None = None) -> admin_pb2.ListRoutesResponse:
        return await self._list_routes(
            admin_pb2.ListRoutesRequest(),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )

    async def check_config(
        self, yaml: str, *, timeout: float | None = None
    ) -> admin_pb2.CheckConfigResponse:
        """See `Client.check_config`."""
        return await self._check_config(
            admin_pb2.CheckConfigRequest(yaml=yaml),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )

    async def reload_config(
        self, yaml: str | None = None, *, timeout: float | None = None
    ) -> admin_pb2.ReloadConfigResponse:
        """See `Client.reload_config`."""
        return await self._reload_config(
            admin_pb2.ReloadConfigRequest(yaml=yaml or ""),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )

    async def dead_letters(
        self,
        *,
        reason: str | None = None,
        route: str | None = None,
        from_sequence: int | None = None,
        limit: int = 100,
        timeout: float | None = None,
    ) -> list[admin_pb2.DeadLetter]:
        """See `Client.dead_letters`."""
        response = await self._list_dead_letters(
            admin_pb2.ListDeadLettersRequest(
                selector=_selector(reason, route, from_sequence), limit=limit
            ),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )
        return list(response.dead_letters)

    async def replay_dead_letters(
        self,
        sequences: Iterable[int] | None = None,
        *,
        reason: str | None = None,
        route: str | None = None,
        from_sequence: int | None = None,
        everything: bool = False,
        remove: bool = False,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> admin_pb2.ReplayDeadLettersResponse:
        """See `Client.replay_dead_letters`."""
        request = replay_request(
            sequences,
            reason=reason,
            route=route,
            from_sequence=from_sequence,
            everything=everything,
            remove=remove,
            dry_run=dry_run,
        )
        return await self._replay_dead_letters(
            request, timeout=self._deadline(timeout), metadata=self._metadata
        )
