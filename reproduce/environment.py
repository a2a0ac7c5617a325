"""The machine and software a run used: versions, compiled backends, threads, CUDA.

One definition serves ``dlsys info`` and the report's environment section.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from dlsys.common.version import dlsys_version

__all__ = ["collect"]


def collect() -> dict[str, Any]:
    """Versions (dlsys, Python, torch, SimPy, numpy), the platform, the CPU count, the
    torch and OpenMP thread counts, the compiled backends and whether CUDA is available."""
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
