"""Log lines: one JSON object per line (for shippers) or text with key=value extras."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from millstream.logs import JsonFormatter, TextFormatter, setup_logging


def record(msg: str = "stream %s: created", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("millstream.service", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_the_standard_fields_and_extras() -> None:
    line = JsonFormatter().format(
        record("stream %s: created", "ODOO_IN", url="nats://127.0.0.1:4222", path=Path("/x"))
    )
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "info"
    assert out["logger"] == "millstream.service"
    assert out["msg"] == "stream ODOO_IN: created"
    assert out["ts"].endswith("Z") and "T" in out["ts"]
    assert out["url"] == "nats://127.0.0.1:4222"
    assert out["path"] == "/x"  # anything JSON cannot hold becomes its string


def test_json_line_carries_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("m", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    out = json.loads(JsonFormatter().format(rec))
    assert out["level"] == "error"
    assert "ValueError: boom" in out["exc"]


def test_text_line_appends_extras() -> None:
    line = TextFormatter().format(record("ready", url="nats://h:4222", detail="two words"))
    assert line.endswith('INFO millstream.service ready url=nats://h:4222 detail="two words"')


def test_setup_logging_replaces_only_its_own_handler() -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    setup_logging(verbose=False, json=False)
    setup_logging(verbose=True, json=True)
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == "millstream"]
    assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
    assert other in root.handlers
    assert root.level == logging.DEBUG
