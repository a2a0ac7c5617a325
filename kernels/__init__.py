"""dlsys.kernels: dlsys's compiled kernels (C++/OpenMP and CUDA) as PyTorch operations.

>>> from dlsys.kernels import conv2d, flooding_cross_entropy, Conv2d, FloodingLoss, backends

``conv2d`` and ``Conv2d`` are a 2-D convolution (NCHW) and a drop-in ``nn.Conv2d``;
``flooding_cross_entropy`` and ``FloodingLoss`` a fused cross-entropy with flooding
(``|CE - b| + b``, Ishida et al. 2020). They are the custom ops ``dlsys::conv2d``,
``dlsys::conv2d_backward``, ``dlsys::flood_ce`` and ``dlsys::flood_ce_backward``, usable under
``torch.compile``. The compiled module ``dlsys.kernels._C`` is built by CMake through
scikit-build-core; torch is imported before it because torch ships its own OpenMP runtime.
"""

from __future__ import annotations

import torch  # noqa: F401  (import order matters: torch before _C)

from dlsys.kernels._backends import backends, describe_backends
from dlsys.kernels.modules import Conv2d, FloodingLoss
from dlsys.kernels.ops import conv2d, flooding_cross_entropy

__all__ = [
    "Conv2d",
    "FloodingLoss",
    "backends",
    "conv2d",
    "describe_backends",
    "flooding_cross_entropy",
]
