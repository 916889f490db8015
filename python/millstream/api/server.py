"""The gRPC server in the router's process (grpc.aio on the service's event loop): Router,
Admin, the standard health service and server reflection."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from millstream._proto.v1 import admin_pb2, router_pb2
from millstream.api import router

if TYPE_CHECKING:
    from millstream.config import GrpcConfig
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

    def __init__(self, server: grpc.aio.Server, port: int, health: health.aio.HealthServicer):
        self.server = server
        self.port = port
        self.health = health

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start(config: GrpcConfig, service: Service) -> GrpcServer:
    server = grpc.aio.server()
    router.add_to_server(server, service)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    address = f"{config.host}:{config.port}"
    port = server.add_insecure_port(address)
    await server.start()
    for name in (*SERVICE_NAMES[:2], ""):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC on %s:%d", config.host, port, extra={"port": port})
    return GrpcServer(server, port, checker)
