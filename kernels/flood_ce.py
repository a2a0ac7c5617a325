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
import torch.nn.functional as F
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
def _flood_ce_fake(logits, target, b, reduction, ignore_index):
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
def _flood_ce_backward_fake(grad_loss, logits, target, rows, stats, b, reduction, ignore_index):
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
    def forward(
        ctx: Any, logits: Tensor, target: Tensor, b: float, reduction: int, ignore_index: int
    ) -> Tensor:
        loss, rows, stats = _flood_ce_forward_impl(logits, target, b, reduction, ignore_index)
        ctx.save_for_backward(logits, target, rows, stats)
        ctx.conf = (b, reduction, ignore_index)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Any, ...]:
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


def _check_label_smoothing(label_smoothing: Any) -> float:
    """``label_smoothing`` as a float in [0, 1]."""
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, int | float):
        raise TypeError(f"label_smoothing: must be a number in [0, 1], got {label_smoothing!r}")
    ls = float(label_smoothing)
    if not 0.0 <= ls <= 1.0:  # NaN fails too
        raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing!r}")
    return ls


def _check_weight(weight: Any, c: int | None = None, like: Tensor | None = None) -> None:
    """A class weight: a 1-D floating tensor of C finite values (negative ones are valid, as in
    torch), on the logits' device and of their dtype when ``like`` is given."""
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight: must be a torch.Tensor or None, got {type(weight).__name__}")
    if weight.dim() != 1 or (c is not None and weight.shape[0] != c):
        want = f"({c},), one value per class" if c is not None else "1-D (C,)"
        raise ValueError(f"weight: must have shape {want}, got {tuple(weight.shape)}")
    if not weight.dtype.is_floating_point:
        raise TypeError(f"weight: must be a floating-point tensor, got {weight.dtype}")
    if like is not None:
        if weight.device != like.device:
            raise ValueError(f"weight: is on {weight.device} but logits is on {like.device}")
        if weight.dtype != like.dtype:
            raise TypeError(f"weight: dtype {weight.dtype} does not match logits' {like.dtype}")
    if weight.device.type != "meta" and not bool(torch.isfinite(weight).all()):
        raise ValueError("weight: every class weight must be finite (got inf or NaN)")


def _check_target(logits: Tensor, target: Any) -> tuple[Tensor, bool]:
    """(target, whether it holds class probabilities) after checking it against ``logits``.

    Class indices: an integer tensor of the logits' shape without the class dimension,
    converted to int64. Class probabilities: a floating tensor of the logits' shape and dtype.
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"target: must be a torch.Tensor, got {type(target).__name__}")
    if target.device != logits.device:
        raise ValueError(f"target: is on {target.device} but logits is on {logits.device}")
    shape = tuple(logits.shape)
    if target.dtype.is_floating_point:
        if tuple(target.shape) != shape:
            raise ValueError(
                f"target: a floating-point target holds class probabilities and must have the "
                f"logits' shape {shape}, got {tuple(target.shape)} (class indices must be an "
                "integer tensor)"
            )
        if target.dtype != logits.dtype:
            raise TypeError(
                f"target: class probabilities must have the logits' dtype {logits.dtype}, got "
                f"{target.dtype}"
            )
        return target, True
    if target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(
            f"target: must hold class indices (an integer dtype) or class probabilities (the "
            f"logits' dtype), got {target.dtype}"
        )
    want = () if len(shape) == 1 else shape[:1] + shape[2:]  # the shape without C
    if tuple(target.shape) != want:
        raise ValueError(
            f"target: class indices must have shape {want} to match logits {shape}, got "
            f"{tuple(target.shape)}"
        )
    return target.long(), False


def flooding_cross_entropy(
    logits: Tensor,
    target: Tensor,
    b: float = 0.0,
    reduction: str = "mean",
    ignore_index: int = -100,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy with flooding (Ishida et al., ICML 2020), fused in one kernel.

    ``loss = |R - b| + b`` where R is ``F.cross_entropy(logits, target, weight=weight,
    ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)``, the
    (weighted) batch loss in nats: while R > b this is R (descent), while R < b it is 2b - R
    (ascent), and exactly at R = b its gradient is 0. ``b = 0`` is no flooding: exactly
    ``F.cross_entropy`` (``|R| = R`` unless negative class weights make R negative).

    Class-index targets without ``weight`` and ``label_smoothing`` run dlsys's fused kernel
    (logits of more than two dimensions are viewed as rows of C classes); class weights,
    label smoothing and class-probability targets are computed by ``F.cross_entropy`` and
    flooded here.

    Args:
        logits: (N, C), (N, C, d1, ...) or unbatched (C,) unnormalised scores; float32/float64
            on the CPU, float32 on CUDA.
        target: class indices of shape (N,), (N, d1, ...) or () (an integer dtype, converted to
            int64) in [0, C) or ``ignore_index``; or class probabilities of the logits' shape
            and dtype.
        b: flood level in nats, finite and >= 0.
        reduction: ``'mean'`` (over the elements not ignored, weighted by their class weight
            as in torch; NaN when every element is ignored, like torch), ``'sum'`` or
            ``'none'`` (per-element losses, 0 where ignored; needs b = 0 because flooding is
            defined on the batch loss).
        ignore_index: target value whose elements are skipped (class-index targets).
        weight: optional (C,) class weights, finite (negative values are allowed, as in torch).
        label_smoothing: in [0, 1], as ``F.cross_entropy``.

    Returns:
        A scalar tensor (mean, sum) or the target's shape (none), differentiable in ``logits``.
    """
    bf, code = _check_flood_args(b, reduction, ignore_index)
    ls = _check_label_smoothing(label_smoothing)
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits: must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() == 0:
        raise ValueError("logits: must be (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    c = logits.shape[0] if logits.dim() == 1 else logits.shape[1]
    if c == 0:
        raise ValueError(
            f"logits: needs at least one class (C >= 1), got shape {tuple(logits.shape)}"
        )
    _check_device("logits", logits)
    _check_dtype("logits", logits)
    target, probs = _check_target(logits, target)
    if weight is not None:
        _check_weight(weight, c, logits)
    if probs or weight is not None or ls != 0.0:
        r = F.cross_entropy(
            logits,
            target,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=ls,
        )
        return r if bf == 0.0 else (r - bf).abs() + bf
    if logits.dim() == 2:
        return _fused(logits, target, bf, code, ignore_index)
    # (C,) or (N, C, d1, ...): rows of C classes, then the target's shape back for 'none'.
    rows = logits.unsqueeze(0) if logits.dim() == 1 else logits.movedim(1, -1).reshape(-1, c)
    loss = _fused(rows, target.reshape(-1), bf, code, ignore_index)
    return loss.reshape(target.shape) if code == 0 else loss


def _fused(logits: Tensor, target: Tensor, bf: float, code: int, ignore_index: int) -> Tensor:
    """The fused kernel on (N, C) logits and (N,) int64 targets (arguments checked)."""
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
        return _FloodCEEager.apply(logits, target, bf, code, ignore_index)
    return torch.ops.dlsys.flood_ce(logits, target, bf, code, ignore_index)[0]
