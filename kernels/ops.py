"""dlsys's kernels as PyTorch operations: ``dlsys::conv2d`` and ``dlsys::flood_ce``.

Three layers per kernel (the pattern of pytorch/extension-cpp and Liger-Kernel):

1. the custom ops ``dlsys::conv2d``, ``dlsys::conv2d_backward``, ``dlsys::flood_ce`` and
   ``dlsys::flood_ce_backward`` (``torch.library.custom_op``, each with a fake for
   ``torch.compile`` and the forward ops with ``register_autograd``; the backward is its own op);
2. the functions :func:`conv2d` and :func:`flooding_cross_entropy`, which validate their
   arguments (a clear ``ValueError``/``TypeError`` naming the argument, before any pointer
   reaches C++) and call the op;
3. the modules in :mod:`dlsys.kernels.modules`.

The ops hand raw data pointers, element counts and shapes to ``dlsys.kernels._C``, which
re-checks the counts. CPU tensors run the optimised C++ kernels with ``torch.get_num_threads()``
OpenMP threads (so ``torch.set_num_threads`` controls both torch and dlsys); CUDA tensors run
the CUDA kernels on ``torch.cuda.current_stream()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from dlsys.kernels import _C

__all__ = [
    "REDUCTIONS",
    "conv2d",
    "conv2d_output_size",
    "flooding_cross_entropy",
    "normalize_padding",
]

#: Reductions of :func:`flooding_cross_entropy`, with the code the C++ kernel uses.
REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}

_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}
_CUDA_COMPILED = bool(_C.build_info()["cuda_compiled"])
#: Let eager calls of flooding_cross_entropy on plain tensors skip the dispatcher (the same
#: kernels; see _FloodCEEager). Tests switch it off to compare both paths.
_EAGER_FAST_PATH = True


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------


def _buf(t: Tensor | None) -> tuple[int, int]:
    """(data pointer, number of elements) of a contiguous tensor; (0, 0) for None."""
    if t is None:
        return (0, 0)
    return (t.data_ptr(), t.numel())


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


# --------------------------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------------------------


def normalize_padding(
    padding: Any, kernel_size: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Padding as (top, bottom, left, right) in elements.

    ``padding`` is an int, a pair ``(ph, pw)``, ``'valid'`` (no padding) or ``'same'`` (output
    as large as the input; stride must be 1). As in PyTorch, 'same' puts ``total // 2`` before
    and the rest after, where ``total = dilation * (kernel - 1)``.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1, got stride={stride}")
            th = dilation[0] * (kernel_size[0] - 1)
            tw = dilation[1] * (kernel_size[1] - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        raise ValueError(f"padding: must be an int, a pair, 'same' or 'valid', got {padding!r}")
    ph, pw = _pair("padding", padding, 0)
    return (ph, ph, pw, pw)


def conv2d_output_size(
    size: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilation: tuple[int, int],
) -> tuple[int, int]:
    """(OH, OW) in elements: ``(H + top + bottom - dilation*(R-1) - 1) // stride + 1``."""
    eh = size[0] + pads[0] + pads[1] - dilation[0] * (kernel_size[0] - 1) - 1
    ew = size[1] + pads[2] + pads[3] - dilation[1] * (kernel_size[1] - 1) - 1
    return (eh // stride[0] + 1, ew // stride[1] + 1)


def _conv_dims(
    x: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> list[int]:
    """The 18 ints _C.conv2d_* takes: N C H W K R S OH OW sh sw pt pb pl pr dh dw G."""
    n, c, h, w = x.shape
    k, _, r, s = weight.shape
    pads = (padding[0], padding[1], padding[2], padding[3])
    oh, ow = conv2d_output_size(
        (h, w), (r, s), (stride[0], stride[1]), pads, (dilation[0], dilation[1])
    )
    return [n, c, h, w, k, r, s, oh, ow, *stride, *padding, *dilation, groups]


@torch.library.custom_op("dlsys::conv2d", mutates_args=())
def _conv2d_op(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> Tensor:
    """y (N, K, OH, OW) = conv2d(x (N, C, H, W), weight (K, C/groups, R, S), bias (K,)).

    ``padding`` is (top, bottom, left, right); arguments are assumed validated by
    :func:`conv2d` (the C++ side re-checks every size).
    """
    x = x.contiguous()
    weight = weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    dims = _conv_dims(x, weight, stride, padding, dilation, groups)
    y = x.new_empty((dims[0], dims[4], dims[7], dims[8]))
    impl, threads, device, stream = _launch(x)
    _C.conv2d_forward(
        impl,
        _DTYPE_NAMES[x.dtype],
        _buf(x),
        _buf(weight),
        _buf(bias),
        _buf(y),
        dims,
        threads,
        device,
        stream,
    )
    return y


@_conv2d_op.register_fake
def _conv2d_fake(x, weight, bias, stride, padding, dilation, groups):  # type: ignore[no-untyped-def]
    n, _, h, w = x.shape
    k, _, r, s = weight.shape
    oh, ow = conv2d_output_size((h, w), (r, s), tuple(stride), tuple(padding), tuple(dilation))
    return x.new_empty((n, k, oh, ow))


@torch.library.custom_op("dlsys::conv2d_backward", mutates_args=())
def _conv2d_backward_op(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_input, grad_weight, grad_bias) of ``dlsys::conv2d``.

    ``output_mask`` says which of the three to compute; one not asked for comes back as an
    empty tensor of shape (0,) and costs nothing (a first layer never pays for grad input).
    """
    grad_out = grad_out.contiguous()
    x = x.contiguous()
    weight = weight.contiguous()
    dims = _conv_dims(x, weight, stride, padding, dilation, groups)
    # A gradient not asked for is a fresh empty tensor (outputs of a custom op may not alias).
    gx = torch.empty_like(x) if output_mask[0] else grad_out.new_empty((0,))
    gw = torch.empty_like(weight) if output_mask[1] else grad_out.new_empty((0,))
    gb = grad_out.new_empty((weight.shape[0],) if output_mask[2] else (0,))
    impl, threads, device, stream = _launch(x)
    _C.conv2d_backward(
        impl,
        _DTYPE_NAMES[x.dtype],
        _buf(x),
        _buf(weight),
        _buf(grad_out),
        _buf(gx) if output_mask[0] else (0, 0),
        _buf(gw) if output_mask[1] else (0, 0),
        _buf(gb) if output_mask[2] else (0, 0),
        dims,
        threads,
        device,
        stream,
    )
    return gx, gw, gb


@_conv2d_backward_op.register_fake
def _conv2d_backward_fake(grad_out, x, weight, stride, padding, dilation, groups, output_mask):  # type: ignore[no-untyped-def]
    return (
        torch.empty_like(x) if output_mask[0] else grad_out.new_empty((0,)),
        torch.empty_like(weight) if output_mask[1] else grad_out.new_empty((0,)),
        grad_out.new_empty((weight.shape[0],) if output_mask[2] else (0,)),
    )


def _conv2d_setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    x, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.conf = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _conv2d_backward(ctx: Any, grad_out: Tensor) -> tuple[Any, ...]:
    x, weight = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    mask = [bool(need_x), bool(need_w), bool(need_b and ctx.has_bias)]
    if not any(mask):
        return None, None, None, None, None, None, None
    gx, gw, gb = torch.ops.dlsys.conv2d_backward(grad_out, x, weight, *ctx.conf, mask)
    return (
        gx if mask[0] else None,
        gw if mask[1] else None,
        gb if mask[2] else None,
        None,
        None,
        None,
        None,
    )


_conv2d_op.register_autograd(_conv2d_backward, setup_context=_conv2d_setup_context)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, like ``torch.nn.functional.conv2d``) on dlsys kernels.

    Args:
        x: input (N, C, H, W) or unbatched (C, H, W); float32/float64 on the CPU, float32 on CUDA.
        weight: (K, C/groups, R, S), same dtype and device as ``x``.
        bias: optional (K,).
        stride: int or (sh, sw), >= 1, in elements.
        padding: int or (ph, pw) >= 0 (zeros on both sides), ``'valid'`` or ``'same'``.
        dilation: int or (dh, dw), >= 1, in elements.
        groups: >= 1, dividing both C and K.

    Returns:
        (N, K, OH, OW) with ``OH = (H + 2*ph - dh*(R-1) - 1) // sh + 1`` (likewise OW), or
        (K, OH, OW) for an unbatched input. Differentiable in ``x``, ``weight`` and ``bias``;
        gradients that are not needed are not computed.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x: must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight: must be a torch.Tensor, got {type(weight).__name__}")
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f"bias: must be a torch.Tensor or None, got {type(bias).__name__}")
    unbatched = x.dim() == 3
    if x.dim() not in (3, 4):
        raise ValueError(
            f"x: must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {tuple(x.shape)}"
        )
    if weight.dim() != 4:
        raise ValueError(
            f"weight: must be 4-D (K, C/groups, R, S), got shape {tuple(weight.shape)}"
        )
    _check_device("x", x)
    _check_dtype("x", x)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if t.device != x.device:
            raise ValueError(f"{name}: is on {t.device} but x is on {x.device}")
        if t.dtype != x.dtype:
            raise TypeError(f"{name}: dtype {t.dtype} does not match x's dtype {x.dtype}")
    if unbatched:
        x = x.unsqueeze(0)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups: must be an int >= 1, got {groups!r}")
    _, c, h, w = x.shape
    k, cg, r, s = weight.shape
    if k == 0 or cg == 0 or r == 0 or s == 0:
        raise ValueError(f"weight: every dimension must be >= 1, got shape {tuple(weight.shape)}")
    if c == 0 or h == 0 or w == 0:
        raise ValueError(f"x: C, H and W must be >= 1, got shape {tuple(x.shape)}")
    if c % groups or k % groups:
        raise ValueError(
            f"groups: {groups} must divide both the input channels ({c}) and the output "
            f"channels ({k})"
        )
    if cg * groups != c:
        raise ValueError(
            f"x: has {c} input channels but weight {tuple(weight.shape)} with groups={groups} "
            f"expects {cg * groups}"
        )
    if bias is not None and tuple(bias.shape) != (k,):
        raise ValueError(f"bias: must have shape ({k},), got {tuple(bias.shape)}")
    st = _pair("stride", stride, 1)
    dl = _pair("dilation", dilation, 1)
    pads = normalize_padding(padding, (r, s), st, dl)
    if h + pads[0] + pads[1] < dl[0] * (r - 1) + 1 or w + pads[2] + pads[3] < dl[1] * (s - 1) + 1:
        raise ValueError(
            f"weight: kernel {r}x{s} (dilation {dl}) is larger than the padded input "
            f"{h + pads[0] + pads[1]}x{w + pads[2] + pads[3]}"
        )
    y = torch.ops.dlsys.conv2d(x, weight, bias, list(st), list(pads), list(dl), groups)
    return y.squeeze(0) if unbatched else y


# --------------------------------------------------------------------------------------------
# flooding cross-entropy
# --------------------------------------------------------------------------------------------


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
