"""``dlsys::conv2d_relu_pool``: conv2d + bias + ReLU + max-pool in one forward and one backward.

``conv2d_relu_pool(x, weight, bias, ...)`` equals
``F.max_pool2d(F.relu(F.conv2d(x, weight, bias, ...)), pool, pool_stride, pool_padding)``
(values and gradients; the same element is selected on ties and NaNs), but the forward writes
only the pooled output and a one-byte argmax per pooled output (the conv output of each image
is pooled while it is in cache), and the backward rebuilds the conv output gradient from the
pooled gradient and the argmax (see kernels/csrc/conv_relu_pool.h for the rule).

Layers: the custom ops ``dlsys::conv2d_relu_pool`` -> (out, argmax) and
``dlsys::conv2d_relu_pool_backward`` (fakes; autograd on the forward), the function
:func:`conv2d_relu_pool`, and the module :class:`dlsys.kernels.ConvReLUPool`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dlsys.kernels import _C
from dlsys.kernels._plumbing import _DTYPE_NAMES, _buf, _empty, _launch, _pair
from dlsys.kernels.conv import _check_conv_args, _conv_dims, conv2d_output_size

__all__ = ["conv2d_relu_pool", "pool_output_size"]

#: Most elements a pool window may have: the argmax is stored in one byte.
MAX_POOL_WINDOW = 256


def pool_output_size(
    size: tuple[int, int],
    pool: Sequence[int],
    pool_stride: Sequence[int],
    pool_padding: Sequence[int],
) -> tuple[int, int]:
    """(QH, QW) in elements: ``(OH + 2*ph - kh) // sh + 1`` (likewise QW), as F.max_pool2d."""
    return (
        (size[0] + 2 * pool_padding[0] - pool[0]) // pool_stride[0] + 1,
        (size[1] + 2 * pool_padding[1] - pool[1]) // pool_stride[1] + 1,
    )


def _dims(
    x: Tensor,
    weight: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    pool: list[int],
) -> tuple[list[int], list[int]]:
    """(conv dims, pool dims) for _C: pool dims are KH KW SH SW PH PW QH QW."""
    dims = _conv_dims(x, weight, stride, padding, dilation, groups)
    qh, qw = pool_output_size((dims[7], dims[8]), pool[0:2], pool[2:4], pool[4:6])
    return dims, [*pool, qh, qw]


@torch.library.custom_op("dlsys::conv2d_relu_pool", mutates_args=())
def _crp_op(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    pool: list[int],
) -> tuple[Tensor, Tensor]:
    """(out (N, K, QH, QW), argmax (N, K, QH, QW) uint8) of max_pool2d(relu(conv2d(...))).

    ``padding`` is (top, bottom, left, right); ``pool`` is (kh, kw, sh, sw, ph, pw); arguments
    are assumed validated by :func:`conv2d_relu_pool` (the C++ side re-checks every size).
    """
    x = x.contiguous()
    weight = weight.contiguous()
    bias = bias.contiguous() if bias is not None else None
    dims, pdims = _dims(x, weight, stride, padding, dilation, groups, pool)
    out = _empty((dims[0], dims[4], pdims[6], pdims[7]), x)
    arg = torch.empty(out.shape, dtype=torch.uint8, device=x.device)
    impl, threads, device, stream = _launch(x)
    _C.conv_relu_pool_forward(
        impl,
        _DTYPE_NAMES[x.dtype],
        _buf(x),
        _buf(weight),
        _buf(bias),
        _buf(out),
        _buf(arg),
        dims,
        pdims,
        threads,
        device,
        stream,
    )
    return out, arg


@_crp_op.register_fake
def _crp_fake(x, weight, bias, stride, padding, dilation, groups, pool):
    n, _, h, w = x.shape
    k, _, r, s = weight.shape
    oh, ow = conv2d_output_size((h, w), (r, s), tuple(stride), tuple(padding), tuple(dilation))
    qh, qw = pool_output_size((oh, ow), pool[0:2], pool[2:4], pool[4:6])
    return x.new_empty((n, k, qh, qw)), x.new_empty((n, k, qh, qw), dtype=torch.uint8)


@torch.library.custom_op("dlsys::conv2d_relu_pool_backward", mutates_args=())
def _crp_backward_op(
    grad_out: Tensor,
    out: Tensor,
    argmax: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    pool: list[int],
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_input, grad_weight, grad_bias) of ``dlsys::conv2d_relu_pool`` from the pooled
    gradient, the pooled output and the argmax; one not asked for in ``output_mask`` comes back
    as an empty (0,) tensor and is not computed."""
    grad_out = grad_out.contiguous()
    out = out.contiguous()
    argmax = argmax.contiguous()
    x = x.contiguous()
    weight = weight.contiguous()
    dims, pdims = _dims(x, weight, stride, padding, dilation, groups, pool)
    gx = _empty(x.shape, x) if output_mask[0] else grad_out.new_empty((0,))
    gw = torch.empty_like(weight) if output_mask[1] else grad_out.new_empty((0,))
    gb = grad_out.new_empty((weight.shape[0],) if output_mask[2] else (0,))
    impl, threads, device, stream = _launch(x)
    _C.conv_relu_pool_backward(
        impl,
        _DTYPE_NAMES[x.dtype],
        _buf(x),
        _buf(weight),
        _buf(grad_out),
        _buf(out),
        _buf(argmax),
        _buf(gx) if output_mask[0] else (0, 0),
        _buf(gw) if output_mask[1] else (0, 0),
        _buf(gb) if output_mask[2] else (0, 0),
        dims,
        pdims,
        threads,
        device,
        stream,
    )
    return gx, gw, gb


@_crp_backward_op.register_fake
def _crp_backward_fake(
    grad_out, out, argmax, x, weight, stride, padding, dilation, groups, pool, output_mask
):
    return (
        torch.empty_like(x) if output_mask[0] else grad_out.new_empty((0,)),
        torch.empty_like(weight) if output_mask[1] else grad_out.new_empty((0,)),
        grad_out.new_empty((weight.shape[0],) if output_mask[2] else (0,)),
    )


def _crp_setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    x, weight, bias, stride, padding, dilation, groups, pool = inputs
    out, arg = output
    ctx.save_for_backward(x, weight, out, arg)
    ctx.conf = (stride, padding, dilation, groups, pool)
    ctx.has_bias = bias is not None
    ctx.mark_non_differentiable(arg)


def _crp_backward(ctx: Any, grad_out: Tensor, _grad_arg: Any) -> tuple[Any, ...]:
    x, weight, out, arg = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    mask = [bool(need_x), bool(need_w), bool(need_b and ctx.has_bias)]
    none5 = (None, None, None, None, None)
    if not any(mask):
        return (None, None, None, *none5)
    gx, gw, gb = torch.ops.dlsys.conv2d_relu_pool_backward(
        grad_out, out, arg, x, weight, *ctx.conf, mask
    )
    return (gx if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None, *none5)


_crp_op.register_autograd(_crp_backward, setup_context=_crp_setup_context)


def _check_pool_args(
    pool: Any, pool_stride: Any, pool_padding: Any, conv_out: tuple[int, int]
) -> list[int]:
    """Validate the pool arguments against the conv output (OH, OW); returns (kh, kw, sh, sw,
    ph, pw)."""
    kh, kw = _pair("pool", pool, 1)
    sh, sw = (kh, kw) if pool_stride is None else _pair("pool_stride", pool_stride, 1)
    ph, pw = _pair("pool_padding", pool_padding, 0)
    if kh * kw > MAX_POOL_WINDOW:
        raise ValueError(
            f"pool: the window may have at most {MAX_POOL_WINDOW} elements (the argmax is one "
            f"byte), got {kh}x{kw}"
        )
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"pool_padding: must be at most half the pool window {kh}x{kw}, got {(ph, pw)}"
        )
    oh, ow = conv_out
    if oh + 2 * ph < kh or ow + 2 * pw < kw:
        raise ValueError(
            f"pool: window {kh}x{kw} is larger than the conv output {oh}x{ow} padded by {(ph, pw)}"
        )
    return [kh, kw, sh, sw, ph, pw]


def conv2d_relu_pool(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    pool: int | Sequence[int] = 2,
    pool_stride: int | Sequence[int] | None = None,
    pool_padding: int | Sequence[int] = 0,
) -> Tensor:
    """``F.max_pool2d(F.relu(F.conv2d(x, weight, bias, stride, padding, dilation, groups)),
    pool, pool_stride, pool_padding)`` fused in one forward and one backward.

    Args:
        x, weight, bias, stride, padding, dilation, groups: as :func:`dlsys.kernels.conv2d`
            (sizes in elements).
        pool: max-pool window, an int or (kh, kw) >= 1, at most 256 elements.
        pool_stride: int or pair >= 1; None (the default) means ``pool``.
        pool_padding: int or pair >= 0, at most half the window (padding is -inf, as torch).

    Returns:
        (N, K, QH, QW) with ``QH = (OH + 2*ph - kh) // sh + 1`` (floor, as ``ceil_mode=False``),
        OH the conv output height; (K, QH, QW) for an unbatched input. Differentiable in
        ``x``, ``weight`` and ``bias``; gradients that are not needed are not computed.
    """
    x, unbatched, st, pads, dl = _check_conv_args(
        x, weight, bias, stride, padding, dilation, groups
    )
    _, _, r, s = weight.shape
    oh, ow = conv2d_output_size((x.shape[2], x.shape[3]), (r, s), st, pads, dl)
    pl = _check_pool_args(pool, pool_stride, pool_padding, (oh, ow))
    out, _ = torch.ops.dlsys.conv2d_relu_pool(
        x, weight, bias, list(st), list(pads), list(dl), groups, pl
    )
    return out.squeeze(0) if unbatched else out
