"""``dlsys::conv2d``: a 2-D convolution (NCHW) on dlsys's kernels.

Three layers (the pattern of pytorch/extension-cpp and Liger-Kernel): the custom ops
``dlsys::conv2d`` and ``dlsys::conv2d_backward`` (each with a fake for ``torch.compile``; the
forward with ``register_autograd``, the backward its own op), the function :func:`conv2d`
that validates its arguments and calls the op, and :class:`dlsys.kernels.Conv2d`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dlsys.kernels import _C
from dlsys.kernels._plumbing import (
    _DTYPE_NAMES,
    _buf,
    _check_device,
    _check_dtype,
    _empty,
    _launch,
    _pair,
)

__all__ = ["conv2d", "conv2d_output_size", "normalize_padding"]


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
    y = _empty((dims[0], dims[4], dims[7], dims[8]), x)
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
def _conv2d_fake(x, weight, bias, stride, padding, dilation, groups):
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
    gx = _empty(x.shape, x) if output_mask[0] else grad_out.new_empty((0,))
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
def _conv2d_backward_fake(grad_out, x, weight, stride, padding, dilation, groups, output_mask):
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


def _check_conv_args(
    x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> tuple[Tensor, bool, tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    """Validate :func:`conv2d`'s arguments (shared by the fused conv-ReLU-pool).

    Returns ``(x as 4-D, whether x was unbatched, stride, padding as (top, bottom, left,
    right), dilation)``; raises ``TypeError``/``ValueError`` naming the bad argument.
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
    return x, unbatched, st, pads, dl


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
    x, unbatched, st, pads, dl = _check_conv_args(
        x, weight, bias, stride, padding, dilation, groups
    )
    y = torch.ops.dlsys.conv2d(x, weight, bias, list(st), list(pads), list(dl), groups)
    return y.squeeze(0) if unbatched else y
