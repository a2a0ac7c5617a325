"""Declarative model descriptions that need no torch: ``Net(Input(3, 224, 224), Conv(64, 3,
padding=1), ReLU(), MaxPool(2), ..., Linear(1000))``.

Every layer is priced by a formula of the registry (:mod:`dlsys.analytics.formulas`), the
same one the nn.Module tracer uses. Shapes are given without the batch dimension
(``Input(C, H, W)``); the batch is an argument of :meth:`Net.cost`. Branches are written
with :class:`Concat` (Inception: outputs joined along channels) and :class:`Add` (residual:
outputs summed); a branch is a list of layers, the empty list being the identity.

``Net.to_module()`` builds the equivalent ``torch.nn.Module`` (imports torch only then), so
a test can check that the builder and the tracer agree on every count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dlsys.analytics.formulas import OpCost, Shape, apply, as_shape, conv_settings, numel
from dlsys.analytics.report import Convention, CostReport, Layer, Step, make_layer
from dlsys.common.errors import check_int


@dataclass
class _Ctx:
    convention: Convention
    layers: list[Layer] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    next_key: int = 0

    def key(self) -> int:
        self.next_key += 1
        return self.next_key

    def auto_name(self, prefix: str, kind: str) -> str:
        self.counts[prefix + kind] = self.counts.get(prefix + kind, 0) + 1
        return f"{prefix}{kind}{self.counts[prefix + kind]}"


class Spec:
    """Base of the builder's layers. ``name``: row name in reports (auto when ``None``)."""

    kind = "layer"
    formula = ""
    name: str | None = None

    def settings(self) -> dict[str, Any]:
        """The formula's settings for this layer."""
        return {}

    def cost(self, shape: Shape, where: str) -> OpCost:
        """The formula's :class:`OpCost` at input ``shape`` (batch first)."""
        return apply(self.formula, [shape], where=where, **self.settings())

    def module(self, shape: Shape) -> Any:  # pragma: no cover - overridden
        """The equivalent ``torch.nn.Module`` at input ``shape`` (batch first)."""
        raise NotImplementedError

    def walk(self, ctx: _Ctx, shape: Shape, key: int, prefix: str) -> tuple[Shape, int]:
        """Append this layer's row(s); return the output shape and storage key."""
        name = self.name if self.name else ctx.auto_name(prefix, self.kind)
        if self.name and prefix:
            name = prefix + self.name
        c = self.cost(shape, f"layer {name!r}")
        in_place = c.pointwise or c.view
        out_key = key if in_place else ctx.key()
        ctx.steps.append(Step(writes=out_key, size=0 if in_place else c.activations, reads=(key,)))
        ctx.layers.append(make_layer(name, self.kind, c, ctx.convention, numel(shape)))
        return c.output_shape, out_key


def _torch() -> Any:
    import torch

    return torch


@dataclass
class Input:
    """The network input: shape without the batch, e.g. ``Input(3, 224, 224)``."""

    shape: tuple[int, ...]

    def __init__(self, *shape: int) -> None:
        self.shape = as_shape("Input", shape)


@dataclass
class Conv(Spec):
    """Convolution (1d/2d/3d from the input's rank): ``out_channels`` filters of ``kernel``."""

    out_channels: int
    kernel: int | tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, ...] = 1
    groups: int = 1
    bias: bool = True
    name: str | None = None
    kind = "conv"
    formula = "conv"

    def settings(self) -> dict[str, Any]:
        return conv_settings(
            out_channels=self.out_channels,
            kernel=self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
        )

    def module(self, shape: Shape) -> Any:
        nn = _torch().nn
        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[len(shape) - 2]
        return cls(
            shape[1],
            self.out_channels,
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
        )


@dataclass
class Linear(Spec):
    """Fully connected layer to ``out_features``; ``in_features`` (optional) is checked."""

    out_features: int
    bias: bool = True
    in_features: int | None = None
    name: str | None = None
    kind = "fc"
    formula = "linear"

    def settings(self) -> dict[str, Any]:
        return dict(out_features=self.out_features, bias=self.bias, in_features=self.in_features)

    def module(self, shape: Shape) -> Any:
        return _torch().nn.Linear(shape[-1], self.out_features, bias=self.bias)


@dataclass
class MaxPool(Spec):
    """Max pooling; ``stride`` defaults to ``kernel``."""

    kernel: int | tuple[int, ...]
    stride: int | tuple[int, ...] | None = None
    padding: int | tuple[int, ...] = 0
    dilation: int | tuple[int, ...] = 1
    ceil_mode: bool = False
    name: str | None = None
    kind = "pool"
    formula = "max_pool"

    def settings(self) -> dict[str, Any]:
        return dict(
            kernel=self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
        )

    def module(self, shape: Shape) -> Any:
        nn = _torch().nn
        cls = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[len(shape) - 2]
        return cls(self.kernel, self.stride, self.padding, self.dilation, ceil_mode=self.ceil_mode)


@dataclass
class AvgPool(Spec):
    """Average pooling; ``stride`` defaults to ``kernel``."""

    kernel: int | tuple[int, ...]
    stride: int | tuple[int, ...] | None = None
    padding: int | tuple[int, ...] = 0
    ceil_mode: bool = False
    name: str | None = None
    kind = "avgpool"
    formula = "avg_pool"

    def settings(self) -> dict[str, Any]:
        return dict(
            kernel=self.kernel, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode
        )

    def module(self, shape: Shape) -> Any:
        nn = _torch().nn
        cls = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[len(shape) - 2]
        return cls(self.kernel, self.stride, self.padding, ceil_mode=self.ceil_mode)


@dataclass
class AdaptiveAvgPool(Spec):
    """Adaptive average pooling to ``output_size`` (1 = global average pooling)."""

    output_size: int | tuple[int, ...] = 1
    name: str | None = None
    kind = "avgpool"
    formula = "adaptive_pool"

    def settings(self) -> dict[str, Any]:
        return dict(output_size=self.output_size)

    def module(self, shape: Shape) -> Any:
        nn = _torch().nn
        cls = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
        return cls[len(shape) - 2](self.output_size)


@dataclass
class BatchNorm(Spec):
    """Batch norm over channels; ``affine=False`` has no parameters."""

    affine: bool = True
    name: str | None = None
    kind = "bn"
    formula = "batch_norm"

    def settings(self) -> dict[str, Any]:
        return dict(affine=self.affine)

    def module(self, shape: Shape) -> Any:
        nn = _torch().nn
        cls = {3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[len(shape)]
        return cls(shape[1], affine=self.affine)


@dataclass
class ReLU(Spec):
    """ReLU (pointwise; taken as in place)."""

    name: str | None = None
    kind = "relu"
    formula = "pointwise"

    def module(self, shape: Shape) -> Any:
        return _torch().nn.ReLU(inplace=True)


@dataclass
class Dropout(Spec):
    """Dropout with probability ``p`` (pointwise; identity at inference)."""

    p: float = 0.5
    name: str | None = None
    kind = "dropout"
    formula = "pointwise"

    def module(self, shape: Shape) -> Any:
        return _torch().nn.Dropout(self.p)


@dataclass
class Flatten(Spec):
    """Flatten all but the batch dimension (a view)."""

    name: str | None = None
    kind = "flatten"
    formula = "flatten"

    def module(self, shape: Shape) -> Any:
        return _torch().nn.Flatten()


Branch = Sequence[Any]


def _walk_seq(
    ctx: _Ctx, layers: Sequence[Any], shape: Shape, key: int, prefix: str
) -> tuple[Shape, int]:
    for layer in layers:
        if not isinstance(layer, Spec):
            raise TypeError(f"{prefix or 'net'}: expected a builder layer, got {layer!r}")
        shape, key = layer.walk(ctx, shape, key, prefix)
    return shape, key


def _modules_seq(layers: Sequence[Any], shape: Shape) -> tuple[Any, Shape]:
    nn = _torch().nn
    mods = []
    for layer in layers:
        mods.append(layer.module(shape))
        shape = layer.cost(shape, "module").output_shape
    return nn.Sequential(*mods), shape


@dataclass
class Concat(Spec):
    """Parallel branches on the same input, outputs concatenated along channels (dim 1)."""

    branches: list[list[Any]]
    name: str | None = None
    branch_names: list[str] | None = None
    kind = "concat"
    formula = "cat"

    def __init__(
        self, *branches: Branch, name: str | None = None, branch_names: Sequence[str] | None = None
    ) -> None:
        if not branches:
            raise ValueError("Concat: needs at least one branch")
        self.branches = [list(b) for b in branches]
        self.name = name
        if branch_names is not None and len(branch_names) != len(branches):
            raise ValueError(
                f"Concat: {len(branch_names)} branch_names for {len(branches)} branches"
            )
        self.branch_names = list(branch_names) if branch_names is not None else None

    def _bname(self, i: int) -> str:
        return self.branch_names[i] if self.branch_names else f"b{i + 1}"

    def cost(self, shape: Shape, where: str) -> OpCost:
        outs = [self._branch_shape(b, shape) for b in self.branches]
        return apply("cat", outs, dim=1, where=where)

    @staticmethod
    def _branch_shape(branch: Sequence[Any], shape: Shape) -> Shape:
        for layer in branch:
            shape = layer.cost(shape, "branch").output_shape
        return shape

    def walk(self, ctx: _Ctx, shape: Shape, key: int, prefix: str) -> tuple[Shape, int]:
        name = (prefix + self.name) if self.name else ctx.auto_name(prefix, self.kind)
        outs, keys = [], []
        for i, branch in enumerate(self.branches):
            s, k = _walk_seq(ctx, branch, shape, key, f"{name}/{self._bname(i)}/")
            outs.append(s)
            keys.append(k)
        c = apply(self.formula, outs, dim=1, where=name)
        out_key = ctx.key()
        ctx.steps.append(Step(writes=out_key, size=c.activations, reads=tuple(keys)))
        ctx.layers.append(
            make_layer(name, self.kind, c, ctx.convention, sum(numel(s) for s in outs))
        )
        return c.output_shape, out_key

    def module(self, shape: Shape) -> Any:
        from dlsys.analytics._modules import ConcatModule

        return ConcatModule([_modules_seq(b, shape)[0] for b in self.branches])


@dataclass
class Add(Spec):
    """Parallel branches on the same input, outputs summed (a residual block with ``[]``)."""

    branches: list[list[Any]]
    name: str | None = None
    kind = "add"
    formula = "elementwise"

    def __init__(self, *branches: Branch, name: str | None = None) -> None:
        if len(branches) < 2:
            raise ValueError("Add: needs at least two branches")
        self.branches = [list(b) for b in branches]
        self.name = name

    def cost(self, shape: Shape, where: str) -> OpCost:
        outs = [Concat._branch_shape(b, shape) for b in self.branches]
        return apply("elementwise", outs, where=where)

    def walk(self, ctx: _Ctx, shape: Shape, key: int, prefix: str) -> tuple[Shape, int]:
        name = (prefix + self.name) if self.name else ctx.auto_name(prefix, self.kind)
        outs, keys = [], []
        for i, branch in enumerate(self.branches):
            s, k = _walk_seq(ctx, branch, shape, key, f"{name}/b{i + 1}/")
            outs.append(s)
            keys.append(k)
        c = apply(self.formula, outs, where=name)
        out_key = ctx.key()
        ctx.steps.append(Step(writes=out_key, size=c.activations, reads=tuple(keys)))
        ctx.layers.append(
            make_layer(name, self.kind, c, ctx.convention, sum(numel(s) for s in outs))
        )
        return c.output_shape, out_key

    def module(self, shape: Shape) -> Any:
        from dlsys.analytics._modules import AddModule

        return AddModule([_modules_seq(b, shape)[0] for b in self.branches])


class Net:
    """A model: an optional :class:`Input` followed by layers (a sequence, with branches).

    ``Net(Input(3, 224, 224), Conv(64, 3, padding=1), ...)``; ``name`` labels reports.
    """

    def __init__(self, *layers: Any, name: str = "net") -> None:
        items = list(layers)
        self.input: Input | None = None
        if items and isinstance(items[0], Input):
            self.input = items.pop(0)
        for i, layer in enumerate(items):
            if not isinstance(layer, Spec):
                raise TypeError(
                    f"{name}: layer {i} must be a builder layer (Conv, Linear, ...), got {layer!r}"
                )
        self.layers: list[Spec] = items
        self.name = name

    def _shape(self, input_shape: Sequence[int] | None) -> tuple[int, ...]:
        if input_shape is None:
            if self.input is None:
                raise ValueError(f"{self.name}: input_shape is required (the net has no Input)")
            return self.input.shape
        return as_shape("input_shape", input_shape)

    def cost(
        self,
        input_shape: Sequence[int] | None = None,
        *,
        batch: int = 1,
        convention: Convention | None = None,
    ) -> CostReport:
        """Per-layer costs at ``(batch, *input_shape)`` (default: the net's ``Input``)."""
        check_int("batch", batch, minimum=1)
        shape = self._shape(input_shape)
        ctx = _Ctx(convention or Convention())
        full = (batch, *shape)
        n_in = 1
        for s in full:
            n_in *= s
        ctx.layers.append(Layer(name="input", type="input", output_shape=full, activations=n_in))
        key = ctx.key()
        ctx.steps.append(Step(writes=key, size=n_in, reads=()))
        _, out_key = _walk_seq(ctx, self.layers, full, key, "")
        return CostReport(
            model=self.name,
            input_shape=shape,
            batch=batch,
            layers=ctx.layers,
            convention=ctx.convention,
            steps=ctx.steps,
            outputs=(out_key,),
        )

    def output_shape(self, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        """Output shape without the batch dimension."""
        return self.cost(input_shape).layers[-1].output_shape[1:]

    def to_module(self, input_shape: Sequence[int] | None = None) -> Any:
        """The equivalent ``torch.nn.Module`` (an ``nn.Sequential``)."""
        shape = (1, *self._shape(input_shape))
        return _modules_seq(self.layers, shape)[0]
