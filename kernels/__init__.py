"""dlsys.kernels: dlsys's compiled kernels (C++/OpenMP and CUDA) as PyTorch operations.

The compiled module ``dlsys.kernels._C`` is built by CMake through scikit-build-core; torch
is imported before it because torch ships its own OpenMP runtime.
"""

from __future__ import annotations

import torch  # noqa: F401  (import order matters: torch before _C)

from dlsys.kernels._backends import backends

__all__ = ["backends"]
