"""Control-plane transport: the embedded nats-server (and, next, nats-py provisioning)."""

from millstream.transport.embedded import EmbeddedNats, find_nats_server

__all__ = ["EmbeddedNats", "find_nats_server"]
