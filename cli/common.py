"""Helpers for subcommands: the shared flags and printing JSON."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Mapping
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
    "flag_names",
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


@contextlib.contextmanager
def flag_names(fields: Mapping[str, str]) -> Iterator[None]:
    """Name the command-line flag, not the API field, in a bad-input message.

    The library's checks say ``"n_points: must be >= 2, got -1"``; inside this block a
    ``ValueError`` or ``TypeError`` whose message starts with a key of ``fields`` and a colon
    is raised again with that key replaced by its flag (``"--points: ..."``).
    """
    try:
        yield
    except (ValueError, TypeError) as exc:
        text = str(exc)
        for field, flag in fields.items():
            if text.startswith(f"{field}:"):
                raise type(exc)(flag + text[len(field) :]) from exc
        raise
