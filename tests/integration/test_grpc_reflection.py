"""A client that knows nothing about Millstream but server reflection (as grpcurl or
Postman): it lists the services, fetches their file descriptors, builds request and
response classes at run time and calls Admin and Router with them. Nothing here imports
the generated modules in millstream._proto."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import millstream._core as core
from millstream.config import parse_config
from millstream.service import serving
from millstream.transport import EmbeddedNats

from ..conftest import EXAMPLES

pytestmark = pytest.mark.integration

EXAMPLE = EXAMPLES / "manufacturing.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8") + "\ngrpc:\n  port: 0\n  auth: {mode: none}\n"


class Reflected:
    """Descriptors fetched from the server into a pool of our own, file by file."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        self.channel = channel
        self.pool = descriptor_pool.DescriptorPool()
        self.files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        self.added: set[str] = set()

    async def ask(self, **request: Any) -> reflection_pb2.ServerReflectionResponse:
        call = self.stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(**request)])
        )
        [response] = [r async for r in call]
        assert not response.HasField("error_response"), response.error_response
        return response

    async def services(self) -> list[str]:
        response = await self.ask(list_services="")
        return [s.name for s in response.list_services_response.service]

    async def _fetch(self, **request: Any) -> None:
        response = await self.ask(**request)
        for raw in response.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            self.files.setdefault(fd.name, fd)

    def _add(self, name: str) -> None:
        if name in self.added:
            return
        fd = self.files[name]
        for dep in fd.dependency:
            self._add(dep)
        self.pool.Add(fd)
        self.added.add(name)

    async def service(self, name: str) -> Any:
        await self._fetch(file_containing_symbol=name)
        # the server may leave out files the client should ask for by name
        while missing := {d for f in self.files.values() for d in f.dependency} - set(self.files):
            for dep in missing:
                await self._fetch(file_by_filename=dep)
        for file_name in list(self.files):
            self._add(file_name)
        return self.pool.FindServiceByName(name)

    async def method(self, service: str, method: str) -> tuple[type[Message], Any]:
        """The request class of `service.method` and a callable taking a request."""
        desc = (await self.service(service)).methods_by_name[method]
        request_class = message_factory.GetMessageClass(desc.input_type)
        response_class = message_factory.GetMessageClass(desc.output_type)
        call = self.channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return request_class, call


@contextlib.asynccontextmanager
async def reflected(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Reflected]:
    config = parse_config(TEXT, source=str(EXAMPLE), base_dir=EXAMPLES)
    async with serving(
        config, nats_url=nats_server.url, store_dir=tmp_path, metrics_port=None
    ) as svc:
        assert svc.grpc is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{svc.grpc.port}") as channel:
            yield Reflected(channel)


def as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


async def test_reflection_alone_finds_and_calls_admin(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with reflected(nats_server, tmp_path) as r:
        assert {
            "millstream.v1.Router",
            "millstream.v1.Admin",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= set(await r.services())
        admin = await r.service("millstream.v1.Admin")
        assert set(admin.methods_by_name) == {
            "GetStats",
            "ListRoutes",
            "CheckConfig",
            "ReloadConfig",
            "ListDeadLetters",
            "ReplayDeadLetters",
        }
        router = await r.service("millstream.v1.Router")
        assert set(router.methods_by_name) == {"Publish", "PublishStream", "Subscribe", "Commit"}

        request, get_stats = await r.method("millstream.v1.Admin", "GetStats")
        stats = as_dict(await get_stats(request()))
        assert stats["stats"]["events_in"] == 0
        assert len(stats["config_version"]) == 12

        request, list_routes = await r.method("millstream.v1.Admin", "ListRoutes")
        routes = as_dict(await list_routes(request()))
        example = yaml.safe_load(TEXT)
        assert [x["name"] for x in routes["routes"]] == [x["name"] for x in example["routes"]]
        assert [x["to"] for x in routes["routes"]] == [x["to"] for x in example["routes"]]
        assert routes["config_version"] == stats["config_version"]

        request, check = await r.method("grpc.health.v1.Health", "Check")
        health = as_dict(await check(request(service="millstream.v1.Admin")))
        assert health == {"status": "SERVING"}


@pytest.mark.skipif(
    not hasattr(core.Plane, "publish"),
    reason="the extension has no Plane.publish yet (Router.Publish, issue 5, being built)",
)
async def test_reflection_alone_publishes_an_example_event(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    cases = {c["name"]: c for c in yaml.safe_load((EXAMPLES / "events" / "cases.yaml").read_text())}
    case = cases["sale_order_confirmed"]
    body = (EXAMPLES / "events" / case["file"]).read_bytes()
    async with reflected(nats_server, tmp_path) as r:
        request_class, publish = await r.method("millstream.v1.Router", "Publish")
        request = request_class(batch_id=7)
        event = request.events.add()  # type: ignore[attr-defined]
        event.subject = case["subject"]
        event.data = body
        response = as_dict(await publish(request))
    assert response["batch_id"] == "7"  # uint64 is a string in proto3 JSON
    [verdict] = response["verdicts"]
    assert verdict["status"] == "ACCEPTED"
    assert verdict["canonical_type"] == f"com.millstream.{case['expect']['type']}.v1"
    assert verdict["destinations"] == [
        {"route": route, "subject": to}
        for route, to in zip(case["expect"]["routes"], case["expect"]["to"], strict=True)
    ]
