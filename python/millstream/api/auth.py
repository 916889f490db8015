"""Who may call what on the gRPC port: bearer tokens mapped to roles, a fail-closed table of
the role each method needs, and a token bucket per identity (docs/grpc.md, "Security").

A call presents `authorization: Bearer <token>` metadata. The token names an identity with
roles (`producer`, `consumer`, `admin`); the method's row in `METHOD_ROLES` says which role
it needs. Health and reflection are public, anything else without a row is denied to
everyone, so an RPC added to a proto stays closed until someone decides who may call it.

Tokens are secrets: they are never logged or put in an error message, only their SHA-256
digests are kept, and a presented token is compared with every configured digest in
constant time (`hmac.compare_digest` over equal-length digests), so neither the time taken
nor an early exit tells a caller how close a guess was or which entry matched.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast, get_args

import grpc
import yaml

from millstream.errors import ConfigError

if TYPE_CHECKING:
    from millstream.config import GrpcAuthConfig, GrpcConfig, GrpcRateLimit

log = logging.getLogger(__name__)

Role = Literal["producer", "consumer", "admin"]
ROLES: frozenset[str] = frozenset(get_args(Role))

# The role each method needs, by full method name. A method missing here is denied to every
# token (fail closed); tests/test_grpc_auth.py checks that every RPC in proto/ has a row.
METHOD_ROLES: Mapping[str, Role] = {
    "/millstream.v1.Router/Publish": "producer",
    "/millstream.v1.Router/PublishStream": "producer",
    "/millstream.v1.Router/Subscribe": "consumer",
    "/millstream.v1.Router/Commit": "consumer",
    "/millstream.v1.Admin/GetStats": "admin",
    "/millstream.v1.Admin/ListRoutes": "admin",
    "/millstream.v1.Admin/CheckConfig": "admin",
    "/millstream.v1.Admin/ReloadConfig": "admin",
    "/millstream.v1.Admin/ListDeadLetters": "admin",
    "/millstream.v1.Admin/ReplayDeadLetters": "admin",
}

# Standard services anyone may call without a token: load balancers and orchestrators probe
# health without credentials, and reflection only describes the API (grpcurl, Postman).
PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

# Shorter tokens are guessable; 16 characters of base64 are 96 bits.
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII: what an HTTP/2 header value carries
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def service_of(method: str) -> str:
    """`/pkg.Service/Method` -> `pkg.Service`."""
    return method.lstrip("/").partition("/")[0]


def is_public(method: str) -> bool:
    return service_of(method) in PUBLIC_SERVICES


# --- identities and tokens ----------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A configured caller: its name (in logs and rate limiting) and roles."""

    name: str
    roles: frozenset[Role]
    digest: bytes = field(repr=False)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """The configured identities, looked up by presented token."""

    def __init__(self, identities: Sequence[Identity]) -> None:
        seen: dict[bytes, str] = {}
        names: set[str] = set()
        for ident in identities:
            if ident.name in names:
                raise ConfigError(f"grpc.auth: two tokens are named {ident.name!r}")
            names.add(ident.name)
            if ident.digest in seen:
                raise ConfigError(
                    f"grpc.auth: {seen[ident.digest]!r} and {ident.name!r} have the same token"
                )
            seen[ident.digest] = ident.name
        self.identities = tuple(identities)

    def authenticate(self, token: str) -> Identity | None:
        presented = _digest(token)
        found = None
        # No early exit: every entry is compared whichever one matches.
        for ident in self.identities:
            if hmac.compare_digest(ident.digest, presented):
                found = ident
        return found


def _identity(name: object, roles: object, token: object, sha256: object, where: str) -> Identity:
    """One entry, checked; `where` locates it in error messages, which never hold a token."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where}: 'name' must be 1-64 letters, digits or '_.@-', starting with a letter "
            "or digit"
        )
    where = f"{where} ({name})"
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not roles:
        raise ConfigError(f"{where}: 'roles' must be a list of {sorted(ROLES)}")
    for role in roles:
        if role not in ROLES:
            raise ConfigError(f"{where}: unknown role {role!r} (roles: {sorted(ROLES)})")
    if (token is None) == (sha256 is None):
        raise ConfigError(f"{where}: give exactly one of 'token' and 'token_sha256'")
    if token is not None:
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise ConfigError(f"{where}: the token must be printable ASCII without spaces")
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where}: the token is shorter than {MIN_TOKEN_CHARS} characters; generate "
                "one with e.g. `openssl rand -base64 32`"
            )
        digest = _digest(token)
    else:
        if not isinstance(sha256, str) or not _SHA256_HEX.match(sha256):
            raise ConfigError(f"{where}: 'token_sha256' must be 64 hex digits")
        digest = bytes.fromhex(sha256)
    return Identity(name, frozenset(cast("list[Role]", roles)), digest)


def parse_tokens_file(text: str, source: str) -> list[Identity]:
    """`tokens: [{name, roles, token | token_sha256}, ...]` (YAML)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        # The YAML error quotes the offending line, which may be a token.
        raise ConfigError(f"{source}: not valid YAML") from None
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list) or (set(data) - {"tokens"}):
        raise ConfigError(f"{source}: expected a mapping with one key, 'tokens': a list")
    out = []
    for i, entry in enumerate(entries):
        where = f"{source}: tokens[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with name, roles and token")
        unknown = set(entry) - {"name", "roles", "token", "token_sha256"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(map(str, unknown))}")
        out.append(
            _identity(
                entry.get("name"),
                entry.get("roles"),
                entry.get("token"),
                entry.get("token_sha256"),
                where,
            )
        )
    return out


def parse_tokens_env(value: str, source: str) -> list[Identity]:
    """`name:role+role:token` entries separated by commas or whitespace."""
    out = []
    for i, entry in enumerate(e for e in re.split(r"[,\s]+", value) if e):
        name, sep1, rest = entry.partition(":")
        roles, sep2, token = rest.partition(":")
        where = f"{source}: entry {i + 1}"
        if not (sep1 and sep2):
            raise ConfigError(f"{where}: expected name:role+role:token")
        out.append(_identity(name, roles.split("+"), token, None, where))
    return out


def load_tokens(
    auth: GrpcAuthConfig, base_dir: Path, environ: Mapping[str, str] = os.environ
) -> TokenTable:
    """The identities from `auth.tokens_file` and `auth.tokens_env` (both may be given)."""
    identities: list[Identity] = []
    if auth.tokens_file is not None:
        path = base_dir / auth.tokens_file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"grpc.auth.tokens_file: {path}: {e.strerror or e}") from None
        identities += parse_tokens_file(text, f"grpc.auth.tokens_file {path}")
    if auth.tokens_env is not None:
        value = environ.get(auth.tokens_env)
        if value is None:
            raise ConfigError(f"grpc.auth.tokens_env: ${auth.tokens_env} is not set")
        identities += parse_tokens_env(value, f"grpc.auth.tokens_env ${auth.tokens_env}")
    if not identities:
        raise ConfigError("grpc.auth: no tokens configured: no caller could use the services")
    return TokenTable(identities)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the one `authorization: Bearer <token>` entry, or None."""
    values = [v for k, v in metadata or () if k == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    # RFC 6750: the scheme is case-insensitive.
    if scheme.lower() != "bearer" or not token:
        return None
    return token


# --- rate limit ---------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per identity. The interceptor runs on the event loop's thread, so
    there is no lock; identities are the configured names, so the table is bounded."""

    def __init__(self, limit: GrpcRateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = limit.requests_per_s
        self.burst = float(limit.burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        level, then = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - then) * self.rate)
        allowed = level >= 1.0
        self._buckets[key] = (level - 1.0 if allowed else level, now)
        return allowed


# --- the interceptor ----------------------------------------------------------------------

Denial = tuple[grpc.StatusCode, str]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, authorises and rate-limits every call before its handler runs.

    An allowed call gets its own handler back untouched, so streams pay nothing per message;
    a denied one gets a handler of the same kind that aborts with the status."""

    def __init__(
        self,
        tokens: TokenTable,
        limiter: RateLimiter | None = None,
        method_roles: Mapping[str, Role] = METHOD_ROLES,
    ) -> None:
        self.tokens = tokens
        self.limiter = limiter
        self.method_roles = method_roles

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # no such method: grpc answers UNIMPLEMENTED
        method = handler_call_details.method
        denial = self.check(method, handler_call_details.invocation_metadata)
        if denial is None:
            return handler
        code, details = denial
        # A rate-limited caller may call often: keep its denials out of the default log.
        level = logging.DEBUG if code == grpc.StatusCode.RESOURCE_EXHAUSTED else logging.INFO
        log.log(level, "gRPC call denied: %s: %s", method, details, extra={"code": code.name})
        return _denying(handler, code, details)

    def check(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> Denial | None:
        """None when the call may go ahead, otherwise the status and message to end it."""
        if is_public(method):
            return None
        token = bearer_token(metadata)
        if token is None:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or malformed 'authorization: Bearer <token>' metadata",
            )
        ident = self.tokens.authenticate(token)
        if ident is None:
            return grpc.StatusCode.UNAUTHENTICATED, "unknown token"
        role = self.method_roles.get(method)
        if role is None:
            return grpc.StatusCode.PERMISSION_DENIED, f"{method} is open to no role"
        if role not in ident.roles:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"{ident.name!r} lacks the {role!r} role that {method} needs",
            )
        if self.limiter is not None and not self.limiter.allow(ident.name):
            return (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"rate limit for {ident.name!r}: {self.limiter.rate:g} requests/s, "
                f"burst {self.limiter.burst:g}",
            )
        return None


def _denying(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, details: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as `handler` that ends the call with `code`. It reads no
    request and has no deserializer, so a denied request is never parsed."""

    async def deny(_request: object, context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
        await context.abort(code, details)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


def interceptors(config: GrpcConfig, base_dir: Path) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors `config.auth` asks for (none with `mode: none`); reads the tokens."""
    if config.auth.mode == "none":
        return []
    tokens = load_tokens(config.auth, base_dir)
    limiter = RateLimiter(config.rate_limit) if config.rate_limit is not None else None
    log.info(
        "gRPC bearer tokens loaded",
        extra={"identities": [i.name for i in tokens.identities], "rate_limit": bool(limiter)},
    )
    return [AuthInterceptor(tokens, limiter)]


# --- exposure -----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (a name other than localhost may resolve to
    anything, so it counts as exposed)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warnings(config: GrpcConfig) -> list[str]:
    """What the server should warn about at start: plaintext or unauthenticated services on
    an address other machines can reach."""
    if is_loopback(config.host):
        return []
    out = []
    if config.tls is None:
        out.append(
            f"gRPC on {config.host} without TLS: tokens and events cross the network in "
            "plaintext; set grpc.tls (cert, key, client_ca for mutual TLS)"
        )
    if config.auth.mode == "none":
        out.append(
            f"gRPC AUTHENTICATION IS OFF (grpc.auth.mode: none) on {config.host}: anyone who "
            "can reach the port may publish, subscribe, reload the configuration and replay "
            "dead letters"
        )
    return out
