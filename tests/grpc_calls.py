"""A gRPC call made with raw bytes and judged by its final status, for the tests that check
who may call what (tests/test_grpc_auth.py, tests/integration/test_grpc_security.py)."""

from __future__ import annotations

import grpc


async def call(
    channel: grpc.aio.Channel,
    method: str,
    *,
    streaming: tuple[bool, bool] = (False, False),
    metadata: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    timeout: float = 5.0,
) -> grpc.StatusCode:
    """Call `method` with raw bytes (an empty message by default); its final status. A
    response stream is read for at most `timeout`: DEADLINE_EXCEEDED means it was served.

    A request stream is sent empty: a message the client writes after the server has denied
    the call fails in grpcio's asyncio client, which then reports INTERNAL instead of the
    server's status (grpc/grpc#36066)."""
    client_streaming, server_streaming = streaming
    kind = (
        f"{'stream' if client_streaming else 'unary'}_{'stream' if server_streaming else 'unary'}"
    )
    rpc = getattr(channel, kind)(method)

    try:
        c = rpc(iter(()) if client_streaming else body, metadata=metadata, timeout=timeout)
        if server_streaming:
            [_ async for _ in c]
        else:
            await c
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK
