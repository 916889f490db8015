"""The Router service. Publish and PublishStream hand each request's raw bytes to the Rust
data plane (`Plane.publish`, decoded there with prost) and return the serialised response
it produces, so Python never builds an object per event. Subscribe reads the routes' output
stream in Rust (`Plane.subscribe`) and writes the serialised batches it gets.

Handlers are registered without (de)serialisers, which makes grpcio pass bytes through."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc

from millstream._proto.v1 import router_pb2
from millstream.api import subscribe as subscriptions
from millstream.errors import MillstreamError

if TYPE_CHECKING:
    from millstream._core import Subscription
    from millstream.service import Service

log = logging.getLogger(__name__)

SERVICE = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name

# A PublishStream client may have this many batches in flight before the server stops
# reading its stream (HTTP/2 flow control then holds the producer back).
STREAM_WINDOW = 64


def _bridge(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[Any], Callable[..., None]]:
    """A future, and a callback the data plane may call from any thread to settle it with
    (result, error)."""
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: str | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(MillstreamError(error))
        else:
            fut.set_result(result)

    def done(result: Any, error: str | None = None) -> None:
        loop.call_soon_threadsafe(settle, result, error)

    return fut, done


def _code(e: Exception) -> grpc.StatusCode:
    """The status for what `Plane.publish`/`subscribe` raise: ValueError for a request that
    cannot be used, `MillstreamError` when the plane cannot take it (stopping)."""
    return (
        grpc.StatusCode.INVALID_ARGUMENT
        if isinstance(e, ValueError)
        else grpc.StatusCode.UNAVAILABLE
    )


class RouterService:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._cursors: subscriptions.Cursors | None = None
        # durable cursor -> the stream it reads, from the subscriptions made here
        self._durables: dict[str, str] = {}
        self._open: set[Subscription] = set()

    def end_subscriptions(self) -> None:
        """End every open Subscribe stream (shutdown): each reader stops, and its call
        finishes with what was already read."""
        for sub in list(self._open):
            sub.close()

    def _publish(self, request: bytes) -> asyncio.Future[bytes]:
        fut, done = _bridge(asyncio.get_running_loop())
        # Raises ValueError for a request that is not a PublishRequest, PlaneError once the
        # plane is stopping.
        self.service.plane.publish(request, done)
        return fut

    async def publish(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        try:
            fut = self._publish(request)
        except (ValueError, MillstreamError) as e:
            await context.abort(_code(e), str(e))
        try:
            return await fut
        except MillstreamError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))

    async def publish_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        # Requests are handed to the plane as they arrive; responses are written as their
        # batches settle, which keeps STREAM_WINDOW batches in flight per caller.
        done: asyncio.Queue[asyncio.Future[bytes] | None] = asyncio.Queue(STREAM_WINDOW)
        failure: list[tuple[grpc.StatusCode, str]] = []

        async def feed() -> None:
            try:
                async for request in requests:
                    await done.put(self._publish(request))
            except (ValueError, MillstreamError) as e:
                failure.append((_code(e), str(e)))
            finally:
                await done.put(None)

        reader = asyncio.create_task(feed())
        try:
            while (fut := await done.get()) is not None:
                try:
                    yield await fut
                except MillstreamError as e:
                    failure.append((grpc.StatusCode.UNAVAILABLE, str(e)))
                    break
        finally:
            reader.cancel()
        if failure:
            await context.abort(*failure[0])

    async def subscribe(
        self,
        request: router_pb2.SubscribeRequest,
        context: grpc.aio.ServicerContext[router_pb2.SubscribeRequest, bytes],
    ) -> AsyncIterator[bytes]:
        svc = self.service
        assert svc.config.grpc is not None
        try:
            spec = subscriptions.resolve(svc.config, request)
        except subscriptions.SubscribeError as e:
            await context.abort(e.code, str(e))
        durable = request.durable
        if durable:
            committed = await self.cursors().get(durable)
            if committed is not None:
                stream, position = committed
                if stream != spec["stream"]:
                    await context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"durable cursor {durable!r} belongs to stream {stream}, and this "
                        f"subscription reads {spec['stream']}",
                    )
                spec["start"] = {"sequence": position + 1}
            self._durables[durable] = spec["stream"]
        try:
            sub = svc.plane.subscribe(json.dumps(spec))
        except (ValueError, MillstreamError) as e:
            await context.abort(_code(e), str(e))
        loop = asyncio.get_running_loop()
        written: int | None = None
        self._open.add(sub)
        try:
            while True:
                fut, done = _bridge(loop)
                sub.next(done)
                try:
                    got: tuple[bytes, int] | None = await fut
                except MillstreamError as e:
                    # The plane ended the subscription: a slow subscriber, or the stream.
                    text = str(e)
                    if text.startswith("slow subscriber"):
                        resume = (
                            "" if written is None else f"; resume with from_sequence={written + 1}"
                        )
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, text + resume)
                    await context.abort(grpc.StatusCode.UNAVAILABLE, text)
                if got is None:
                    return
                batch, written = got
                yield batch
        finally:
            self._open.discard(sub)
            sub.close()

    async def commit(
        self,
        request: router_pb2.CommitRequest,
        context: grpc.aio.ServicerContext[router_pb2.CommitRequest, bytes],
    ) -> bytes:
        durable = request.durable
        if not subscriptions.valid_cursor_name(durable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"durable cursor name {durable!r}: use 1-64 of [A-Za-z0-9_-]",
            )
        stream = self._durables.get(durable)
        if stream is None:
            committed = await self.cursors().get(durable)
            if committed is None:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"no durable cursor {durable!r}: subscribe with it first",
                )
            stream = committed[0]
        previous = await self.cursors().commit(durable, stream, request.sequence)
        return router_pb2.CommitResponse(previous=previous).SerializeToString()

    def cursors(self) -> subscriptions.Cursors:
        if self._cursors is None:
            grpc_config = self.service.config.grpc
            assert grpc_config is not None
            self._cursors = subscriptions.Cursors(
                self.service.nc.jetstream(), grpc_config.subscribe.cursor_bucket
            )
        return self._cursors


def add_to_server(server: grpc.aio.Server, service: Service) -> RouterService:
    r = RouterService(service)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Publish": grpc.unary_unary_rpc_method_handler(r.publish),
        "PublishStream": grpc.stream_stream_rpc_method_handler(r.publish_stream),
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            r.subscribe, request_deserializer=router_pb2.SubscribeRequest.FromString
        ),
        "Commit": grpc.unary_unary_rpc_method_handler(
            r.commit, request_deserializer=router_pb2.CommitRequest.FromString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return r
