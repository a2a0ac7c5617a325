"""``dlsys info``: versions, compiled backends, threads and CUDA devices."""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

from dlsys.cli.common import add_command, add_json_flag, dlsys_version, print_json


def collect() -> dict[str, Any]:
    """Everything ``dlsys info`` reports, as a dict."""
    import numpy
    import simpy
    import torch

    from dlsys.kernels import backends

    b = backends()
    return {
        "dlsys": dlsys_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "simpy": simpy.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": {"torch": torch.get_num_threads(), "openmp": b["openmp_threads"]},
        "backends": b,
        "torch_cuda_available": bool(torch.cuda.is_available()),
    }


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
