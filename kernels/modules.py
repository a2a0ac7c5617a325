"""nn.Modules over dlsys's kernels: Conv2d, ConvReLUPool and FloodingLoss."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dlsys.kernels.conv import conv2d
from dlsys.kernels.conv_relu_pool import conv2d_relu_pool
from dlsys.kernels.flood_ce import (
    _check_flood_args,
    _check_label_smoothing,
    _check_weight,
    flooding_cross_entropy,
)

__all__ = ["Conv2d", "ConvReLUPool", "FloodingLoss"]


class Conv2d(nn.Conv2d):
    """Drop-in for ``torch.nn.Conv2d`` whose forward and backward run on dlsys kernels.

    It is an ``nn.Conv2d`` subclass: the same constructor arguments (sizes in elements), the
    same parameters ``weight`` (K, C/groups, R, S) and ``bias`` (K,), the same state_dict keys
    and the same initialisation (so one seed gives the same weights as ``nn.Conv2d``).
    Only ``padding_mode='zeros'`` is supported.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f"padding_mode: dlsys.kernels.Conv2d supports 'zeros' only, got {padding_mode!r}"
            )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode="zeros",
            device=device,
            dtype=dtype,
        )

    def forward(self, input: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, K, OH, OW) with :func:`dlsys.kernels.conv2d`."""
        return conv2d(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


class ConvReLUPool(nn.Module):
    """``nn.Conv2d`` -> ``nn.ReLU`` -> ``nn.MaxPool2d`` as one block on
    :func:`dlsys.kernels.conv2d_relu_pool`.

    Its parameters are the convolution's, ``weight`` (K, C/groups, R, S) and ``bias`` (K,),
    with ``nn.Conv2d``'s state_dict keys and initialisation (one seed gives the same weights
    as the unfused ``nn.Conv2d``), so a checkpoint moves between the fused block and the
    unfused conv. Conv arguments as ``nn.Conv2d`` (``padding_mode='zeros'`` only; sizes in
    elements); ``pool``, ``pool_stride`` (None: ``pool``) and ``pool_padding`` as
    ``nn.MaxPool2d``'s kernel_size, stride and padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        pool: int | tuple[int, int] = 2,
        pool_stride: int | tuple[int, int] | None = None,
        pool_padding: int | tuple[int, int] = 0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        # nn.Conv2d validates the conv arguments and makes the parameters; its tensors are
        # adopted so that initialisation and the RNG draws are exactly nn.Conv2d's.
        ref = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = ref.kernel_size, ref.stride
        self.padding, self.dilation, self.groups = ref.padding, ref.dilation, ref.groups
        self.weight = ref.weight
        self.bias = ref.bias
        self.pool, self.pool_stride, self.pool_padding = pool, pool_stride, pool_padding

    def forward(self, input: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, K, QH, QW): max_pool2d(relu(conv2d(input)))."""
        return conv2d_relu_pool(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.pool,
            self.pool_stride,
            self.pool_padding,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}, pool={self.pool}, "
            f"pool_stride={self.pool_stride}, pool_padding={self.pool_padding}"
        )


class FloodingLoss(nn.Module):
    """Criterion ``crit(logits, target)`` = :func:`dlsys.kernels.flooding_cross_entropy`.

    Args:
        b: flood level in nats (finite, >= 0); 0 gives plain cross-entropy.
        reduction: 'mean', 'sum' or 'none' (the last needs b = 0).
        ignore_index: target value whose elements are skipped.
        weight: optional (C,) class weights (finite; kept as a buffer, like
            ``nn.CrossEntropyLoss``'s, so it follows ``.to()`` and is in the state_dict).
        label_smoothing: in [0, 1].
    """

    weight: Tensor | None

    def __init__(
        self,
        b: float = 0.0,
        reduction: str = "mean",
        ignore_index: int = -100,
        weight: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.b, _ = _check_flood_args(b, reduction, ignore_index)
        self.label_smoothing = _check_label_smoothing(label_smoothing)
        if weight is not None:
            _check_weight(weight)
        self.register_buffer("weight", weight)
        self.reduction = reduction
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The flooded loss of ``logits`` (N, C, ...) against ``target``."""
        return flooding_cross_entropy(
            logits,
            target,
            self.b,
            self.reduction,
            self.ignore_index,
            self.weight,
            self.label_smoothing,
        )

    def extra_repr(self) -> str:
        return (
            f"b={self.b}, reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}"
        )


# torch is imported for its side effect of loading before _C (see dlsys.kernels).
_ = torch
