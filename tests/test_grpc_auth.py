"""gRPC security without NATS: the role table against the protos, token files and variables,
the bearer check, the rate limiter, exposure warnings, and the interceptor in front of
handlers of every kind on an in-process grpc.aio server."""

from __future__ import annotations

import hashlib
import hmac
import logging
import pkgutil
from collections.abc import AsyncIterator
from importlib import import_module
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FileDescriptor

import millstream._proto.v1 as proto_v1
from millstream.api import auth
from millstream.config import GrpcAuthConfig, GrpcConfig, GrpcRateLimit, parse_config
from millstream.errors import ConfigError

from .conftest import EXAMPLES
from .grpc_calls import call

PRODUCER = "producer-token-0123456789"
ADMIN = "admin-token-0123456789abcdef"


def table(*entries: tuple[str, str, set[str]]) -> auth.TokenTable:
    return auth.TokenTable(
        [auth._identity(name, sorted(roles), token, None, "test") for name, token, roles in entries]
    )


TOKENS = table(("gateway", PRODUCER, {"producer"}), ("ops", ADMIN, {"admin", "consumer"}))


def proto_methods() -> list[str]:
    """Every RPC of every service in every generated module of proto/millstream/v1."""
    out = []
    for mod in pkgutil.iter_modules(proto_v1.__path__):
        if mod.name.endswith("_pb2"):
            fd: FileDescriptor = import_module(f"{proto_v1.__name__}.{mod.name}").DESCRIPTOR
            for svc in fd.services_by_name.values():
                out += [f"/{svc.full_name}/{m.name}" for m in svc.methods]
    return out


def test_every_proto_method_has_a_role_and_every_row_is_a_method() -> None:
    methods = proto_methods()
    assert len(methods) >= 9
    assert sorted(auth.METHOD_ROLES) == sorted(methods)
    assert set(auth.METHOD_ROLES.values()) <= auth.ROLES


@pytest.mark.parametrize(
    "method",
    ["/millstream.v1.Admin/DropEverything", "/millstream.v2.Router/Publish", "/x/y", "", "/"],
)
def test_a_method_without_a_row_is_denied_even_to_a_token_with_every_role(method: str) -> None:
    everything = table(("root", ADMIN, {"producer", "consumer", "admin"}))
    denial = auth.AuthInterceptor(everything).check(method, [("authorization", f"Bearer {ADMIN}")])
    assert denial is not None and denial[0] == grpc.StatusCode.PERMISSION_DENIED


U, P, D = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, None
PUBLISH, SUBSCRIBE = "/millstream.v1.Router/Publish", "/millstream.v1.Router/Subscribe"
RELOAD, HEALTH = "/millstream.v1.Admin/ReloadConfig", "/grpc.health.v1.Health/Check"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


@pytest.mark.parametrize(
    ("method", "metadata", "expect"),
    [
        (PUBLISH, [], U),
        (PUBLISH, None, U),
        (PUBLISH, [("authorization", PRODUCER)], U),  # no scheme
        (PUBLISH, [("authorization", f"Basic {PRODUCER}")], U),
        (PUBLISH, [("authorization", "Bearer ")], U),
        (PUBLISH, [("authorization", "Bearer wrong-token-0123456789")], U),
        (PUBLISH, [("authorization", f"Bearer {PRODUCER}x")], U),
        (PUBLISH, [("authorization", f"Bearer {PRODUCER}")] * 2, U),  # ambiguous
        (PUBLISH, [("x-token", f"Bearer {PRODUCER}")], U),
        (PUBLISH, [("authorization", f"Bearer {PRODUCER}")], D),
        (PUBLISH, [("authorization", f"bearer  {PRODUCER} ")], D),
        (PUBLISH, [("authorization", f"Bearer {ADMIN}")], P),
        (SUBSCRIBE, [("authorization", f"Bearer {PRODUCER}")], P),
        (SUBSCRIBE, [("authorization", f"Bearer {ADMIN}")], D),
        (RELOAD, [("authorization", f"Bearer {PRODUCER}")], P),
        (RELOAD, [("authorization", f"Bearer {ADMIN}")], D),
        (HEALTH, [], D),
        (HEALTH, [("authorization", "Bearer garbage")], D),
        (REFLECTION, [], D),
    ],
)
def test_check(
    method: str, metadata: list[tuple[str, str]] | None, expect: grpc.StatusCode | None
) -> None:
    denial = auth.AuthInterceptor(TOKENS).check(method, metadata)
    assert (denial and denial[0]) == expect, denial
    if denial is not None:
        assert PRODUCER not in denial[1] and ADMIN not in denial[1]


# --- tokens --------------------------------------------------------------------------------

TOKENS_FILE = f"""
tokens:
  - name: plant-3-gateway
    roles: [producer]
    token: {PRODUCER}
  - name: ops
    roles: [admin, consumer]
    token_sha256: {hashlib.sha256(ADMIN.encode()).hexdigest()}
"""


def test_tokens_file_and_env_together(tmp_path: Path) -> None:
    (tmp_path / "tokens.yaml").write_text(TOKENS_FILE)
    cfg = GrpcAuthConfig(tokens_file=Path("tokens.yaml"), tokens_env="MS_TOKENS")
    env = {
        "MS_TOKENS": "mes:consumer+producer:mes-token-0123456789,\n  erp:producer:e:rp-0123456789ab"
    }
    tokens = auth.load_tokens(cfg, tmp_path, env)
    got = {i.name: sorted(i.roles) for i in tokens.identities}
    assert got == {
        "plant-3-gateway": ["producer"],
        "ops": ["admin", "consumer"],
        "mes": ["consumer", "producer"],
        "erp": ["producer"],
    }
    ident = tokens.authenticate(ADMIN)  # configured by its digest
    assert ident is not None and ident.name == "ops"
    ident = tokens.authenticate("e:rp-0123456789ab")  # a token may contain ':'
    assert ident is not None and ident.name == "erp"
    assert tokens.authenticate("mes-token-012345678") is None
    assert ADMIN not in repr(tokens.identities) and PRODUCER not in repr(tokens.identities)


SECRET = "s3cret-that-must-not-leak"
BAD_FILES = [
    ("not_yaml", f"tokens: [{{name: a, token: {SECRET}", "not valid YAML"),
    ("no_tokens_key", "- name: a", "one key, 'tokens'"),
    ("extra_key", f"tokens: []\nfoo: {SECRET}", "one key, 'tokens'"),
    ("entry_not_mapping", f"tokens: [{SECRET}]", "tokens[0]: expected a mapping"),
    ("unknown_key", f"tokens: [{{name: a, roles: [admin], token: {SECRET}, role: x}}]", "['role']"),
    ("bad_name", f"tokens: [{{name: 'a b', roles: [admin], token: {SECRET}}}]", "'name' must"),
    ("no_roles", f"tokens: [{{name: a, roles: [], token: {SECRET}}}]", "(a): 'roles' must"),
    ("bad_role", f"tokens: [{{name: a, roles: [root], token: {SECRET}}}]", "unknown role 'root'"),
    ("no_token", "tokens: [{name: a, roles: [admin]}]", "exactly one of 'token'"),
    (
        "both_tokens",
        f"tokens: [{{name: a, roles: [admin], token: {SECRET}, token_sha256: {'0' * 64}}}]",
        "exactly one of 'token'",
    ),
    ("short_token", "tokens: [{name: a, roles: [admin], token: s3cret-short}]", "shorter than 16"),
    (
        "token_with_space",
        "tokens: [{name: a, roles: [admin], token: 's3cret has spaces'}]",
        "ASCII",
    ),
    ("numeric_token", "tokens: [{name: a, roles: [admin], token: 1234567890123456789}]", "ASCII"),
    ("bad_digest", f"tokens: [{{name: a, roles: [admin], token_sha256: {SECRET}}}]", "64 hex"),
    (
        "same_name",
        f"tokens: [{{name: a, roles: [admin], token: {SECRET}}}, "
        f"{{name: a, roles: [admin], token: {SECRET}x}}]",
        "two tokens are named 'a'",
    ),
    (
        "same_token",
        f"tokens: [{{name: a, roles: [admin], token: {SECRET}}}, "
        f"{{name: b, roles: [producer], token: {SECRET}}}]",
        "'a' and 'b' have the same token",
    ),
    ("empty", "tokens: []", "no tokens configured"),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [r[1:] for r in BAD_FILES], ids=[r[0] for r in BAD_FILES]
)
def test_bad_tokens_file_names_the_problem_never_the_token(
    tmp_path: Path, text: str, fragment: str
) -> None:
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        auth.load_tokens(GrpcAuthConfig(tokens_file=tmp_path / "t.yaml"), tmp_path, {})
    assert fragment in str(e.value)
    assert "s3cret" not in str(e.value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a:admin", "entry 1: expected name:role+role:token"),
        ("a:admin:s3cret-0123456789,b-s3cret", "entry 2: expected"),
        ("a:admin+root:s3cret-0123456789", "unknown role 'root'"),
        ("a::s3cret-0123456789", "unknown role ''"),
        ("a:admin:s3cret", "shorter than 16"),
        ("", "no tokens configured"),
    ],
)
def test_bad_tokens_env_names_the_problem_never_the_token(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        auth.load_tokens(GrpcAuthConfig(tokens_env="T"), Path(), {"T": value})
    assert fragment in str(e.value)
    assert "s3cret" not in str(e.value)


def test_unset_env_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\$NOPE is not set"):
        auth.load_tokens(GrpcAuthConfig(tokens_env="NOPE"), tmp_path, {})
    with pytest.raises(ConfigError, match=r"tokens_file: .*missing.yaml"):
        auth.load_tokens(GrpcAuthConfig(tokens_file=Path("missing.yaml")), tmp_path, {})


def test_authenticate_compares_every_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Timing must not say which entry matched: every digest is compared, match or not.
    many = table(*((f"t{i}", f"token-{i:02d}-0123456789", {"producer"}) for i in range(10)))
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    ident = many.authenticate("token-00-0123456789")
    assert ident is not None and ident.name == "t0"
    assert len(calls) == 10
    assert all(len(a) == len(b) == 32 for a, b in calls)  # digests, so length does not leak


# --- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grpc_yaml", "fragment"),
    [
        ("{port: 0}", "grpc.auth: the gRPC services need bearer tokens"),
        ("{auth: {}}", "grpc.auth: the gRPC services need bearer tokens"),
        ("{auth: {mode: none, tokens_env: T}}", "grpc.auth: 'mode: none' would ignore"),
        (
            "{auth: {mode: none}, rate_limit: {requests_per_s: 5, burst: 5}}",
            "grpc.rate_limit: the limit is per token",
        ),
        ("{auth: {tokens_env: 'A B'}}", "grpc.auth.tokens_env"),
        ("{auth: {mode: open}}", "grpc.auth.mode"),
        ("{auth: {mode: none}, max_message_bytes: 10}", "grpc.max_message_bytes"),
        ("{auth: {mode: none}, tls: {cert: c.pem}}", "grpc.tls.key"),
        ("{auth: {tokens_env: T}, rate_limit: {requests_per_s: 0, burst: 1}}", "requests_per_s"),
    ],
)
def test_grpc_config_mistakes(grpc_yaml: str, fragment: str) -> None:
    text = (EXAMPLES / "manufacturing.yaml").read_text() + f"\ngrpc: {grpc_yaml}\n"
    with pytest.raises(ConfigError, match="grpc") as e:
        parse_config(text)
    assert fragment in str(e.value)


def test_grpc_config_defaults() -> None:
    cfg = GrpcConfig(auth=GrpcAuthConfig(tokens_env="T"))
    assert cfg.tls is None and cfg.rate_limit is None
    assert cfg.auth.mode == "tokens"
    assert cfg.max_message_bytes == 16 * 1024 * 1024


# --- rate limit and exposure ---------------------------------------------------------------


def test_rate_limiter_refills_per_identity() -> None:
    now = [100.0]
    limiter = auth.RateLimiter(GrpcRateLimit(requests_per_s=2, burst=3), clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # another identity has its own bucket
    now[0] += 0.5  # one request's worth
    assert [limiter.allow("a") for _ in range(2)] == [True, False]
    now[0] += 60  # refills to the burst, not beyond
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(
    ("host", "tls", "mode", "warnings"),
    [
        ("127.0.0.1", False, "none", []),
        ("localhost", False, "none", []),
        ("::1", False, "none", []),
        ("127.0.0.2", False, "tokens", []),
        ("0.0.0.0", False, "tokens", ["without TLS"]),
        ("::", True, "tokens", []),
        ("10.1.2.3", True, "none", ["AUTHENTICATION IS OFF"]),
        ("router.plant.example", False, "none", ["without TLS", "AUTHENTICATION IS OFF"]),
    ],
)
def test_exposure_warnings(host: str, tls: bool, mode: str, warnings: list[str]) -> None:
    cfg = GrpcConfig.model_validate(
        {
            "host": host,
            "tls": {"cert": "c.pem", "key": "k.pem"} if tls else None,
            "auth": {"mode": mode} if mode == "none" else {"tokens_env": "T"},
        }
    )
    got = auth.exposure_warnings(cfg)
    assert len(got) == len(warnings)
    assert all(w in g for w, g in zip(warnings, got, strict=True))


# --- the interceptor in front of every kind of handler -------------------------------------

KINDS = {
    "UnaryUnary": ("unary_unary", "producer"),
    "UnaryStream": ("unary_stream", "consumer"),
    "StreamUnary": ("stream_unary", "producer"),
    "StreamStream": ("stream_stream", "producer"),
}
SERVICE = "test.v1.Kinds"
DENIED = b"denied"


def _refuse_to_parse(data: bytes) -> bytes:
    # Denied calls send "denied"; their handler must not parse it.
    if data == DENIED:
        raise AssertionError("a denied request was deserialised")
    return data


async def _unary_unary(request: bytes, context: Any) -> bytes:
    return b"ok"


async def _unary_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"ok"


async def _stream_unary(requests: AsyncIterator[bytes], context: Any) -> bytes:
    async for _ in requests:
        pass
    return b"ok"


async def _stream_stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield b"ok"


@pytest.fixture
async def kinds_server() -> AsyncIterator[int]:
    roles: dict[str, auth.Role] = {
        f"/{SERVICE}/{name}": role  # type: ignore[misc]
        for name, (_, role) in KINDS.items()
    }
    server = grpc.aio.server(interceptors=[auth.AuthInterceptor(TOKENS, method_roles=roles)])
    behaviours = {
        "unary_unary": _unary_unary,
        "unary_stream": _unary_stream,
        "stream_unary": _stream_unary,
        "stream_stream": _stream_stream,
    }
    handlers = {
        name: getattr(grpc, f"{kind}_rpc_method_handler")(
            behaviours[kind], request_deserializer=_refuse_to_parse
        )
        for name, (kind, _) in KINDS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


async def _call(
    channel: grpc.aio.Channel, name: str, token: str | None, body: bytes = DENIED
) -> grpc.StatusCode:
    """Call handler `name` of the kinds service. Its request stream, for the streaming kinds,
    is sent empty (see `call`), so `body`, and the check that a denied request is never
    parsed, applies to the unary-request kinds only."""
    kind, _ = KINDS[name]
    return await call(
        channel,
        f"/{SERVICE}/{name}",
        streaming=(kind.startswith("stream"), kind.endswith("stream")),
        metadata=(("authorization", f"Bearer {token}"),) if token else (),
        body=body,
    )


@pytest.mark.parametrize("name", list(KINDS))
async def test_interceptor_for_every_kind_of_handler(kinds_server: int, name: str) -> None:
    _, role = KINDS[name]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{kinds_server}") as ch:
        assert await _call(ch, name, None) == grpc.StatusCode.UNAUTHENTICATED
        assert await _call(ch, name, "not-a-token-0123456789") == grpc.StatusCode.UNAUTHENTICATED
        if role == "producer":
            assert await _call(ch, name, PRODUCER, b"") == grpc.StatusCode.OK
            assert await _call(ch, name, ADMIN) == grpc.StatusCode.PERMISSION_DENIED
        else:
            assert await _call(ch, name, ADMIN, b"") == grpc.StatusCode.OK
            assert await _call(ch, name, PRODUCER) == grpc.StatusCode.PERMISSION_DENIED


async def test_denials_are_logged_without_the_token(
    kinds_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{kinds_server}") as ch:
        assert await _call(ch, "UnaryUnary", ADMIN) == grpc.StatusCode.PERMISSION_DENIED
        assert (
            await _call(ch, "UnaryUnary", "guess-0123456789abc") == grpc.StatusCode.UNAUTHENTICATED
        )
    denied = [r for r in caplog.records if r.name == auth.__name__]
    assert len(denied) == 2
    assert "'ops' lacks the 'producer' role" in denied[0].getMessage()
    for r in caplog.records:
        text = f"{r.getMessage()} {r.__dict__}"
        assert ADMIN not in text and "guess-0123456789abc" not in text
