"""The one registry of per-operation cost formulas.

A formula is a small pure function over shapes: it takes the input shapes (tuples of ints,
batch dimension first) and the operation's settings, and returns an :class:`OpCost` with the
output shape, the parameters it owns (weights and biases separately), the activation
elements it writes, the multiply-accumulates it performs and the other elementwise work.
Both front ends (the declarative builder and the nn.Module tracer) call the formulas through
this registry, keyed by an operation name such as ``"conv"``; nothing matches class names
as text. Registering a name twice is an error; users add their own with
:func:`register_formula`.

Conventions (stated once, used everywhere):

- ``macs``: multiply-accumulates of the op's products only (convolution, linear, matmul).
  A bias add is not a MAC; it is counted in ``bias_adds`` (one addition per output
  element). This matches PyTorch's FlopCounterMode, which reports 2 x MACs.
- ``elementwise``: other arithmetic, one unit per elementary operation (an activation
  function on one element, one addition of a residual add, one comparison of a max pool
  window). NB: transcendental functions (exp, tanh) count one unit each.
- ``activations``: elements of the new tensor the op writes. Views (flatten, reshape) write
  none. Pointwise activation functions and dropout are flagged ``pointwise=True`` so a
  report can leave them out (they are usually applied in place; the homework tables do).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dlsys.analytics.convarith import as_tuple, output_size_1d
from dlsys.common.errors import check_int, unknown_name

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpCost:
    """Cost of one operation at one input shape. Counts are exact ints (elements, MACs)."""

    output_shape: Shape
    weights: int = 0
    biases: int = 0
    activations: int = 0
    macs: int = 0
    bias_adds: int = 0
    elementwise: int = 0
    pointwise: bool = False
    view: bool = False

    @property
    def params(self) -> int:
        """Parameters (elements): weights + biases."""
        return self.weights + self.biases


Formula = Callable[..., OpCost]

_FORMULAS: dict[str, Formula] = {}


def register_formula(name: str, formula: Formula) -> Formula:
    """Register ``formula`` under ``name``; ``ValueError`` if the name is already taken.

    ``formula(inputs, **settings)`` gets a list of input shapes (batch first) and returns an
    :class:`OpCost`.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"formula name: must be a non-empty str, got {name!r}")
    if not callable(formula):
        raise TypeError(f"formula {name!r}: must be callable, got {formula!r}")
    if name in _FORMULAS:
        raise ValueError(f"formula {name!r} is already registered (registering twice is an error)")
    _FORMULAS[name] = formula
    return formula


def formula(name: str) -> Callable[[Formula], Formula]:
    """Decorator form of :func:`register_formula`."""

    def deco(fn: Formula) -> Formula:
        return register_formula(name, fn)

    return deco


def get_formula(name: str) -> Formula:
    """The formula registered under ``name`` (``ValueError`` with the nearest names if none)."""
    try:
        return _FORMULAS[name]
    except KeyError:
        raise unknown_name("formula", name, _FORMULAS) from None


def formula_names() -> list[str]:
    """Names of all registered formulas, sorted."""
    return sorted(_FORMULAS)


def apply(name: str, inputs: Sequence[Shape], **settings: Any) -> OpCost:
    """Evaluate the formula ``name`` on ``inputs`` (shapes, batch first) with ``settings``."""
    return get_formula(name)(list(inputs), **settings)


def as_shape(field: str, value: Any) -> Shape:
    """``value`` as a shape: a non-empty sequence of ints >= 1 (elements per dimension)."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{field}: must be positive ints such as (3, 224, 224), got {value!r}")
    return tuple(check_int(f"{field}[{i}]", s, minimum=1) for i, s in enumerate(value))


def numel(shape: Sequence[int]) -> int:
    """Number of elements of a tensor of ``shape`` (1 for a scalar)."""
    return math.prod(shape)


def _one(inputs: Sequence[Shape], where: str) -> Shape:
    if len(inputs) != 1:
        raise ValueError(f"{where}: expects 1 input, got {len(inputs)}")
    return tuple(inputs[0])


def _check_channels(where: str, shape: Shape, spatial: int) -> None:
    if len(shape) != spatial + 2:
        raise ValueError(
            f"{where}: expects input (N, C, {', '.join('L' * spatial)}) with {spatial + 2} "
            f"dimensions, got shape {shape}"
        )
    if any(s <= 0 for s in shape):
        raise ValueError(f"{where}: input size must be > 0 in every dimension, got {shape}")


def _padding_pairs(
    where: str, padding: Any, n: int, kernel: Shape, dilation: Shape, stride: Shape
) -> list[tuple[int, int]]:
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{where}: padding='same' needs stride 1, got stride {stride}")
            pairs = []
            for k, d in zip(kernel, dilation, strict=True):
                total = d * (k - 1)
                pairs.append((total // 2, total - total // 2))
            return pairs
        raise ValueError(
            f"{where}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}"
        )
    pads = as_tuple(f"{where}: padding", padding, n, minimum=0)
    return [(p, p) for p in pads]


def conv_settings(
    *,
    out_channels: int,
    kernel: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
) -> dict[str, Any]:
    """The settings of the ``conv`` formula, by name: the one mapping every front end uses
    (the builder's ``Conv``, the tracer's ``F.conv*`` adapter and the module adapter for
    custom convolution modules), so a new convolution setting is added in one place.
    ``kernel`` in elements per spatial dimension; ``padding`` elements, a tuple, ``"same"``
    or ``"valid"``."""
    return dict(
        out_channels=out_channels,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


@formula("conv")
def conv_cost(
    inputs: Sequence[Shape],
    *,
    out_channels: int,
    kernel: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    bias: bool = True,
    where: str = "conv",
) -> OpCost:
    """N-d convolution (1d, 2d, 3d) of an (N, C, *spatial) input.

    weights = out_channels * (C / groups) * prod(kernel); biases = out_channels;
    macs = N * out_channels * prod(out_spatial) * (C / groups) * prod(kernel).
    """
    x = _one(inputs, where)
    n = len(x) - 2
    if n < 1:
        raise ValueError(f"{where}: expects input (N, C, *spatial), got shape {x}")
    _check_channels(where, x, n)
    c_in = x[1]
    check_int(f"{where}: out_channels", out_channels, minimum=1)
    check_int(f"{where}: groups", groups, minimum=1)
    if c_in % groups or out_channels % groups:
        raise ValueError(
            f"{where}: in_channels {c_in} and out_channels {out_channels} must both be "
            f"divisible by groups {groups}"
        )
    ks = as_tuple(f"{where}: kernel", kernel, n)
    ss = as_tuple(f"{where}: stride", stride, n)
    ds = as_tuple(f"{where}: dilation", dilation, n)
    pads = _padding_pairs(where, padding, n, ks, ds, ss)
    out_sp = tuple(
        output_size_1d(size, k, s, p, d, where=where)
        for size, k, s, p, d in zip(x[2:], ks, ss, pads, ds, strict=True)
    )
    per_out = (c_in // groups) * math.prod(ks)
    out_shape = (x[0], out_channels, *out_sp)
    out_el = numel(out_shape)
    return OpCost(
        output_shape=out_shape,
        weights=out_channels * per_out,
        biases=out_channels if bias else 0,
        activations=out_el,
        macs=out_el * per_out,
        bias_adds=out_el if bias else 0,
    )


@formula("linear")
def linear_cost(
    inputs: Sequence[Shape],
    *,
    out_features: int,
    in_features: int | None = None,
    bias: bool = True,
    where: str = "linear",
) -> OpCost:
    """Fully connected layer on (..., in_features): macs = prod(leading) * in * out."""
    x = _one(inputs, where)
    if len(x) < 1:
        raise ValueError(f"{where}: expects an input with a feature dimension, got shape {x}")
    check_int(f"{where}: out_features", out_features, minimum=1)
    if in_features is not None and x[-1] != in_features:
        raise ValueError(
            f"{where}: expects {in_features} input features, got {x[-1]} (input shape {x}); "
            "a flatten before this Linear gives a different width"
        )
    out_shape = (*x[:-1], out_features)
    out_el = numel(out_shape)
    return OpCost(
        output_shape=out_shape,
        weights=x[-1] * out_features,
        biases=out_features if bias else 0,
        activations=out_el,
        macs=out_el * x[-1],
        bias_adds=out_el if bias else 0,
    )


def _pool(
    inputs: Sequence[Shape],
    *,
    kernel: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    dilation: int | Sequence[int],
    ceil_mode: bool,
    where: str,
) -> OpCost:
    x = _one(inputs, where)
    n = len(x) - 2
    if n < 1:
        raise ValueError(f"{where}: expects input (N, C, *spatial), got shape {x}")
    _check_channels(where, x, n)
    ks = as_tuple(f"{where}: kernel", kernel, n)
    ss = ks if stride is None else as_tuple(f"{where}: stride", stride, n)
    ps = as_tuple(f"{where}: padding", padding, n, minimum=0)
    ds = as_tuple(f"{where}: dilation", dilation, n)
    for k, p, d in zip(ks, ps, ds, strict=True):
        if 2 * p > d * (k - 1) + 1:
            raise ValueError(
                f"{where}: padding {p} must be at most half the kernel {k} (dilation {d})"
            )
    out_sp = tuple(
        output_size_1d(size, k, s, p, d, ceil_mode, where=where)
        for size, k, s, p, d in zip(x[2:], ks, ss, ps, ds, strict=True)
    )
    out_shape = (x[0], x[1], *out_sp)
    out_el = numel(out_shape)
    # NB: one elementwise unit per window element (comparisons or additions).
    return OpCost(
        output_shape=out_shape,
        activations=out_el,
        elementwise=out_el * math.prod(ks),
    )


@formula("max_pool")
def max_pool_cost(
    inputs: Sequence[Shape],
    *,
    kernel: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    where: str = "max_pool",
) -> OpCost:
    """Max pooling; stride defaults to the kernel. No MACs; window elements as elementwise."""
    return _pool(
        inputs,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        where=where,
    )


@formula("avg_pool")
def avg_pool_cost(
    inputs: Sequence[Shape],
    *,
    kernel: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    where: str = "avg_pool",
) -> OpCost:
    """Average pooling; stride defaults to the kernel. No MACs; window additions elementwise."""
    return _pool(
        inputs,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=1,
        ceil_mode=ceil_mode,
        where=where,
    )


@formula("adaptive_pool")
def adaptive_pool_cost(
    inputs: Sequence[Shape],
    *,
    output_size: int | Sequence[int | None],
    where: str = "adaptive_pool",
) -> OpCost:
    """Adaptive average/max pooling to ``output_size`` (None keeps that axis).

    NB: elementwise work counted as one unit per input element (every input element is
    read into at least one window; overlapping windows are not double counted).
    """
    x = _one(inputs, where)
    n = len(x) - 2
    if n < 1:
        raise ValueError(f"{where}: expects input (N, C, *spatial), got shape {x}")
    sizes = (output_size,) * n if isinstance(output_size, int) else tuple(output_size)
    if len(sizes) != n:
        raise ValueError(f"{where}: output_size needs {n} entries, got {output_size!r}")
    out_sp = []
    for s, o in zip(x[2:], sizes, strict=True):
        if o is None:
            out_sp.append(s)
        else:
            out_sp.append(check_int(f"{where}: output_size", o, minimum=1))
    out_shape = (x[0], x[1], *out_sp)
    return OpCost(output_shape=out_shape, activations=numel(out_shape), elementwise=numel(x))


@formula("batch_norm")
def batch_norm_cost(
    inputs: Sequence[Shape], *, affine: bool = True, where: str = "batch_norm"
) -> OpCost:
    """Batch norm over channel dim 1: weights C (gamma), biases C (beta) when affine.

    Elementwise: 2 units per element (inference: one scale and one shift, statistics folded).
    """
    x = _one(inputs, where)
    if len(x) < 2:
        raise ValueError(f"{where}: expects input (N, C, ...), got shape {x}")
    c = x[1]
    return OpCost(
        output_shape=x,
        weights=c if affine else 0,
        biases=c if affine else 0,
        activations=numel(x),
        elementwise=2 * numel(x),
    )


@formula("layer_norm")
def layer_norm_cost(
    inputs: Sequence[Shape],
    *,
    normalized_shape: Sequence[int],
    affine: bool = True,
    bias: bool = True,
    where: str = "layer_norm",
) -> OpCost:
    """Layer norm over the trailing ``normalized_shape``; elementwise 2 units per element."""
    x = _one(inputs, where)
    ns = tuple(normalized_shape)
    if tuple(x[len(x) - len(ns) :]) != ns:
        raise ValueError(f"{where}: normalized_shape {ns} does not end input shape {x}")
    m = numel(ns)
    return OpCost(
        output_shape=x,
        weights=m if affine else 0,
        biases=m if affine and bias else 0,
        activations=numel(x),
        elementwise=2 * numel(x),
    )


@formula("reduce")
def reduce_cost(
    inputs: Sequence[Shape], *, output_shape: Sequence[int], where: str = "reduce"
) -> OpCost:
    """Reduction (mean, sum, max) to ``output_shape``: one unit per input element."""
    (x,) = inputs
    return OpCost(
        output_shape=tuple(output_shape), activations=numel(output_shape), elementwise=numel(x)
    )


@formula("pointwise")
def pointwise_cost(inputs: Sequence[Shape], *, where: str = "pointwise") -> OpCost:
    """Pointwise activation function or dropout: one unit per element, shape kept."""
    x = _one(inputs, where)
    return OpCost(output_shape=x, activations=numel(x), elementwise=numel(x), pointwise=True)


@formula("softmax")
def softmax_cost(inputs: Sequence[Shape], *, where: str = "softmax") -> OpCost:
    """Softmax / log-softmax. NB: 3 units per element (exp, sum, divide)."""
    x = _one(inputs, where)
    return OpCost(output_shape=x, activations=numel(x), elementwise=3 * numel(x))


@formula("view")
def view_cost(
    inputs: Sequence[Shape], *, output_shape: Sequence[int], where: str = "view"
) -> OpCost:
    """An op that only moves data (view, reshape, slicing, stack, pad, embedding lookup):
    no arithmetic. Flagged ``view``: the tracer counts the elements it really writes (none
    for a true view, all of ``output_shape`` for a copy). Inputs are not inspected.
    """
    if not inputs:
        raise ValueError(f"{where}: expects at least one input")
    return OpCost(output_shape=tuple(output_shape), view=True)


@formula("attention")
def attention_cost(inputs: Sequence[Shape], *, where: str = "attention") -> OpCost:
    """Scaled dot-product attention of q (..., L, E), k (..., S, E), v (..., S, Ev).

    macs = batch * L * S * E (q k^T) + batch * L * S * Ev (weights @ v), as FlopCounterMode;
    elementwise: softmax 3 units per score (batch * L * S) plus the scaling.
    """
    if len(inputs) != 3:
        raise ValueError(f"{where}: expects q, k, v, got {len(inputs)} inputs")
    q, k, v = (tuple(s) for s in inputs)
    if len(q) < 2 or q[-1] != k[-1] or k[-2] != v[-2]:
        raise ValueError(
            f"{where}: q {q}, k {k}, v {v} do not fit (..., L, E), (..., S, E), (..., S, Ev)"
        )
    batch = broadcast_shapes(where, [q[:-2], k[:-2], v[:-2]])
    b, l_, s_, e, ev = numel(batch), q[-2], k[-2], q[-1], v[-1]
    out = (*batch, l_, ev)
    return OpCost(
        output_shape=out,
        activations=numel(out),
        macs=b * l_ * s_ * e + b * l_ * s_ * ev,
        elementwise=4 * b * l_ * s_,
    )


@formula("flatten")
def flatten_cost(
    inputs: Sequence[Shape], *, start_dim: int = 1, end_dim: int = -1, where: str = "flatten"
) -> OpCost:
    """Flatten dims ``start_dim..end_dim`` into one (a view; no work, no new memory)."""
    x = _one(inputs, where)
    nd = len(x)
    s = start_dim % nd if nd else 0
    e = end_dim % nd if nd else 0
    if s > e:
        raise ValueError(f"{where}: start_dim {start_dim} is after end_dim {end_dim} for {x}")
    out = (*x[:s], numel(x[s : e + 1]), *x[e + 1 :])
    return OpCost(output_shape=out, view=True)


@formula("cat")
def cat_cost(inputs: Sequence[Shape], *, dim: int = 1, where: str = "cat") -> OpCost:
    """Concatenation along ``dim``: writes every input element once, no arithmetic."""
    if not inputs:
        raise ValueError(f"{where}: expects at least one input")
    first = tuple(inputs[0])
    d = dim % len(first)
    for i, s in enumerate(inputs):
        if len(s) != len(first) or any(
            a != b for j, (a, b) in enumerate(zip(s, first, strict=True)) if j != d
        ):
            raise ValueError(
                f"{where}: input {i} has shape {tuple(s)}, which does not match {first} "
                f"outside dim {dim}"
            )
    out = list(first)
    out[d] = sum(s[d] for s in inputs)
    return OpCost(output_shape=tuple(out), activations=numel(out))


def broadcast_shapes(where: str, shapes: Sequence[Shape]) -> Shape:
    """NumPy/PyTorch broadcasting of ``shapes``; ``ValueError`` naming them if impossible."""
    nd = max(len(s) for s in shapes)
    out = []
    for i in range(nd):
        dims = {s[len(s) - nd + i] for s in shapes if len(s) - nd + i >= 0} - {1}
        if len(dims) > 1:
            raise ValueError(f"{where}: shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


@formula("elementwise")
def elementwise_cost(inputs: Sequence[Shape], *, where: str = "elementwise") -> OpCost:
    """Binary/n-ary elementwise op (add, sub, mul, div) with broadcasting.

    One unit per output element per extra operand: (len(inputs) - 1) * numel(out).
    """
    if not inputs:
        raise ValueError(f"{where}: expects at least one input")
    out = broadcast_shapes(where, inputs)
    n = numel(out)
    return OpCost(output_shape=out, activations=n, elementwise=max(1, len(inputs) - 1) * n)


@formula("matmul")
def matmul_cost(inputs: Sequence[Shape], *, where: str = "matmul") -> OpCost:
    """torch.matmul semantics (1-D vectors, batched broadcasting): macs = batch * m * k * n."""
    if len(inputs) != 2:
        raise ValueError(f"{where}: expects 2 inputs, got {len(inputs)}")
    a, b = tuple(inputs[0]), tuple(inputs[1])
    if not a or not b:
        raise ValueError(f"{where}: both operands need at least 1 dimension, got {a} and {b}")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError(f"{where}: inner sizes differ: {a} @ {b} ({a2[-1]} != {b2[-2]})")
    batch = broadcast_shapes(where, [a2[:-2], b2[:-2]]) if len(a2) > 2 or len(b2) > 2 else ()
    m, k, n = a2[-2], a2[-1], b2[-1]
    out = [*batch, m, n]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return OpCost(output_shape=tuple(out), activations=numel(out), macs=numel(batch) * m * k * n)


@formula("upsample")
def upsample_cost(
    inputs: Sequence[Shape],
    *,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    where: str = "upsample",
) -> OpCost:
    """Upsampling of (N, C, *spatial) to ``size`` or by ``scale_factor``.

    NB: elementwise units per output element: nearest 0 (a copy), linear 2**d - 1 additions
    per interpolation (d = spatial dims) plus the same number of multiplications.
    """
    x = _one(inputs, where)
    n = len(x) - 2
    if n < 1:
        raise ValueError(f"{where}: expects input (N, C, *spatial), got shape {x}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{where}: give exactly one of size and scale_factor")
    if size is not None:
        out_sp = as_tuple(f"{where}: size", size, n)
    else:
        assert scale_factor is not None
        sf = (scale_factor,) * n if isinstance(scale_factor, int | float) else tuple(scale_factor)
        if len(sf) != n or any(f <= 0 for f in sf):
            raise ValueError(
                f"{where}: scale_factor must be {n} positive numbers, got {scale_factor!r}"
            )
        out_sp = tuple(math.floor(s * f) for s, f in zip(x[2:], sf, strict=True))
    out_shape = (x[0], x[1], *out_sp)
    out_el = numel(out_shape)
    per = 0 if mode == "nearest" else 2 * (2**n - 1)
    return OpCost(output_shape=out_shape, activations=out_el, elementwise=per * out_el)
