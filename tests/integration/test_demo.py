"""`millstream demo`, the README's first line, end to end: embedded nats-server, router,
simulated plant, summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_and_accounts_for_every_event(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "millstream.cli", "demo", "--duration", "3",
           "--store-dir", str(tmp_path / "store")]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "embedded nats-server" in out
    assert "plant sent / router saw" in out
    # every row of the comparison matches: what the plant sent as new, duplicate,
    # out-of-order and bad is what the router routed, dropped, judged stale and dead-lettered
    rows = [ln for ln in out.splitlines() if "->" in ln and ("✓" in ln or "Δ" in ln)]
    assert len(rows) >= 4, out[-3000:]
    assert all("✓" in ln for ln in rows), "\n".join(rows)
    assert "embedded nats-server stopped" in out
