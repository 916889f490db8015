"""Every exception Millstream raises derives from `MillstreamError`."""

from __future__ import annotations

from dataclasses import dataclass


class MillstreamError(Exception):
    """Root of Millstream's exceptions."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration."""

    location: tuple[str | int, ...]
    """The key path, e.g. `("routes", 2, "to")`; empty for the whole document."""
    message: str
    line: int | None = None
    """The YAML line, when known."""


class ConfigError(MillstreamError):
    """A configuration file is unreadable or invalid. The message names the file, the YAML
    line, the key path and what is wrong, one problem per line; `problems` has the same as
    data (for tools such as `Admin.CheckConfig`)."""

    def __init__(self, message: str, problems: tuple[ConfigProblem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (ConfigProblem((), message),)


class PlanError(MillstreamError):
    """The Rust core refused a compiled plan (a JSON Schema or CEL predicate that does not
    compile, an unknown unit table, ...)."""


class ConnectError(MillstreamError):
    """The NATS server could not be reached at start."""


class ProvisionError(MillstreamError):
    """A JetStream stream, consumer or bucket could not be created, updated or found. The
    message names it and says what to do."""


class PlaneError(MillstreamError):
    """The data plane could not start or failed."""


class ReloadRefused(MillstreamError):
    """A configuration reload changes something that only a restart can apply (the NATS
    connection, sources' subjects or inputs, streams, lanes, state, gRPC); the running
    configuration is kept."""
