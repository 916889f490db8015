"""Logging: one JSON object per line for log shippers, or plain text for a terminal.

Fields passed with `extra=` become fields of the JSON object (or `key=value` after the text
message), so `log.info("provisioned", extra={"stream": "ODOO_IN"})` is searchable as
`stream == "ODOO_IN"` in Loki or Elasticsearch.
"""

from __future__ import annotations

import datetime
import json as jsonlib
import logging
import sys
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """`{"ts": "2025-01-02T03:04:05.678Z", "level": "info", "logger": ..., "msg": ..., ...}`"""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _extras(record).items():
            out.setdefault(k, _plain(v))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(out, ensure_ascii=False, allow_nan=False, default=str)


class TextFormatter(logging.Formatter):
    """`2025-01-02 03:04:05,678 INFO millstream.service message key=value ...`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if not extras:
            return text
        first, nl, rest = text.partition("\n")
        pairs = " ".join(f"{k}={_fmt_value(v)}" for k, v in extras.items())
        return f"{first} {pairs}{nl}{rest}"


def _fmt_value(value: Any) -> str:
    if isinstance(value, str) and value and " " not in value and '"' not in value:
        return value
    return jsonlib.dumps(_plain(value), ensure_ascii=False)


_HANDLER_NAME = "millstream"


def setup_logging(verbose: bool = False, json: bool = False) -> None:
    """Log to stderr at INFO (DEBUG with `verbose`), as JSON lines with `json`. Calling it
    again replaces the handler it installed, not anyone else's."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # nats-py logs every reconnect attempt at DEBUG/INFO; our callbacks report them once.
    logging.getLogger("nats").setLevel(logging.INFO if verbose else logging.WARNING)
