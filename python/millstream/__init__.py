"""Millstream: a high-throughput event router for manufacturing integration on NATS."""

from millstream._core import BatchResult, Delivery, Outcome, reason_codes
from millstream.config import Config, compile_plan, load_config, parse_config
from millstream.errors import ConfigError, MillstreamError, PlanError
from millstream.router import Router

__all__ = [
    "BatchResult",
    "Config",
    "ConfigError",
    "Delivery",
    "MillstreamError",
    "Outcome",
    "PlanError",
    "Router",
    "compile_plan",
    "load_config",
    "parse_config",
    "reason_codes",
]
