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
    from millstream.service import Service

log = logging.getLogger(__name__)

SERVICE = router_pb2.DESCRIPTOR.services_by_name["Router"].full_name

# A PublishStream client may have this many batches in flight before the server stops
# reading its stream (HTTP/2 flow control then holds the producer back).
STREAM_WINDOW = 64
# How often a durable cursor's position is stored while a subscriber reads.
CURSOR_SAVE_S = 0.2


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


class RouterService:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._cursors: subscriptions.Cursors | None = None

    def _publish(self, request: bytes) -> asyncio.Future[bytes]:
        fut, done = _bridge(asyncio.get_running_loop())
        # Raises ValueError for a request that is not a PublishRequest, PlaneError once the
        # plane is stopping.
        self.service.plane.publish(request, done)
        return fut

    async def publish(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            fut = self._publish(request)
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except MillstreamError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        try:
            return await fut
        except MillstreamError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))

    async def publish_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        # Requests are handed to the plane as they arrive; responses are written as their
        # batches settle, which keeps STREAM_WINDOW batches in flight per caller.
        done: asyncio.Queue[asyncio.Future[bytes] | None] = asyncio.Queue(STREAM_WINDOW)
        failure: list[tuple[grpc.StatusCode, str]] = []

        async def feed() -> None:
            try:
                async for request in requests:
                    await done.put(self._publish(request))
            except ValueError as e:
                failure.append((grpc.StatusCode.INVALID_ARGUMENT, str(e)))
            except MillstreamError as e:
                failure.append((grpc.StatusCode.UNAVAILABLE, str(e)))
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
        self, request: router_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        svc = self.service
        assert svc.config.grpc is not None
        try:
            spec = subscriptions.resolve(svc.config, request)
        except subscriptions.SubscribeError as e:
            await context.abort(e.code, str(e))
        durable = request.durable
        if durable:
            if self._cursors is None:
                self._cursors = subscriptions.Cursors(
                    svc.nc.jetstream(), svc.config.grpc.subscribe.cursor_bucket
                )
            cursors = self._cursors
            position = await cursors.get(spec["stream"], durable)
            if position is not None:
                spec["start"] = {"sequence": position + 1}
        try:
            sub = svc.plane.subscribe(json.dumps(spec))
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except MillstreamError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        loop = asyncio.get_running_loop()
        written: int | None = None
        saved = loop.time()
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
                # the batch is written: a durable cursor may move past it (saved a few
                # times a second, and at the end; a crash between saves replays a little)
                if durable and loop.time() - saved >= CURSOR_SAVE_S:
                    await cursors.put(spec["stream"], durable, written)
                    saved = loop.time()
        finally:
            sub.close()
            if durable and written is not None:
                await cursors.put(spec["stream"], durable, written)


def add_to_server(server: grpc.aio.Server, service: Service) -> None:
    r = RouterService(service)
    handlers = {
        "Publish": grpc.unary_unary_rpc_method_handler(r.publish),
        "PublishStream": grpc.stream_stream_rpc_method_handler(r.publish_stream),
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            r.subscribe, request_deserializer=router_pb2.SubscribeRequest.FromString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
