"""``dlsys::flood_ce``: cross-entropy with flooding (Ishida et al., ICML 2020), fused.

The custom ops ``dlsys::flood_ce`` and ``dlsys::flood_ce_backward`` (fakes, autograd), an
eager fast path that calls the same two kernels without the dispatcher (:class:`_FloodCEEager`),
and the function :func:`flooding_cross_entropy`; the module is
:class:`dlsys.kernels.FloodingLoss`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from dlsys.kernels import _C
from dlsys.kernels._plumbing import _DTYPE_NAMES, _check_device, _check_dtype, _launch

__all__ = ["REDUCTIONS", "flooding_cross_entropy"]

#: Reductions of :func:`flooding_cross_entropy`, with the code the C++ kernel uses.
REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}

#: Let eager calls of flooding_cross_entropy on plain tensors skip the dispatcher (the same
#: kernels; see _FloodCEEager). Tests switch it off to compare both paths.
_EAGER_FAST_PATH = True


def _flood_ce_forward_impl(
    logits: Tensor, target: Tensor, b: float, reduction: int, ignore_index: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, rows, stats) of the fused flooding cross-entropy (see kernels/csrc/flood_ce.h).

    loss is a scalar (reduction 1 mean / 2 sum) or (N,) (0 none); rows (N, 2) holds each row's
    max m and log sum exp(x - m); stats = (R, count): the reduced loss before flooding and the
    number of rows whose target is not ``ignore_index``. rows and stats feed the backward.
    """
    logits = logits.contiguous()
    target = target.contiguous()
    n, c = logits.shape
    loss = logits.new_empty((n,) if reduction == 0 else ())
    rows = logits.new_empty((n, 2))
    stats = logits.new_empty((2,))
    impl, threads, device, stream = _launch(logits)
    _C.flood_ce_forward(
        impl,
        _DTYPE_NAMES[logits.dtype],
        (logits.data_ptr(), n * c),
        (target.data_ptr(), target.numel()),
        (loss.data_ptr(), loss.numel()),
        (rows.data_ptr(), 2 * n),
        (stats.data_ptr(), 2),
        n,
        c,
        b,
        reduction,
        ignore_index,
        threads,
        device,
        stream,
    )
    return loss, rows, stats


_flood_ce_op = torch.library.custom_op("dlsys::flood_ce", _flood_ce_forward_impl, mutates_args=())


@_flood_ce_op.register_fake
def _flood_ce_fake(logits, target, b, reduction, ignore_index):  # type: ignore[no-untyped-def]
    n = logits.shape[0]
    return (
        logits.new_empty((n,) if reduction == 0 else ()),
        logits.new_empty((n, 2)),
        logits.new_empty((2,)),
    )


def _flood_ce_backward_impl(
    grad_loss: Tensor,
    logits: Tensor,
    target: Tensor,
    rows: Tensor,
    stats: Tensor,
    b: float,
    reduction: int,
    ignore_index: int,
) -> Tensor:
    """d loss / d logits (N, C) of ``dlsys::flood_ce``, scaled by ``grad_loss``."""
    grad_loss = grad_loss.contiguous()
    logits = logits.contiguous()
    target = target.contiguous()
    n, c = logits.shape
    grad = torch.empty_like(logits)
    impl, threads, device, stream = _launch(logits)
    _C.flood_ce_backward(
        impl,
        _DTYPE_NAMES[logits.dtype],
        (grad_loss.data_ptr(), grad_loss.numel()),
        (logits.data_ptr(), n * c),
        (target.data_ptr(), target.numel()),
        (rows.data_ptr(), rows.numel()),
        (stats.data_ptr(), stats.numel()),
        (grad.data_ptr(), n * c),
        n,
        c,
        b,
        reduction,
        ignore_index,
        threads,
        device,
        stream,
    )
    return grad


_flood_ce_backward_op = torch.library.custom_op(
    "dlsys::flood_ce_backward", _flood_ce_backward_impl, mutates_args=()
)


@_flood_ce_backward_op.register_fake
def _flood_ce_backward_fake(grad_loss, logits, target, rows, stats, b, reduction, ignore_index):  # type: ignore[no-untyped-def]
    return torch.empty_like(logits)


def _flood_ce_setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    logits, target, b, reduction, ignore_index = inputs
    _, rows, stats = output
    ctx.save_for_backward(logits, target, rows, stats)
    ctx.conf = (b, reduction, ignore_index)


def _flood_ce_backward(ctx: Any, grad_loss: Tensor, _grows: Any, _gstats: Any) -> tuple[Any, ...]:
    logits, target, rows, stats = ctx.saved_tensors
    grad = torch.ops.dlsys.flood_ce_backward(grad_loss, logits, target, rows, stats, *ctx.conf)
    return grad, None, None, None, None


_flood_ce_op.register_autograd(_flood_ce_backward, setup_context=_flood_ce_setup_context)


class _FloodCEEager(torch.autograd.Function):
    """The eager fast path: the same kernels as ``dlsys::flood_ce`` without the dispatcher.

    A custom op call passes the dispatcher, the op's autograd wrapper and the Python kernel
    (about 50 us on this 2-core machine, more than the whole (128, 10) loss costs torch); this
    Function calls the same two implementations directly. It is used only for plain tensors
    in eager mode (see :func:`_eager_ok`), so tracing, torch.compile, FakeTensor, functorch
    transforms and dispatch modes still see ``dlsys::flood_ce``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: Tensor, target: Tensor, b: float, reduction: int, ignore_index: int
    ) -> Tensor:
        loss, rows, stats = _flood_ce_forward_impl(logits, target, b, reduction, ignore_index)
        ctx.save_for_backward(logits, target, rows, stats)
        ctx.conf = (b, reduction, ignore_index)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        logits, target, rows, stats = ctx.saved_tensors
        grad = _flood_ce_backward_impl(grad_loss, logits, target, rows, stats, *ctx.conf)
        return grad, None, None, None, None


def _eager_ok(*tensors: Tensor) -> bool:
    """True when a call may bypass the dispatcher: eager mode, plain tensors, no modes."""
    return (
        all(type(t) is Tensor for t in tensors)
        and not torch.compiler.is_compiling()
        and not torch._C._is_torch_function_mode_enabled()
        and _get_current_dispatch_mode() is None
        and not torch._C._are_functorch_transforms_active()
    )


def _check_flood_args(b: Any, reduction: Any, ignore_index: Any) -> tuple[float, int]:
    """Validate the scalar arguments; returns (b as float, reduction code)."""
    if isinstance(b, bool) or not isinstance(b, int | float):
        raise TypeError(f"b: must be a number, got {b!r}")
    bf = float(b)
    if not math.isfinite(bf) or bf < 0:
        raise ValueError(f"b: the flood level must be finite and >= 0, got {b!r}")
    code = REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    if code is None:
        from dlsys.common import unknown_name

        raise unknown_name("reduction", str(reduction), REDUCTIONS)
    if code == 0 and bf != 0.0:
        raise ValueError(
            f"b: reduction='none' returns per-sample losses and flooding acts on the batch "
            f"loss, so b must be 0 with reduction='none', got b={b!r}"
        )
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index: must be an int, got {ignore_index!r}")
    return bf, code


def flooding_cross_entropy(
    logits: Tensor,
    target: Tensor,
    b: float = 0.0,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    """Cross-entropy with flooding (Ishida et al., ICML 2020), fused in one kernel.

    ``loss = |R - b| + b`` where R is ``F.cross_entropy(logits, target, reduction=...)``, in
    nats: while R > b this is R (descent), while R < b it is 2b - R (ascent), and exactly at
    R = b its gradient is 0. ``b = 0`` gives ``F.cross_entropy`` exactly.

    Args:
        logits: (N, C) unnormalised scores; float32/float64 on the CPU, float32 on CUDA.
        target: (N,) class indices in [0, C) (int64; other integer dtypes are converted) or
            ``ignore_index`` for rows that do not count.
        b: flood level in nats, finite and >= 0.
        reduction: ``'mean'`` (over rows not ignored; NaN when every row is ignored, like
            torch), ``'sum'`` or ``'none'`` (per-row losses, 0 on ignored rows; needs b = 0
            because flooding is defined on the batch loss).
        ignore_index: target value whose rows are skipped.

    Returns:
        A scalar tensor (mean, sum) or (N,) (none), differentiable in ``logits``.
    """
    bf, code = _check_flood_args(b, reduction, ignore_index)
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TypeError(
            f"logits and target: must be torch.Tensors, got {type(logits).__name__} and "
            f"{type(target).__name__}"
        )
    if logits.dim() != 2:
        raise ValueError(f"logits: must be 2-D (N, C), got shape {tuple(logits.shape)}")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target: must have shape ({logits.shape[0]},) to match logits "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    if logits.shape[1] == 0:
        raise ValueError("logits: needs at least one class (C >= 1), got C = 0")
    _check_device("logits", logits)
    _check_dtype("logits", logits)
    if target.device != logits.device:
        raise ValueError(f"target: is on {target.device} but logits is on {logits.device}")
    if target.dtype != torch.int64:
        if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
            raise TypeError(f"target: must hold class indices (int64), got {target.dtype}")
        target = target.long()
    if logits.device.type == "cuda" and target.numel():
        # The CUDA kernel trusts its targets; check here (the CPU kernel checks in C++).
        c = logits.shape[1]
        bad = ((target < 0) | (target >= c)) & (target != ignore_index)
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"target: target[{i}] = {int(target[i])} is out of range [0, {c}) and is not "
                f"ignore_index={ignore_index}"
            )
    if _EAGER_FAST_PATH and logits.device.type != "meta" and _eager_ok(logits, target):
        return _FloodCEEager.apply(logits, target, bf, code, ignore_index)  # type: ignore[no-any-return]
    return torch.ops.dlsys.flood_ce(logits, target, bf, code, ignore_index)[0]
