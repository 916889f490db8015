"""`millstream` command line: parses arguments, sets up logging, loads config; the work
lives elsewhere."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console

from millstream.errors import MillstreamError


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


def _bench(args: argparse.Namespace) -> int:
    from millstream.bench import core

    return core.run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="millstream", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate and compile a config, print its routes")
    check.add_argument("config", help="path to a YAML config")
    check.add_argument(
        "--strict", action="store_true", help="exit 1 when there are warnings (loops, overlaps)"
    )
    check.set_defaults(func=_check)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    core = bench_sub.add_parser("core", help="the in-process core against pure Python")
    from millstream.bench import core as core_bench

    core_bench.add_arguments(core)
    core.set_defaults(func=_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        code: int = args.func(args)
    except MillstreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
