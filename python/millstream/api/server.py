"""The gRPC server in the router's process (grpc.aio on the service's event loop): Router,
Admin, the standard health service and server reflection, behind the security in auth.py:
TLS or mutual TLS, bearer tokens with roles, a rate limit per identity and a message size
limit (docs/grpc.md, "Security")."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from millstream._proto.v1 import admin_pb2, router_pb2
from millstream.api import admin, auth, router
from millstream.errors import ConfigError

if TYPE_CHECKING:
    from millstream.config import GrpcConfig, GrpcTlsConfig
    from millstream.service import Service

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    router_pb2.DESCRIPTOR.services_by_name["Router"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


class GrpcServer:
    """A started server: `port` is the bound port; `stop` ends calls after a grace period."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health: health.aio.HealthServicer,
        router: router.RouterService,
    ):
        self.server = server
        self.port = port
        self.health = health
        self.router = router
        self._stopped = False

    async def stop(self, grace: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        # Subscribe streams never end on their own: end them cleanly (a subscriber sees the
        # end of its stream and can resume from its last sequence) rather than hold the
        # shutdown for the whole grace period and then cancel them.
        self.router.end_subscriptions()
        await self.server.stop(grace)


async def start(config: GrpcConfig, service: Service) -> GrpcServer:
    # Relative paths (TLS files, tokens file) are read from the config file's directory, as
    # sources' schema files are.
    base_dir = service.config_path.parent if service.config_path is not None else Path()
    # Credentials are read before anything listens: a bad file stops the start.
    credentials = None if config.tls is None else _tls_credentials(config.tls, base_dir)
    server = grpc.aio.server(
        interceptors=auth.interceptors(config, base_dir),
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ],
    )

    # --- services: every method needs a row in auth.METHOD_ROLES (or a public service in
    # auth.PUBLIC_SERVICES), or it is denied to every caller.
    router_service = router.add_to_server(server, service)
    admin.add_to_server(server, service)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    # --- end of services

    host = f"[{config.host}]" if ":" in config.host and "[" not in config.host else config.host
    address = f"{host}:{config.port}"
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    await server.start()
    for name in (*SERVICE_NAMES[:2], ""):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    for warning in auth.exposure_warnings(config):
        log.warning(warning)
    security = {
        "tls": "off" if config.tls is None else "mutual" if config.tls.client_ca else "on",
        "auth": config.auth.mode,
        "rate_limit": config.rate_limit is not None,
    }
    log.info("gRPC on %s:%d", config.host, port, extra={"port": port, **security})
    return GrpcServer(server, port, checker, router_service)


def _tls_credentials(tls: GrpcTlsConfig, base_dir: Path) -> grpc.ServerCredentials:
    """Server credentials from PEM files; with `client_ca`, a client certificate signed by it
    is required. The files are checked with the ssl module first, because grpc only says
    that it could not bind."""
    cert, key = base_dir / tls.cert, base_dir / tls.key
    ca = None if tls.client_ca is None else base_dir / tls.client_ca
    pems = {}
    for name, path in (("cert", cert), ("key", key), ("client_ca", ca)):
        if path is None:
            continue
        try:
            pems[name] = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"grpc.tls.{name}: {path}: {e.strerror or e}") from None
    try:
        # An empty password, so an encrypted key fails here instead of OpenSSL prompting on
        # the terminal (grpc cannot use one either).
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cert, key, password=lambda: b""
        )
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(
            f"grpc.tls: {cert} and {key} are not a PEM certificate and its key "
            f"(an unencrypted one): {e}"
        ) from None
    if ca is not None:
        try:
            ssl.create_default_context(cafile=ca)
        except (ssl.SSLError, ValueError) as e:
            raise ConfigError(f"grpc.tls.client_ca: {ca}: not PEM CA certificates: {e}") from None
    return grpc.ssl_server_credentials(
        [(pems["key"], pems["cert"])],
        root_certificates=pems.get("client_ca"),
        require_client_auth=ca is not None,
    )
