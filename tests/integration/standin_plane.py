"""A stand-in for `millstream._core.Plane` for the service lifecycle tests: it records what
the service asks of it and moves no events. The service tests also run against the real
plane when the extension has it; the plane's own behaviour is tested in test_plane*.py."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any, ClassVar

from millstream.errors import PlaneError


class StandInPlane:
    instances: ClassVar[list[StandInPlane]] = []
    fail_start: ClassVar[str | None] = None
    # Set by a test: called inside drain() to look at the service while the plane drains.
    during_drain: ClassVar[Callable[[], dict[str, Any]] | None] = None

    def __init__(self, plan_json: str, plane_json: str, threads: int = 1) -> None:
        if self.fail_start is not None:
            raise PlaneError(self.fail_start)
        self.plan: dict[str, Any] = json.loads(plan_json)
        self.spec: dict[str, Any] = json.loads(plane_json)
        self.drains: list[float] = []
        self.seen_during_drain: dict[str, Any] = {}
        self._running = True
        type(self).instances.append(self)

    def stats(self) -> dict[str, Any]:
        lane = {
            "depth": 0,
            "capacity": 1,
            "shed": 0,
            "processed": 0,
            "batches": 0,
            "latency_bounds_ms": [1.0],
            "latency_counts": [0, 0],
            "latency_sum_ms": 0.0,
        }
        return {
            "events_in": 0,
            "by_status": {},
            "by_reason": {},
            "routes": {},
            "lanes": {"critical": lane, "standard": lane, "bulk": lane},
            "nats": {"connected": self._running, "reconnects": 0, "disconnects": 0},
            "outputs": {},
            "inputs": {"received": 0, "acked": 0},
        }

    def drain(self, timeout_s: float) -> dict[str, Any]:
        if not self.drains and type(self).during_drain is not None:
            look = type(self).during_drain
            assert look is not None
            self.seen_during_drain = look()
        self.drains.append(timeout_s)
        self._running = False
        return self.stats()

    def snapshot(self) -> int:
        return 0

    @property
    def running(self) -> bool:
        return self._running

    def stop_on_its_own(self) -> None:
        self._running = False


def make_standin() -> type[StandInPlane]:
    """A fresh subclass, so class-level records do not leak between tests."""
    return type("StandInPlane", (StandInPlane,), {"instances": []})


def scrape(url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
    return body.decode().splitlines()
