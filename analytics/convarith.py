"""Convolution arithmetic: output sizes, the padding that keeps a size, receptive fields.

All sizes are in elements along one spatial axis (pixels for images). The rules are those of
PyTorch's ``Conv*d`` and ``*Pool*d`` (Dumoulin & Visin 2016, "A guide to convolution
arithmetic"):

    effective kernel  k_eff = dilation * (kernel - 1) + 1
    output            out   = floor((size + pad_lo + pad_hi - k_eff) / stride) + 1
    with ceil_mode    out   = ceil(...) + 1, minus one if the last window would start
                              inside the right padding (PyTorch's pooling rule).

Functions taking ``size``/``kernel``/... accept an int (one axis) or a tuple (one entry per
spatial axis; ints are broadcast to the tuple's length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dlsys.common.errors import check_int

IntOrTuple = int | Sequence[int]


def as_tuple(field: str, value: IntOrTuple, n: int, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` as an ``n``-tuple of ints >= ``minimum`` (an int is repeated ``n`` times)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (check_int(field, value, minimum=minimum),) * n
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{field}: must be an int or a tuple of {n} ints, got {value!r}")
    if len(value) != n:
        raise ValueError(f"{field}: must have {n} entries (one per spatial axis), got {value!r}")
    return tuple(check_int(field, v, minimum=minimum) for v in value)


def output_size_1d(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
    *,
    where: str = "conv",
) -> int:
    """Output length (elements) of a convolution or pooling window along one axis.

    ``padding`` is the padding on each side (int) or ``(before, after)``. ``where`` names the
    layer in error messages. Raises ``ValueError`` naming the numbers when the (dilated)
    kernel is larger than the padded input.
    """
    check_int(f"{where}: input size", size, minimum=1)
    check_int(f"{where}: kernel", kernel, minimum=1)
    check_int(f"{where}: stride", stride, minimum=1)
    check_int(f"{where}: dilation", dilation, minimum=1)
    if isinstance(padding, int):
        lo = hi = check_int(f"{where}: padding", padding, minimum=0)
    else:
        lo, hi = (check_int(f"{where}: padding", p, minimum=0) for p in padding)
    k_eff = dilation * (kernel - 1) + 1
    padded = size + lo + hi
    if k_eff > padded:
        raise ValueError(
            f"{where}: kernel {kernel} (dilation {dilation}, effective {k_eff}) is larger than "
            f"the padded input {size} + {lo} + {hi} = {padded}"
        )
    span = padded - k_eff
    if ceil_mode:
        out = -(-span // stride) + 1
        # PyTorch: the last window must start inside the input or the left padding.
        if (out - 1) * stride >= size + lo:
            out -= 1
    else:
        out = span // stride + 1
    return out


def conv_output_size(
    size: IntOrTuple,
    kernel: IntOrTuple,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    """Output size (elements per spatial axis) of a convolution/pooling over ``size``.

    >>> conv_output_size((6, 4), 2, stride=2)   # floor((6-2)/2)+1 = 3, floor((4-2)/2)+1 = 2
    (3, 2)
    """
    sizes = (size,) if isinstance(size, int) else tuple(size)
    n = len(sizes)
    ks = as_tuple("kernel", kernel, n)
    ss = as_tuple("stride", stride, n)
    ps = as_tuple("padding", padding, n, minimum=0)
    ds = as_tuple("dilation", dilation, n)
    return tuple(
        output_size_1d(s, k, st, p, d, ceil_mode, where=f"axis {i}")
        for i, (s, k, st, p, d) in enumerate(zip(sizes, ks, ss, ps, ds, strict=True))
    )


def keep_padding_1d(
    size: int, kernel: int, stride: int = 1, dilation: int = 1, *, symmetric: bool = False
) -> tuple[int, int]:
    """Smallest ``(before, after)`` padding that makes the output length equal ``size``.

    Total padding P solves floor((size + P - k_eff) / stride) + 1 = size, i.e. the smallest
    P = (size - 1) * stride + k_eff - size (PyTorch's ``padding='same'`` for stride 1: the
    extra element of an odd total goes after). With ``symmetric`` the two sides are equal,
    using the slack of the floor when stride > 1; ``ValueError`` if that is impossible.
    """
    check_int("size", size, minimum=1)
    check_int("kernel", kernel, minimum=1)
    check_int("stride", stride, minimum=1)
    check_int("dilation", dilation, minimum=1)
    k_eff = dilation * (kernel - 1) + 1
    total = max(0, (size - 1) * stride + k_eff - size)
    if symmetric and total % 2:
        # floor((size + P - k_eff) / stride) stays the same for P + 1 when there is slack.
        if stride > 1 and (size + total + 1 - k_eff) // stride + 1 == size:
            total += 1
        else:
            raise ValueError(
                f"no symmetric padding keeps size {size} with kernel {kernel}, stride {stride},"
                f" dilation {dilation}: the total padding {total} is odd (use asymmetric)"
            )
    return total // 2, total - total // 2


def keep_padding(
    size: IntOrTuple,
    kernel: IntOrTuple,
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
    *,
    symmetric: bool = False,
) -> tuple[tuple[int, int], ...]:
    """Per spatial axis, the ``(before, after)`` padding that keeps ``size`` (elements).

    >>> keep_padding((6, 4), 2, stride=2, symmetric=True)  # 5*2+2-6 = 6, 3*2+2-4 = 4
    ((3, 3), (2, 2))
    """
    sizes = (size,) if isinstance(size, int) else tuple(size)
    n = len(sizes)
    ks = as_tuple("kernel", kernel, n)
    ss = as_tuple("stride", stride, n)
    ds = as_tuple("dilation", dilation, n)
    return tuple(
        keep_padding_1d(s, k, st, d, symmetric=symmetric)
        for s, k, st, d in zip(sizes, ks, ss, ds, strict=True)
    )


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output element on the input, along one axis.

    ``size``: input elements that influence one output element; ``jump``: input elements
    between neighbouring outputs (product of strides); ``start``: input coordinate of the
    centre of the first output's field (may be negative with padding).
    """

    size: int
    jump: int
    start: float


def receptive_field(layers: Sequence[tuple[int, int, int, int]]) -> ReceptiveField:
    """Receptive field after a chain of ``(kernel, stride, padding, dilation)`` layers.

    Recurrence (Araujo et al. 2019): r += (k_eff - 1) * j; start += ((k_eff - 1) / 2 - p) * j;
    j *= s. Example: two 3x3 stride-1 convs see 5 inputs; VGG's 3x3 conv, 3x3 conv, 2x2 pool
    sees 6.
    """
    r, j, start = 1, 1, 0.5
    for i, layer in enumerate(layers):
        if len(layer) != 4:
            raise ValueError(
                f"layers[{i}]: expected (kernel, stride, padding, dilation), got {layer!r}"
            )
        k, s, p, d = layer
        check_int(f"layers[{i}].kernel", k, minimum=1)
        check_int(f"layers[{i}].stride", s, minimum=1)
        check_int(f"layers[{i}].padding", p, minimum=0)
        check_int(f"layers[{i}].dilation", d, minimum=1)
        k_eff = d * (k - 1) + 1
        r += (k_eff - 1) * j
        start += ((k_eff - 1) / 2 - p) * j
        j *= s
    return ReceptiveField(size=r, jump=j, start=start)
