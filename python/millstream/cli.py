"""`millstream` command line: parses arguments, sets up logging, loads config; the work
lives elsewhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from types import EllipsisType

from rich.console import Console

from millstream.errors import MillstreamError
from millstream.logs import setup_logging


def _check(args: argparse.Namespace) -> int:
    from millstream.config import config_warnings
    from millstream.describe import routes_table, sources_table
    from millstream.router import Router

    # Building the Router compiles the plan in Rust too: schemas, predicates, templates.
    router = Router.from_config(args.config)
    out = Console()
    if not out.is_terminal:
        # Piped or logged: no width to respect, so do not squeeze the tables to 80 columns.
        out = Console(width=200)
    out.print(sources_table(router.config))
    out.print(routes_table(router.config))
    warnings = config_warnings(router.config)
    for w in warnings:
        print(f"warning: {args.config}: {w}", file=sys.stderr)
    if warnings and args.strict:
        return 1
    out.print(f"[green]ok[/green] {args.config}: plan {router.version}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from millstream import service

    port: int | EllipsisType | None = ... if args.metrics_port is None else args.metrics_port
    if args.no_metrics:
        port = None
    return service.run(
        args.config,
        nats_url=args.nats_url,
        metrics_port=port,
        store_dir=args.store_dir,
        passthrough=args.passthrough,
        ready_file=args.ready_file,
    )


def _demo(args: argparse.Namespace) -> int:
    from millstream.demo import run

    return run.main(
        args.config,
        duration_s=args.duration,
        telemetry_rate=args.telemetry_rate,
        erp_rate=args.erp_rate,
        store_dir=args.store_dir,
    )


def _dlq(args: argparse.Namespace) -> int:
    from millstream import dlq

    return dlq.main(args)


def _bench_e2e(args: argparse.Namespace) -> int:
    from millstream.bench import e2e

    return e2e.run(args)


def _bench_grpc(args: argparse.Namespace) -> int:
    from millstream.bench import grpc

    return grpc.run(args)


def _bench(args: argparse.Namespace) -> int:
    from millstream.bench import core

    return core.run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="millstream", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    sub = p.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate and compile a config, print its routes")
    check.add_argument("config", help="path to a YAML config")
    check.add_argument(
        "--strict", action="store_true", help="exit 1 when there are warnings (loops, overlaps)"
    )
    check.set_defaults(func=_check)

    run = sub.add_parser("run", help="route live traffic (embedded nats-server without a URL)")
    run.add_argument("config", help="path to a YAML config")
    run.add_argument("--nats-url", help="NATS server URL (default: nats.url, else embedded)")
    run.add_argument("--metrics-port", type=int, help="Prometheus port (default: metrics.port)")
    run.add_argument("--no-metrics", action="store_true", help="serve no metrics endpoint")
    run.add_argument(
        "--store-dir", type=Path, default=Path(".millstream"), help="embedded server's data"
    )
    run.add_argument("--ready-file", type=Path, help="write the NATS URL here once routing")
    run.add_argument(
        "--passthrough",
        action="store_true",
        help="benchmark ceiling: relay every input unchanged to passthrough.<subject>",
    )
    run.set_defaults(func=_run)

    demo = sub.add_parser("demo", help="router + simulated plant on an embedded nats-server")
    demo.add_argument("--config", type=Path, help="default: examples/manufacturing.yaml")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    demo.add_argument("--telemetry-rate", type=float, default=2000.0, help="samples/s")
    demo.add_argument("--erp-rate", type=float, default=50.0, help="Odoo events/s")
    demo.add_argument("--store-dir", type=Path, default=Path(".millstream/demo"))
    demo.set_defaults(func=_demo)

    dlq_p = sub.add_parser("dlq", help="list, show and replay dead letters")
    from millstream import dlq

    dlq.add_arguments(dlq_p)
    dlq_p.set_defaults(func=_dlq)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    core = bench_sub.add_parser("core", help="the in-process core against pure Python")
    from millstream.bench import core as core_bench

    core_bench.add_arguments(core)
    core.set_defaults(func=_bench)
    e2e = bench_sub.add_parser(
        "e2e", help="generator -> NATS -> router -> NATS -> sink: millstream, passthrough, python"
    )
    from millstream.bench import e2e as e2e_bench

    e2e_bench.add_arguments(e2e)
    e2e.set_defaults(func=_bench_e2e)
    grpc_p = bench_sub.add_parser(
        "grpc", help="the gRPC Router from a real client: PublishStream, Subscribe, unary Publish"
    )
    from millstream.bench import grpc as grpc_bench

    grpc_bench.add_arguments(grpc_p)
    grpc_p.set_defaults(func=_bench_grpc)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, json=args.log_json)
    try:
        code: int = args.func(args)
    except MillstreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
