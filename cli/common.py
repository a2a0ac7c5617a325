"""Helpers for subcommands: the shared flags and printing JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dlsys.common.io import dumps
from dlsys.common.version import dlsys_version

__all__ = [
    "HelpFormatter",
    "add_command",
    "add_json_flag",
    "add_out_flag",
    "add_quiet_flag",
    "dlsys_version",
    "print_json",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the examples in descriptions and epilogs as written."""


def add_command(
    subparsers: Any, name: str, *, help: str, example: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` ends with ``example`` (one or more command lines)."""
    lines = "\n".join(f"  {line}" for line in example.strip().splitlines())
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=f"example:\n{lines}",
        formatter_class=HelpFormatter,
    )
    return parser


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``: print one JSON document on stdout instead of text."""
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_out_flag(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--out DIR``: where files (results, plots) are written."""
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=default,
        help="write result files and plots to DIR" + (f" (default: {default})" if default else ""),
    )


def add_quiet_flag(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars or chatter."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def print_json(obj: Any) -> None:
    """Print ``obj`` as one JSON document on stdout."""
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()
