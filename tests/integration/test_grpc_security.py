"""gRPC security against the real service on a real nats-server, with real grpcio clients:
the role of every method the server exposes (found through reflection, not listed here),
TLS and mutual TLS, the rate limit per identity, the message size limit, and tokens kept
out of the logs.

A call that gets through only has to show it was not refused for authentication or
authorisation (the Router's own behaviour is tested in test_grpc_router.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from millstream._proto.v1 import admin_pb2
from millstream.api import auth
from millstream.config import (
    Config,
    GrpcAuthConfig,
    GrpcConfig,
    GrpcRateLimit,
    GrpcTlsConfig,
    load_config,
)
from millstream.errors import ConfigError
from millstream.service import Service, serving
from millstream.transport import EmbeddedNats

from ..conftest import EXAMPLES
from ..grpc_calls import call

pytestmark = pytest.mark.integration

# One token per role, and one per role with every *other* role, so a refusal shows that the
# missing role is what counts.
TOKENS = {
    "only-producer": ("tok-only-producer-0123456789", ["producer"]),
    "only-consumer": ("tok-only-consumer-0123456789", ["consumer"]),
    "only-admin": ("tok-only-admin-0123456789", ["admin"]),
    "not-producer": ("tok-not-producer-0123456789", ["consumer", "admin"]),
    "not-consumer": ("tok-not-consumer-0123456789", ["producer", "admin"]),
    "not-admin": ("tok-not-admin-0123456789", ["producer", "consumer"]),
    "ops-b": ("tok-ops-b-0123456789", ["admin"]),
}
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
GET_STATS = "/millstream.v1.Admin/GetStats"
PUBLISH = "/millstream.v1.Router/Publish"


@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    lines = ["tokens:"]
    for name, (token, roles) in TOKENS.items():
        lines.append(f"  - {{name: {name}, token: {token}, roles: [{', '.join(roles)}]}}")
    path = tmp_path / "tokens.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def running(
    nats_server: EmbeddedNats, tmp_path: Path, grpc_config: GrpcConfig, **kwargs: Any
) -> AsyncIterator[Service]:
    example = load_config(EXAMPLES / "manufacturing.yaml")
    config: Config = example.model_copy(update={"grpc": grpc_config.model_copy(update={"port": 0})})
    async with serving(
        config,
        nats_url=nats_server.url,
        metrics_port=None,
        store_dir=tmp_path / "store",
        **kwargs,
    ) as service:
        assert service.grpc is not None
        yield service


def grpc_port(service: Service) -> int:
    assert service.grpc is not None
    return service.grpc.port


def bearer(name: str | None) -> tuple[tuple[str, str], ...]:
    return () if name is None else (("authorization", f"Bearer {TOKENS[name][0]}"),)


async def exposed_methods(channel: grpc.aio.Channel) -> dict[str, tuple[bool, bool]]:
    """Every method of every service the server lists through reflection, with whether its
    request and response are streams."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask(**kw: Any) -> reflection_pb2.ServerReflectionResponse:
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**kw)]))
        return [r async for r in responses][-1]

    listed = await ask(list_services="")
    out = {}
    for svc in listed.list_services_response.service:
        found = await ask(file_containing_symbol=svc.name)
        for raw in found.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
            for s in fdp.service:
                if f"{fdp.package}.{s.name}" == svc.name:
                    for m in s.method:
                        out[f"/{svc.name}/{m.name}"] = (m.client_streaming, m.server_streaming)
    return out


async def test_every_exposed_method_needs_its_role(
    nats_server: EmbeddedNats, tmp_path: Path, tokens_file: Path
) -> None:
    cfg = GrpcConfig(auth=GrpcAuthConfig(tokens_file=tokens_file))
    async with (
        running(nats_server, tmp_path, cfg) as svc,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port(svc)}") as ch,
    ):
        methods = await exposed_methods(ch)
        services = {auth.service_of(m) for m in methods}
        assert {"millstream.v1.Router", "millstream.v1.Admin", "grpc.health.v1.Health"} <= services
        assert set(auth.METHOD_ROLES) <= set(methods)  # each row is served, over reflection
        for method, streaming in sorted(methods.items()):
            # Streams that would run on are cut short: reaching the handler is what counts.
            quick = 1.0 if streaming[1] else 5.0
            if auth.is_public(method):
                got = await call(ch, method, streaming=streaming, timeout=quick)
                assert got not in REFUSED, (method, got)
                continue
            # Served but not in the table: nobody could call it; the table must say who may.
            role = auth.METHOD_ROLES.get(method)
            assert role is not None, f"{method} is served but has no role in auth.METHOD_ROLES"
            bad = (("authorization", "Bearer tok-nobody-has-this-0123"),)
            expectations = [
                ((), grpc.StatusCode.UNAUTHENTICATED),
                (bad, grpc.StatusCode.UNAUTHENTICATED),
                (bearer(f"not-{role}"), grpc.StatusCode.PERMISSION_DENIED),
            ]
            for metadata, expect in expectations:
                got = await call(ch, method, streaming=streaming, metadata=metadata)
                assert got == expect, (method, metadata and metadata[0][1][:12], got)
            right = bearer(f"only-{role}")
            got = await call(ch, method, streaming=streaming, metadata=right, timeout=quick)
            assert got not in REFUSED, (method, role, got)
        # Health answers without a token.
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_admin_answers_the_right_token(
    nats_server: EmbeddedNats, tmp_path: Path, tokens_file: Path
) -> None:
    cfg = GrpcConfig(auth=GrpcAuthConfig(tokens_file=tokens_file))
    async with (
        running(nats_server, tmp_path, cfg) as svc,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port(svc)}") as ch,
    ):
        get_stats = ch.unary_unary(
            GET_STATS,
            request_serializer=admin_pb2.GetStatsRequest.SerializeToString,
            response_deserializer=admin_pb2.GetStatsResponse.FromString,
        )
        await get_stats(admin_pb2.GetStatsRequest(), metadata=bearer("only-admin"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await get_stats(admin_pb2.GetStatsRequest(), metadata=bearer("not-admin"), timeout=5)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'not-admin' lacks the 'admin' role" in (e.value.details() or "")


async def test_auth_mode_none_lets_every_call_through(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    cfg = GrpcConfig(auth=GrpcAuthConfig(mode="none"))
    async with (
        running(nats_server, tmp_path, cfg) as svc,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port(svc)}") as ch,
    ):
        assert await call(ch, GET_STATS) == grpc.StatusCode.OK


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    """A CA, a server certificate for localhost, a client certificate from the same CA and
    one from a CA the server does not know."""
    ca, stranger = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    (tmp_path / "server.pem").write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    def client(issuer: trustme.CA) -> tuple[bytes, bytes]:
        # with a name as well: cryptography 51 refuses a certificate with an empty
        # subjectAltName, which is what trustme writes for a leaf without one
        leaf = issuer.issue_cert("plant-3-gateway.dus.acme.internal", common_name="plant-3-gateway")
        return leaf.private_key_pem.bytes(), b"".join(b.bytes() for b in leaf.cert_chain_pems)

    return {
        "dir": tmp_path,
        "ca": ca.cert_pem.bytes(),
        "client": client(ca),
        "stranger": client(stranger),
    }


def tls_channel(
    port: int, ca: bytes | None, client: tuple[bytes, bytes] | None = None
) -> grpc.aio.Channel:
    key, chain = client if client is not None else (None, None)
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=chain
    )
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(
    nats_server: EmbeddedNats, tmp_path: Path, tokens_file: Path, pki: dict[str, Any]
) -> None:
    d = pki["dir"]
    tls = GrpcTlsConfig(cert=d / "server.pem", key=d / "server.key", client_ca=d / "ca.pem")
    cfg = GrpcConfig(tls=tls, auth=GrpcAuthConfig(tokens_file=tokens_file))
    async with running(nats_server, tmp_path, cfg) as svc:
        port = grpc_port(svc)
        async with tls_channel(port, pki["ca"], pki["client"]) as ch:
            assert await call(ch, HEALTH_CHECK) == grpc.StatusCode.OK
            # The certificate opens the connection; tokens still decide the roles.
            assert await call(ch, GET_STATS) == grpc.StatusCode.UNAUTHENTICATED
            assert await call(ch, GET_STATS, metadata=bearer("only-admin")) == grpc.StatusCode.OK
        refused = [
            tls_channel(port, pki["ca"]),  # no client certificate
            tls_channel(port, pki["ca"], pki["stranger"]),  # one from another CA
            grpc.aio.insecure_channel(f"127.0.0.1:{port}"),  # no TLS at all
        ]
        for ch in refused:
            async with ch:
                assert await call(ch, HEALTH_CHECK, timeout=3) == grpc.StatusCode.UNAVAILABLE


async def test_tls_without_client_ca_serves_clients_that_trust_the_server(
    nats_server: EmbeddedNats, tmp_path: Path, tokens_file: Path, pki: dict[str, Any]
) -> None:
    d = pki["dir"]
    tls = GrpcTlsConfig(cert=d / "server.pem", key=d / "server.key")
    cfg = GrpcConfig(tls=tls, auth=GrpcAuthConfig(tokens_file=tokens_file))
    async with running(nats_server, tmp_path, cfg) as svc:
        port = grpc_port(svc)
        async with tls_channel(port, pki["ca"]) as ch:
            assert await call(ch, GET_STATS, metadata=bearer("only-admin")) == grpc.StatusCode.OK
        # A client that does not trust the CA (the system roots) refuses the server.
        for ch in (tls_channel(port, None), grpc.aio.insecure_channel(f"127.0.0.1:{port}")):
            async with ch:
                assert await call(ch, HEALTH_CHECK, timeout=3) == grpc.StatusCode.UNAVAILABLE


async def test_tls_files_that_do_not_match_stop_the_start(
    nats_server: EmbeddedNats, tmp_path: Path, tokens_file: Path, pki: dict[str, Any]
) -> None:
    d = pki["dir"]
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(d / "other.key"))
    tls = GrpcTlsConfig(cert=d / "server.pem", key=d / "other.key")
    cfg = GrpcConfig(tls=tls, auth=GrpcAuthConfig(tokens_file=tokens_file))
    with pytest.raises(ConfigError, match=r"grpc\.tls: .* not a PEM certificate and its key"):
        async with running(nats_server, tmp_path, cfg):
            pass


# --- limits --------------------------------------------------------------------------------


async def test_rate_limit_is_per_identity(
    nats_server: EmbeddedNats, tmp_path: Path, tokens_file: Path
) -> None:
    cfg = GrpcConfig(
        auth=GrpcAuthConfig(tokens_file=tokens_file),
        rate_limit=GrpcRateLimit(requests_per_s=0.01, burst=3),
    )
    async with (
        running(nats_server, tmp_path, cfg) as svc,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port(svc)}") as ch,
    ):
        a = [await call(ch, GET_STATS, metadata=bearer("only-admin")) for _ in range(4)]
        assert a == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        b = [await call(ch, GET_STATS, metadata=bearer("ops-b")) for _ in range(3)]
        assert b == [grpc.StatusCode.OK] * 3
        # Health is public and has no identity: not limited.
        assert [await call(ch, HEALTH_CHECK) for _ in range(5)] == [grpc.StatusCode.OK] * 5


async def test_oversized_message_is_resource_exhausted(
    nats_server: EmbeddedNats, tmp_path: Path, tokens_file: Path
) -> None:
    cfg = GrpcConfig(auth=GrpcAuthConfig(tokens_file=tokens_file), max_message_bytes=4096)
    async with (
        running(nats_server, tmp_path, cfg) as svc,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port(svc)}") as ch,
    ):
        producer = bearer("only-producer")
        got = await call(ch, PUBLISH, metadata=producer, body=b"\x0a" * 5000)
        assert got == grpc.StatusCode.RESOURCE_EXHAUSTED
        got = await call(ch, PUBLISH, metadata=producer, body=b"\x0a" * 3000)
        assert got != grpc.StatusCode.RESOURCE_EXHAUSTED


# --- secrets -------------------------------------------------------------------------------


async def test_tokens_never_reach_the_logs(
    nats_server: EmbeddedNats,
    tmp_path: Path,
    tokens_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env_token = "tok-from-the-environment-0123"
    monkeypatch.setenv("MILLSTREAM_TEST_TOKENS", f"env-gateway:producer:{env_token}")
    # The tokens file is named relative to the config file, which is where it is read from.
    config_file = tokens_file.parent / "millstream.yaml"
    config_file.write_text(
        (EXAMPLES / "manufacturing.yaml").read_text()
        + "\ngrpc:\n  auth:\n"
        + f"    tokens_file: {tokens_file.name}\n"
        + "    tokens_env: MILLSTREAM_TEST_TOKENS\n"
    )
    cfg = load_config(config_file).grpc
    assert cfg is not None
    guessed = "tok-only-admin-0123456789x"
    async with (
        running(nats_server, tmp_path, cfg, config_path=config_file) as svc,
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port(svc)}") as ch,
    ):
        assert await call(ch, GET_STATS, metadata=bearer("only-producer")) in REFUSED
        assert await call(ch, GET_STATS, metadata=(("authorization", f"Bearer {guessed}"),)) in (
            REFUSED
        )
        env = (("authorization", f"Bearer {env_token}"),)
        assert await call(ch, GET_STATS, metadata=env) == grpc.StatusCode.PERMISSION_DENIED
        assert await call(ch, GET_STATS, metadata=bearer("only-admin")) == grpc.StatusCode.OK
    secrets = [env_token, guessed] + [token for token, _ in TOKENS.values()]
    assert any("env-gateway" in str(r.__dict__) for r in caplog.records)  # names are logged
    for record in caplog.records:
        text = f"{record.getMessage()} {record.__dict__}"
        leaked = [s for s in secrets if s in text]
        assert not leaked, (record.name, record.getMessage())
