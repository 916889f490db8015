"""The end-to-end benchmark's pure-Python router (`millstream.bench.e2e_baseline`) against a
real nats-server: it must produce what the Rust plane produces on the core-NATS routes (same
subjects, canonical bodies byte for byte, CloudEvents headers), or the benchmark compares
unlike work."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from millstream.bench.e2e_baseline import Router, enc
from millstream.canonical import CANONICAL_MODELS
from millstream.config import load_config
from millstream.transport import EmbeddedNats

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "manufacturing.yaml"
EVENTS = ROOT / "examples" / "events"
CASES: list[dict[str, Any]] = [
    c
    for c in yaml.safe_load((EVENTS / "cases.yaml").read_text())
    if c["subject"].startswith("mes.")
]
ROUTED = [c for c in CASES if c["expect"]["status"] == "routed"]
DEAD = [c for c in CASES if c["expect"]["status"] == "dead_letter"]


@pytest.fixture(params=["frames", "nats-py"])
def router(
    nats_server: EmbeddedNats, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[subprocess.Popen[bytes]]:
    """The baseline router as its own process (as the benchmark runs it), ready for load, in
    each publish mode (pre-encoded frames, and nats-py's publish per message)."""
    ready = tmp_path / "ready"
    log = tmp_path / "router.log"
    cmd = [
        sys.executable,
        "-m",
        "millstream.bench.e2e_baseline",
        "--config",
        str(EXAMPLE),
        "--nats-url",
        nats_server.url,
        "--ready-file",
        str(ready),
        "--publish",
        request.param,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(f"router exited {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"router not ready after 30s:\n{log.read_text()}")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def canonical_json(data: dict[str, Any]) -> bytes:
    # What the core writes: keys sorted (serde_json maps), compact. Every float of the cases
    # prints the same in Python and serde_json (shortest round-trip form).
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def expected_headers(case: dict[str, Any]) -> dict[str, str]:
    """The headers the Rust plane's `ce_headers` writes for a telemetry case (all values are
    plain ASCII here, so nothing is percent-encoded)."""
    d = case["expect"]["data"]
    model = CANONICAL_MODELS[case["expect"]["type"]]
    return {
        "ce-specversion": "1.0",
        "ce-id": f"{d['plant']}-{d['machine_id']}-{d['metric']}-{d['observed_at']}",
        "ce-source": "urn:acme:mes-gateway",
        "ce-type": model.ce_type(),
        "ce-dataschema": model.dataschema(),
        "ce-time": d["observed_at"],
        "ce-subject": d["machine_id"],
        "ce-partitionkey": f"{d['plant']}.{d['machine_id']}",
        "content-type": "application/json",
        "Millstream-Route": case["expect"]["routes"][0],
    }


async def test_telemetry_cases_end_to_end(
    router: subprocess.Popen[bytes], nc: NATS, tmp_path: Path
) -> None:
    seen: list[Msg] = []

    async def take(msg: Msg) -> None:
        seen.append(msg)

    await nc.subscribe("mfg.>", cb=take)
    await nc.subscribe("millstream.dlq.>", cb=take)
    await nc.flush()
    # Every case twice: the second copy of a routed case is a duplicate (dropped by the
    # route's dedup), a dead letter is dead-lettered again.
    for _ in range(2):
        for case in CASES:
            await nc.publish(case["subject"], (EVENTS / case["file"]).read_bytes())
    await nc.flush()

    want = len(ROUTED) + 2 * len(DEAD)
    deadline = time.monotonic() + 20
    while len(seen) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # anything extra (a duplicate let through) arrives by now
    assert len(seen) == want, [(m.subject, m.data) for m in seen]

    for case in ROUTED:
        exp = case["expect"]
        assert len(exp["to"]) == 1, "telemetry cases have one route each"
        got = [m for m in seen if m.subject == exp["to"][0]]
        assert len(got) == 1, f"{case['name']}: {len(got)} messages on {exp['to'][0]}"
        assert got[0].data == canonical_json(exp["data"]), case["name"]
        assert got[0].headers == expected_headers(case), case["name"]

    for case in DEAD:
        reason = case["expect"]["reason"]
        body = (EVENTS / case["file"]).read_bytes()
        got = [m for m in seen if m.subject == f"millstream.dlq.{reason}" and m.data == body]
        assert len(got) == 2, f"{case['name']}: {len(got)} dead letters with reason {reason}"
        h = got[0].headers or {}
        assert h["Millstream-Reason"] == reason
        assert h["Millstream-Subject"] == case["subject"]
        assert h["Millstream-Detail"]

    router.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(router.wait, 30) == 0


async def test_sigint_exits_zero(router: subprocess.Popen[bytes]) -> None:
    router.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(router.wait, 30) == 0


def test_header_values_are_encoded_like_the_rust_plane() -> None:
    # percent_encoding's CONTROLS + `%` + `"`, and all non-ASCII as UTF-8 bytes; space and
    # the rest of printable ASCII stay as they are.
    assert enc("press-07 L2/a:b{}*>") == "press-07 L2/a:b{}*>"
    assert enc('50% "x"') == "50%25 %22x%22"
    assert enc("a\r\nb\tc\x7f") == "a%0D%0Ab%09c%7F"
    assert enc("Düsseldorf €") == "D%C3%BCsseldorf %E2%82%AC"


def test_header_block_fast_path_matches_the_general_one() -> None:
    router = Router(load_config(EXAMPLE))
    plain = ("i-1", "urn:s", "t.v1", "https://s/x", "2026-11-27T08:15:02Z", "m 1", "p.m")
    odd = ("i-ü", "urn:s", "t.v1", "https://s/x", "2026-11-27T08:15:02Z", 'm"1', None)
    assert router._ce_lines(plain) == (
        "NATS/1.0\r\nce-specversion: 1.0\r\nce-id: i-1\r\nce-source: urn:s\r\nce-type: t.v1\r\n"
        "ce-dataschema: https://s/x\r\nce-time: 2026-11-27T08:15:02Z\r\nce-subject: m 1\r\n"
        "ce-partitionkey: p.m\r\n"
    )
    assert router._ce_lines(odd) == (
        "NATS/1.0\r\nce-specversion: 1.0\r\nce-id: i-%C3%BC\r\nce-source: urn:s\r\n"
        "ce-type: t.v1\r\nce-dataschema: https://s/x\r\nce-time: 2026-11-27T08:15:02Z\r\n"
        "ce-subject: m%221\r\n"
    )
