"""Type stubs for the Rust extension `millstream._core` (checked with mypy.stubtest)."""

from collections.abc import Callable
from typing import Any, final

__all__ = [
    "BatchResult",
    "CoreRouter",
    "Delivery",
    "Outcome",
    "Plane",
    "Subscription",
    "__version__",
    "reason_codes",
    "run_load",
]

__version__: str

def reason_codes() -> list[str]:
    """Every dead-letter reason code the core can emit."""

def run_load(
    spec_json: str, progress: Callable[[dict[str, Any]], object] | None = None
) -> dict[str, Any]:
    """Run the end-to-end benchmark's open-loop generator and counting sink (Rust) and return
    the sink's report; `progress(dict)` is called about twice a second."""

@final
class CoreRouter:
    """A compiled plan with its dedup and stale state. Raises `PlanError` if refused."""

    def __new__(cls, plan_json: str, threads: int | None = None) -> CoreRouter: ...
    @property
    def threads(self) -> int:
        """Worker threads for the stateless stages of a batch."""
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def dead_letter_stream(self) -> str: ...
    def process(self, events: list[tuple[str, bytes]], now_ms: int | None = None) -> BatchResult:
        """Run a batch; one outcome per event, in order. `now_ms` is Unix milliseconds."""
    def stats(self) -> dict[str, Any]: ...
    def memory(self) -> list[dict[str, Any]]: ...

@final
class BatchResult:
    def __len__(self) -> int: ...
    def __getitem__(self, key: int, /) -> Outcome: ...
    def statuses(self) -> list[str]: ...
    def counts(self) -> dict[str, int]: ...

@final
class Delivery:
    @property
    def route(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def lane(self) -> str: ...
    @property
    def delivery(self) -> str: ...
    @property
    def dedup_id(self) -> str | None: ...

@final
class Outcome:
    @property
    def status(self) -> str:
        """`routed`, `duplicate`, `stale` or `dead_letter`."""
    @property
    def source(self) -> str | None: ...
    @property
    def canonical_type(self) -> str | None: ...
    @property
    def id(self) -> str | None: ...
    @property
    def attributes(self) -> dict[str, str] | None: ...
    @property
    def data(self) -> bytes: ...
    @property
    def deliveries(self) -> list[Delivery]: ...
    @property
    def destinations(self) -> list[str]: ...
    @property
    def routes(self) -> list[str]: ...
    @property
    def lane(self) -> str | None: ...
    @property
    def dedup_id(self) -> str | None: ...
    @property
    def skipped(self) -> list[tuple[str, str, str]]: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def detail(self) -> str | None: ...
    @property
    def route(self) -> str | None: ...
    @property
    def dead_letter_subject(self) -> str | None: ...

@final
class Plane:
    """The running data plane: NATS in, pipeline, NATS out, all in Rust on its own tokio
    runtime. Every method releases the GIL while it waits."""

    def __new__(cls, plan_json: str, plane_json: str, threads: int = 1) -> Plane:
        """Connect, restore dedup/stale state, subscribe, start routing. Raises
        `millstream.errors.PlanError` for a bad plan, `PlaneError` when NATS, a stream, a
        consumer or the state bucket is not there."""
    def stats(self) -> dict[str, Any]:
        """Counters, lane depths, latency histograms and connection state."""
    def drain(self, timeout_s: float) -> dict[str, Any]:
        """Stop intake, finish queued batches, await PubAcks, ack inputs, save state,
        disconnect. Idempotent; returns the final stats."""
    def snapshot(self) -> int:
        """Save dedup and stale state now; returns the number of keys written."""
    @property
    def running(self) -> bool: ...
    def publish(self, request: bytes, done: Callable[[bytes | None, str | None], None]) -> None:
        """Route a serialised `millstream.v1.PublishRequest` through the same lanes, pipeline
        and egress as NATS input. `done(response, None)` is called, from a plane thread, with
        the serialised `PublishResponse` once every event has its verdict, or
        `done(None, error)` if the plane stopped first. Raises ValueError for bytes that are
        not a PublishRequest and `PlaneError` once the plane is draining."""
    def subscribe(self, spec_json: str) -> Subscription:
        """Start reading canonical events from a JetStream stream (see
        `millstream.api.subscribe.resolve` for the spec). Raises ValueError for a bad spec."""
    def reload(self, plan_json: str, timeout_s: float = 10.0) -> str:
        """Swap in a new plan between two batches, with dedup and stale state carried over by
        route name; returns the previous plan version. Raises `PlanError` for a bad plan and
        `PlaneError` if in-flight work did not settle within `timeout_s` (the old plan keeps
        running)."""

@final
class Subscription:
    """One Router.Subscribe call's reader: a JetStream consumer and a bounded buffer of
    serialised `SubscribeResponse` batches."""

    def next(self, done: Callable[[tuple[bytes, int] | None, str | None], None]) -> None:
        """Call `done((batch, last_sequence), None)` with the next serialised
        SubscribeResponse and the stream sequence it reached, `done(None, None)` at the end,
        or `done(None, error)` when the subscription failed; an error starting with
        "slow subscriber" means its buffer stayed full too long."""
    def close(self) -> None:
        """Stop reading; a durable cursor keeps its position."""
