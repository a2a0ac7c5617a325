"""``dlsys info``: versions, compiled backends, threads and CUDA devices."""

from __future__ import annotations

import argparse
from typing import Any

from dlsys.cli.common import add_command, add_json_flag, print_json
from dlsys.reproduce.environment import collect


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print_json(info)
        return 0
    from dlsys.kernels import describe_backends

    rows = [
        ("dlsys", info["dlsys"]),
        ("python", info["python"]),
        ("torch", info["torch"]),
        ("simpy", info["simpy"]),
        ("numpy", info["numpy"]),
        ("platform", info["platform"]),
        ("cpus", info["cpu_count"]),
        ("threads", f"torch {info['threads']['torch']}, openmp {info['threads']['openmp']}"),
        *describe_backends(info["backends"]),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "info",
        help="versions, compiled backends, threads and CUDA devices",
        example="dlsys info\ndlsys info --json",
    )
    add_json_flag(parser)
    parser.set_defaults(func=run)
