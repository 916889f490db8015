"""Human-readable views of a config, for `millstream check`."""

from __future__ import annotations

from rich.table import Table

from millstream.config import Config, DedupConfig, SourceConfig


def _window(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _dedup(d: DedupConfig | None) -> str:
    if d is None:
        return "-"
    return f"{d.key} / {_window(d.window)} (max {d.capacity:,})"


def routes_table(config: Config) -> Table:
    """One row per route: what it matches, its lane, delivery, destination and dedup."""
    t = Table(title=f"{config.name}: {len(config.routes)} routes", title_justify="left")
    # Names and enums stay whole (people grep for them); long patterns fold.
    for col in ("route", "lane", "delivery", "destination"):
        t.add_column(col, no_wrap=True)
    for col in ("match", "when", "dedup", "stale"):
        t.add_column(col, overflow="fold")
    for r in config.routes:
        match = ", ".join(r.match.subjects)
        if r.match.types:
            match += " [" + ", ".join(r.match.types) + "]"
        stale = f"{r.stale.key} by {r.stale.version}" if r.stale else "-"
        t.add_row(r.name, r.lane, r.delivery, r.to, match, r.when or "-", _dedup(r.dedup), stale)
    return t


def _input(config: Config, s: SourceConfig) -> str:
    if s.jetstream is not None:
        return f"{s.jetstream.stream}/{s.durable}"
    if config.nats.queue_group:
        return f"core, queue {config.nats.queue_group}"
    return "core"


def sources_table(config: Config) -> Table:
    """One row per source: what it reads, how (core NATS or a JetStream durable) and into
    which canonical type."""
    t = Table(title=f"{len(config.sources)} sources", title_justify="left")
    t.add_column("source", no_wrap=True)
    for col in ("subjects", "input", "profile", "schema", "mapping", "canonical type"):
        t.add_column(col, overflow="fold")
    for s in config.sources:
        m = config.mappings[s.mapping]
        t.add_row(
            s.name,
            ", ".join(s.subjects),
            _input(config, s),
            s.profile,
            "yes" if s.schema_ is not None else "-",
            s.mapping,
            m.canonical,
        )
    return t
