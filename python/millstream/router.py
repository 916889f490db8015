"""In-process router: a compiled config plus its dedup and stale state, no NATS needed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from millstream._core import BatchResult, CoreRouter, Outcome
from millstream.config import Config, compile_plan, load_config
from millstream.errors import PlanError


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Router:
    """Push batches of `(subject, payload)` through the Rust pipeline.

    `clock` returns Unix milliseconds; inject one in tests so dedup windows never sleep.
    `threads` is how many worker threads run the stateless stages (decode, validate, map,
    render) of a batch; default one per core. Dedup and stale decisions always run in input
    order, so outcomes are the same for any thread count.
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], int] = _wall_clock_ms,
        threads: int | None = None,
    ) -> None:
        self.config = config
        self.plan: dict[str, Any] = compile_plan(config)
        self._core = CoreRouter(json.dumps(self.plan), threads)
        self._clock = clock

    @classmethod
    def from_config(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], int] = _wall_clock_ms,
        threads: int | None = None,
    ) -> Router:
        """Load, validate and compile a YAML config file."""
        try:
            return cls(load_config(path), clock=clock, threads=threads)
        except PlanError as e:
            raise PlanError(f"{path}: {e}") from None

    @property
    def threads(self) -> int:
        return self._core.threads

    @property
    def version(self) -> str:
        """A short hash of the compiled plan: changes whenever the config's meaning does."""
        return self._core.version

    def process(
        self,
        events: Sequence[tuple[str, bytes]] | Iterable[tuple[str, bytes]],
        *,
        now_ms: int | None = None,
    ) -> BatchResult:
        """One outcome per event, in input order. The GIL is released while the batch runs."""
        batch = events if isinstance(events, list) else list(events)
        return self._core.process(batch, self._clock() if now_ms is None else now_ms)

    def process_one(self, subject: str, payload: bytes, *, now_ms: int | None = None) -> Outcome:
        return self.process([(subject, payload)], now_ms=now_ms)[0]

    def stats(self) -> dict[str, Any]:
        return self._core.stats()

    def memory(self) -> list[dict[str, Any]]:
        return self._core.memory()
