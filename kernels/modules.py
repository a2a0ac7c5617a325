"""nn.Modules over dlsys's kernels: :class:`Conv2d` and :class:`FloodingLoss`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dlsys.kernels.ops import _check_flood_args, conv2d, flooding_cross_entropy

__all__ = ["Conv2d", "FloodingLoss"]


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
            self.padding,  # type: ignore[arg-type]
            self.dilation,
            self.groups,
        )


class FloodingLoss(nn.Module):
    """Criterion ``crit(logits, target)`` = :func:`dlsys.kernels.flooding_cross_entropy`.

    Args:
        b: flood level in nats (finite, >= 0); 0 gives plain cross-entropy.
        reduction: 'mean', 'sum' or 'none' (the last needs b = 0).
        ignore_index: target value whose rows are skipped.
    """

    def __init__(self, b: float = 0.0, reduction: str = "mean", ignore_index: int = -100) -> None:
        super().__init__()
        self.b, _ = _check_flood_args(b, reduction, ignore_index)
        self.reduction = reduction
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """The flooded loss of ``logits`` (N, C) against ``target`` (N,)."""
        return flooding_cross_entropy(logits, target, self.b, self.reduction, self.ignore_index)

    def extra_repr(self) -> str:
        return f"b={self.b}, reduction={self.reduction!r}, ignore_index={self.ignore_index}"


# torch is imported for its side effect of loading before _C (see dlsys.kernels).
_ = torch
