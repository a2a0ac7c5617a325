"""``dlsys reproduce``: every homework result regenerated, in one report."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dlsys.cli.common import add_command, add_json_flag, add_quiet_flag, print_json


def _only(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected SECTION[,SECTION...], got {text!r}")
    return names


def run(args: argparse.Namespace) -> int:
    from dlsys.reproduce.report import run_report

    size = "tiny" if args.tiny else ("full" if args.full else "quick")

    def say(line: str) -> None:
        if not args.quiet and not args.json:
            print(line, file=sys.stderr, flush=True)

    outcomes = run_report(
        args.out,
        size=size,
        only=args.only,
        data_root=args.data,
        seed=args.seed,
        quiet=args.quiet or args.json,
        progress=say,
    )
    failed = [o for o in outcomes if not o.ok]
    if args.json:
        print_json(
            {
                "report": f"{args.out}/REPORT.md",
                "size": size,
                "sections": [o.as_dict() for o in outcomes],
            }
        )
    else:
        print(f"wrote {args.out}/REPORT.md")
        for o in outcomes:
            state = "ok" if o.ok else f"FAILED: {o.error}"
            print(f"  {o.section.name:<12} {o.seconds:7.1f} s  {state}")
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    from dlsys.reproduce.report import section_names

    parser = add_command(
        subparsers,
        "reproduce",
        help="regenerate every homework result into one Markdown report",
        description="Run every result of the homework sheets that software can produce and "
        "write DIR/REPORT.md with figures and data beside it. Sections: "
        + ", ".join(section_names())
        + ". A failing section is reported in the report and the exit code (1); the others "
        "still run.",
        example="dlsys reproduce --quick --out results\n"
        "dlsys reproduce --only simulator,costs --out results\n"
        "dlsys reproduce --full --data ~/datasets --out results-full",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="built-in data, short runs: under 10 minutes on 2 cores (the default)",
    )
    size.add_argument(
        "--full", action="store_true", help="the homework's settings on the data under --data"
    )
    size.add_argument(
        "--tiny", action="store_true", help="smallest runs that reach every code path (tests)"
    )
    parser.add_argument("--data", metavar="ROOT", help="folder with MNIST/ and FashionMNIST/")
    parser.add_argument("--only", type=_only, metavar="SECTION,...", help="run only these sections")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument(
        "--out", metavar="DIR", default="results", help="report folder (default: results)"
    )
    add_json_flag(parser)
    add_quiet_flag(parser)
    parser.set_defaults(func=run)
