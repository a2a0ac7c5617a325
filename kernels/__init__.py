"""dlsys.kernels: dlsys's compiled kernels (C++/OpenMP and CUDA) as PyTorch operations.

>>> from dlsys.kernels import conv2d, conv2d_relu_pool, flooding_cross_entropy, backends
>>> from dlsys.kernels import Conv2d, ConvReLUPool, FloodingLoss

``conv2d`` and ``Conv2d`` are a 2-D convolution (NCHW) and a drop-in ``nn.Conv2d``;
``conv2d_relu_pool`` and ``ConvReLUPool`` the block conv -> ReLU -> max-pool fused;
``flooding_cross_entropy`` and ``FloodingLoss`` a fused cross-entropy with flooding
(``|CE - b| + b``, Ishida et al. 2020). Each is a custom op (``dlsys::conv2d``,
``dlsys::conv2d_relu_pool``, ``dlsys::flood_ce`` and their ``_backward`` ops; one Python
file per op over ``_plumbing.py``), usable under ``torch.compile``. The compiled module
``dlsys.kernels._C`` is built by CMake through scikit-build-core; torch is imported before
it because torch ships its own OpenMP runtime. CPU outputs of 1 MiB or more come from a
cache of freed outputs (pages already mapped): ``output_cache_stats()`` shows it,
``release_output_cache()`` frees it.
"""

from __future__ import annotations

import torch  # noqa: F401  (import order matters: torch before _C)

from dlsys.kernels._backends import backends, describe_backends
from dlsys.kernels._plumbing import output_cache_stats, release_output_cache
from dlsys.kernels.conv import conv2d
from dlsys.kernels.conv_relu_pool import conv2d_relu_pool
from dlsys.kernels.flood_ce import flooding_cross_entropy
from dlsys.kernels.modules import Conv2d, ConvReLUPool, FloodingLoss

__all__ = [
    "Conv2d",
    "ConvReLUPool",
    "FloodingLoss",
    "backends",
    "conv2d",
    "conv2d_relu_pool",
    "describe_backends",
    "flooding_cross_entropy",
    "output_cache_stats",
    "release_output_cache",
]
