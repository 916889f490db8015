"""Millstream: a high-throughput event router for manufacturing integration on NATS."""

from millstream._core import BatchResult, Delivery, Outcome, reason_codes
from millstream.client import AsyncClient, Client
from millstream.config import Config, compile_plan, compile_plane, load_config, parse_config
from millstream.errors import (
    ConfigError,
    ConnectError,
    MillstreamError,
    PlaneError,
    PlanError,
    ProvisionError,
)
from millstream.router import Router

__all__ = [
    "AsyncClient",
    "BatchResult",
    "Client",
    "Config",
    "ConfigError",
    "ConnectError",
    "Delivery",
    "MillstreamError",
    "Outcome",
    "PlanError",
    "PlaneError",
    "ProvisionError",
    "Router",
    "compile_plan",
    "compile_plane",
    "load_config",
    "parse_config",
    "reason_codes",
]
