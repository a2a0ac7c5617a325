"""Shared plumbing of dlsys's kernel ops: buffers, launch parameters and argument checks.

A tensor crosses to ``dlsys.kernels._C`` as (data pointer, number of elements) (:func:`_buf`);
:func:`_launch` picks the implementation for the tensor's device (the OpenMP CPU kernels with
``torch.get_num_threads()`` threads, so ``torch.set_num_threads`` controls both torch and
dlsys, or CUDA on ``torch.cuda.current_stream()``); the checks raise a ``ValueError`` or
``TypeError`` naming the argument before any pointer reaches C++, which re-checks every size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dlsys.kernels import _C

_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}
_CUDA_COMPILED = bool(_C.build_info()["cuda_compiled"])


def _buf(t: Tensor | None) -> tuple[int, int]:
    """(data pointer, number of elements) of a contiguous tensor; (0, 0) for None."""
    if t is None:
        return (0, 0)
    return (t.data_ptr(), t.numel())


#: CPU outputs of at least this many bytes come from dlsys's output cache.
_POOL_MIN_BYTES = 1 << 20


def _empty(shape: Sequence[int], like: Tensor) -> Tensor:
    """An uninitialised contiguous tensor of ``shape`` with ``like``'s dtype and device.

    On the CPU, one of at least 1 MiB comes from the output cache of ``_C.pooled_empty``
    (kernels/csrc/out_pool.cpp): when torch frees it, its block is kept for the next output
    of the same size, pages still mapped. glibc unmaps or trims freed blocks of this size,
    so each call's fresh output was written page fault by page fault (docs/kernels.md).
    """
    if like.device.type == "cpu" and like.dtype in _DTYPE_NAMES:
        numel = 1
        for n in shape:
            numel *= int(n)
        if numel * like.element_size() >= _POOL_MIN_BYTES:
            capsule = _C.pooled_empty([int(n) for n in shape], _DTYPE_NAMES[like.dtype])
            return torch.from_dlpack(capsule)
    return like.new_empty(tuple(shape))


def output_cache_stats() -> dict[str, int]:
    """The CPU output cache now (see ``_empty``): ``cached_blocks`` and ``cached_bytes``
    (bytes) held for reuse, ``hits`` and ``misses`` (outputs served from it or allocated anew
    since the process started)."""
    return dict(_C.out_pool_stats())


def release_output_cache() -> int:
    """Free the CPU output cache's blocks (at most 256 MiB; as ``torch.cuda.empty_cache``
    does for CUDA), for example after training; outputs still in use are not touched.
    Returns the bytes freed. The cache fills again as outputs are made and freed."""
    return int(_C.out_pool_release())


def _launch(t: Tensor) -> tuple[str, int, int, int]:
    """(impl, threads, device index, stream) for a kernel on ``t``'s device."""
    if t.device.type == "cuda":
        idx = t.device.index if t.device.index is not None else torch.cuda.current_device()
        return ("cuda", 1, idx, torch.cuda.current_stream(idx).cuda_stream)
    return ("cpu", torch.get_num_threads(), -1, 0)


def _check_device(name: str, t: Tensor) -> None:
    """Reject devices without a dlsys kernel, never copying silently."""
    kind = t.device.type
    if kind in ("cpu", "meta"):  # meta: shapes only, through the ops' fake kernels
        return
    if kind == "cuda":
        if not _CUDA_COMPILED:
            raise ValueError(
                f"{name}: is on {t.device}, but this build of dlsys.kernels has no CUDA kernels "
                "(rebuild with nvcc on PATH, or move the tensor to the CPU)"
            )
        return
    raise ValueError(f"{name}: device {t.device} is not supported (allowed: cpu, cuda, meta)")


def _check_dtype(name: str, t: Tensor) -> None:
    if t.device.type == "cuda":
        if t.dtype != torch.float32:
            raise TypeError(f"{name}: CUDA kernels support float32, got {t.dtype}")
    elif t.dtype not in _DTYPE_NAMES:
        raise TypeError(f"{name}: dtype must be float32 or float64 on the CPU, got {t.dtype}")


def _pair(name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a pair."""
    items = (value, value) if isinstance(value, int) else value
    if isinstance(items, Sequence) and not isinstance(items, str) and len(items) == 2:
        a, b = items
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)):
            if a < minimum or b < minimum:
                raise ValueError(f"{name}: must be >= {minimum}, got {value!r}")
            return (int(a), int(b))
    raise TypeError(f"{name}: must be an int or a pair of ints, got {value!r}")
