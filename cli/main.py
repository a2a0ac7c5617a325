"""The ``dlsys`` command and the conventions all its subcommands follow.

- ``--help`` shows an example; ``--json`` prints exactly one JSON document on stdout;
  ``--out DIR`` writes files there, atomically (see :func:`dlsys.common.io.output_dir`).
- Bad input (``ValueError``, ``TypeError``, ``FileNotFoundError``, and argparse's own usage
  errors) prints one line ``dlsys: error: ...`` on stderr and exits with code 2.
- Any other failure at run time prints ``dlsys: error: ...`` and exits with code 1.
- ``MemoryError`` or torch's failed allocation (a request the size checks of
  :func:`dlsys.common.check_memory` did not foresee) prints one line saying where the
  allocation failed and what it was, and exits at once with code 1:
  run as a program, the process ends without freeing what it built, which could take
  minutes of swapping.
- ``--debug`` (before the subcommand) shows the traceback instead.

A subcommand module ``dlsys.cli.NAME`` defines ``register(subparsers)``, which adds the
command ``NAME`` and, for each parser it adds, calls ``parser.set_defaults(func=handler)``
where ``handler(args) -> int | None``. A run of ``dlsys NAME ...`` imports and registers only
that module (registering ``train`` or ``ps`` imports torch, about 2 s, which ``dlsys simulate``
does not need); the top-level help and an unknown command register them all.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import dlsys.cli
from dlsys.cli.common import HelpFormatter
from dlsys.common.version import dlsys_version

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2

BAD_INPUT = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError)


class UsageError(Exception):
    """Raised by the parser for bad command-line syntax (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and propagate as :class:`UsageError`."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _is_out_of_memory(exc: Exception) -> bool:
    """A MemoryError, or torch's failed allocation: a RuntimeError from its CPU allocator
    ("can't allocate memory"), ``torch.OutOfMemoryError`` on CUDA."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _out_of_memory(exc: BaseException) -> str:
    """One line for a failed allocation: where, and what (in numpy's or torch's words)."""
    where = "dlsys"
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if module.startswith("dlsys."):
            where = f"{module}.{frame.f_code.co_name} (line {lineno})"
    detail = f": {_one_line(str(exc))}" if str(exc) else ""
    return (
        f"out of memory in {where}{detail}; a number in the input asks for more memory than "
        "this machine has (see 'How big is too big' in the README; --debug shows the traceback)"
    )


def _subcommand_modules() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(dlsys.cli.__path__):
        if info.name in {"main", "common"} or info.name.startswith("_"):
            continue
        names.append(f"dlsys.cli.{info.name}")
    return sorted(names)


def _command_word(args: Sequence[str]) -> str | None:
    """The subcommand named on the command line: the first word that is not one of the
    top-level flags; None when there is none or a flag such as ``--help`` comes first."""
    for arg in args:
        if arg in ("--debug", "--version"):
            continue
        return None if arg.startswith("-") else arg
    return None


def build_parser(command: str | None = None) -> Parser:
    """The ``dlsys`` parser. With ``command`` naming a subcommand module, only that module is
    imported and registered; otherwise (None, or a name no module has) every discovered
    subcommand is."""
    parser = Parser(
        prog="dlsys",
        description="dlsys: a deep-learning-systems lab (simulator, cost model, kernels, "
        "training experiments).",
        epilog="example:\n  dlsys info --json",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    names = _subcommand_modules()
    if command is not None and f"dlsys.cli.{command}" in names:
        names = [f"dlsys.cli.{command}"]
    for name in names:
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dlsys`` command; return its exit code.

    ``argv`` None means the process is the ``dlsys`` command itself (arguments from
    ``sys.argv``); then a ``MemoryError`` ends the process at once (``os._exit``).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        parser = build_parser(_command_word(args_list))
        args = parser.parse_args(args_list)
        if args.version:
            print(dlsys_version())
            return EXIT_OK
        func: Any = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return EXIT_USAGE
        code = func(args)
        return EXIT_OK if code is None else int(code)
    except SystemExit as exc:  # argparse --help
        return int(exc.code or 0) if isinstance(exc.code, int | None) else EXIT_USAGE
    except UsageError as exc:
        print(f"dlsys: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except BAD_INPUT as exc:
        if debug:
            traceback.print_exc()
        print(f"dlsys: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dlsys: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        if _is_out_of_memory(exc):
            print(f"dlsys: error: {_out_of_memory(exc)}", file=sys.stderr)
            if argv is None:  # the process is the dlsys command: leave without freeing the heap
                sys.stderr.flush()
                sys.stdout.flush()
                os._exit(EXIT_RUNTIME)
            return EXIT_RUNTIME
        print(f"dlsys: error: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_RUNTIME
